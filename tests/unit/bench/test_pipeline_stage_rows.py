"""The README row of the pipeline's CPU per stage, from its results.json figures."""

from bench.markdown import performance_table, stage_rows

PIPELINE = {
    "contacts": 2000,
    "cpu_ms_per_contact": 7.5,
    "noop_cpu_ms_per_task": 2.6,
    "ratio": 2.9,
    "contacts_per_s": 120.0,
    "stage_cpu_ms_per_contact": {"render": 3.1, "create": 4.2, "flush": 0.6, "total": 7.9},
}


def test_the_stages_row_lists_render_create_and_flush():
    assert stage_rows(PIPELINE["stage_cpu_ms_per_contact"]) == [
        ("pipeline, a worker per stage", "CPU per contact: render · create · flush", "3.1 · 4.2 · 0.6 ms", "")
    ]
    table = performance_table({"pipeline": PIPELINE})
    assert (
        "| pipeline, a worker per stage | CPU per contact: render · create · flush | 3.1 · 4.2 · 0.6 ms |"
        in table
    )


def test_results_without_stage_figures_render_as_before():
    without = {k: v for k, v in PIPELINE.items() if k != "stage_cpu_ms_per_contact"}
    assert stage_rows(None) == []
    assert "a worker per stage" not in performance_table({"pipeline": without})
    assert performance_table({"pipeline": without}).count("\n") == 2 + 2
