"""The Performance table's generator (bench/markdown.py): given a results.json, each row it renders
carries the figures of its benchmark, each in its own cell (ours beside the baseline), and the
table holds exactly those rows. The wording and punctuation of a cell are the generator's own
business; the figures in it, and their order, are what these tests check."""

import re

from bench.markdown import (
    corrections_rows,
    durability_rows,
    erasure_rows,
    history_rows,
    intake_rows,
    performance_table,
    stage_rows,
    tenants_rows,
)

NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")

INTAKE = {
    "execute": {
        "c1": {"rps": 300.0, "p50_ms": 3.0, "p99_ms": 9.0},
        "c10": {"rps": 700.0, "p50_ms": 14.0, "p99_ms": 40.0},
        "c50": {"rps": 900.0, "p50_ms": 40.0, "p99_ms": 80.0},
    },
    "bare_flask": {
        "c1": {"rps": 600.0, "p50_ms": 1.5, "p99_ms": 4.0},
        "c10": {"rps": 1500.0, "p50_ms": 6.0, "p99_ms": 20.0},
        "c50": {"rps": 1800.0, "p50_ms": 20.0, "p99_ms": 50.0},
    },
    "direct_send": {
        "c1": {"rps": 200.0, "p50_ms": 5.0, "p99_ms": 12.0},
        "c10": {"rps": 400.0, "p50_ms": 25.0, "p99_ms": 70.0},
        "c50": {"rps": 500.0, "p50_ms": 90.0, "p99_ms": 200.0},
    },
    "ratio": 0.5,
    "p99_ratio": 1.6,
    "lost": 2,
    "direct_send_ratio": 0.278,
    "direct_send_p99_ratio": 4.0,
}
DURABILITY = {
    "connections": 50,
    "crash_redis_contacts": 1500,
    "crash_redis_lost": 3,
    "crash_redis_duplicates": 4,
    "everysec_rps": 900.0,
    "everysec_p99_ms": 80.0,
    "always_rps": 700.5,
    "always_p99_ms": 95.0,
    "always_intake_ratio": 0.778,
    "wait_replica_rps": 650.0,
    "wait_replica_p99_ms": 110.0,
    "wait_replica_intake_ratio": 0.722,
}
PIPELINE = {
    "contacts": 2000,
    "cpu_ms_per_contact": 7.5,
    "noop_cpu_ms_per_task": 2.6,
    "ratio": 2.9,
    "contacts_per_s": 120.0,
    "stage_cpu_ms_per_contact": {"render": 3.1, "create": 4.2, "flush": 0.6, "total": 7.9},
}
TENANTS = {
    "tenants": 20,
    "rokt_latency_ms": 150,
    "contacts_per_s": 140.2,
    "cpu_ms_per_contact": 9.1,
    "baseline_prefork_contacts_per_s": 51.0,
    "baseline_prefork_cpu_ms_per_contact": 12.0,
    "reschedules_per_rokt_call": 0.8,
    "rokt_429s": 6,
    "b_wait_p50_ms": 35.0,
    "b_wait_p99_ms": 90.0,
    "b_alone_wait_p50_ms": 12.0,
    "b_alone_wait_p99_ms": 30.0,
    "b_accepted_p50_ms": 900.0,
    "b_accepted_p99_ms": 2100.0,
    "b_alone_accepted_p50_ms": 400.0,
    "demand_per_s": 1000.0,
    "backlog_sleep_25ms": {
        "tenants": 2,
        "limit_per_s": 95.7,
        "rokt_calls_per_s": 93.5,
        "reschedules_per_rokt_call": 1.1,
        "rokt_429s": 7,
    },
}


def figures(cell: str) -> list[float]:
    """The numbers a cell shows, in order (`1,500` is 1500; the 50 of `p50` is no figure)."""
    return [float(n.rstrip(",").replace(",", "")) for n in NUMBER.findall(cell)]


def table_rows(table: str) -> list[tuple[str, ...]]:
    """The rows of a markdown table, header and separator included, as tuples of their cells."""
    return [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in table.splitlines()]


def test_the_figures_helper_reads_what_a_cell_shows():
    assert figures("700.5 · 95 · 0.778x") == [700.5, 95, 0.778]
    assert figures("demo, 1,500 contacts, B alone p50: 400.0, MS=25") == [1500, 400.0, 25]


def test_intake_rows_show_each_level_beside_bare_flask_and_publishing_in_execute():
    rows = intake_rows(INTAKE, "RabbitMQ")
    assert len(rows) == 4 and all("RabbitMQ" in row[0] for row in rows)  # the broker is named
    levels = rows[:3]
    assert [figures(row[0]) for row in levels] == [[1], [10], [50]]  # connections
    assert [figures(row[2]) for row in levels] == [[300, 3, 9], [700, 14, 40], [900, 40, 80]]
    assert [figures(row[3]) for row in levels] == [  # bare Flask, then publishing in execute
        [600, 1.5, 4, 200, 5, 12],
        [1500, 6, 20, 400, 25, 70],
        [1800, 20, 50, 500, 90, 200],
    ]
    assert figures(rows[3][2]) == [0.5, 1.6, 2]  # rps ratio, p99 ratio, lost
    assert figures(rows[3][3]) == [0.278, 4.0]


def test_intake_rows_of_older_results_and_of_a_broker_not_measured():
    without_direct = {k: v for k, v in INTAKE.items() if k != "direct_send"}
    assert [figures(row[3]) for row in intake_rows(without_direct, "")[:3]] == [
        [600, 1.5, 4],
        [1500, 6, 20],
        [1800, 20, 50],
    ]
    before_the_stream = {k: v for k, v in INTAKE.items() if k not in ("p99_ratio", "lost")}
    assert figures(intake_rows(before_the_stream, "")[-1][2]) == [0.5]  # the rps ratio alone
    [missing] = intake_rows({"ratio": None, "reason": "not reachable"}, "RabbitMQ")
    assert figures(missing[2]) == [] and missing[3] == "not reachable"
    assert intake_rows(None, "") == [] and intake_rows({}, "RabbitMQ") == []


def test_durability_rows_carry_the_crash_figures_and_each_choice_beside_everysec():
    crash, always, replica = durability_rows(DURABILITY)
    assert figures(crash[0]) == [1500]
    assert figures(crash[2]) == [3, 4]  # lost, sent twice
    assert figures(always[2]) == [700.5, 95, 0.778]  # rps, p99, ratio to the intake
    assert figures(replica[2]) == [650, 110, 0.722]
    assert figures(always[3]) == figures(replica[3]) == [900, 80]  # the everysec baseline
    assert figures(always[0]) == figures(replica[0]) == [50]  # connections
    assert always[1] != replica[1]  # each row says which choice it measures


def test_the_table_holds_the_durability_rows_and_nothing_without_figures():
    header = table_rows(performance_table({}))
    assert len(header) == 2 and header[1] == ("---",) * 4
    assert table_rows(performance_table({"durability": DURABILITY})) == header + durability_rows(DURABILITY)
    assert durability_rows(None) == [] and durability_rows({}) == []


def test_the_stages_row_lists_render_create_and_flush_in_that_order():
    [row] = stage_rows(PIPELINE["stage_cpu_ms_per_contact"])
    assert figures(row[2]) == [3.1, 4.2, 0.6]  # not the total
    assert row[3] == ""  # no baseline
    assert row[1].index("render") < row[1].index("create") < row[1].index("flush")


def test_results_without_stage_figures_render_the_pipeline_rows_only():
    without = {k: v for k, v in PIPELINE.items() if k != "stage_cpu_ms_per_contact"}
    assert stage_rows(None) == [] and stage_rows({}) == []
    with_stages = table_rows(performance_table({"pipeline": PIPELINE}))
    assert with_stages == table_rows(performance_table({"pipeline": without})) + stage_rows(
        PIPELINE["stage_cpu_ms_per_contact"]
    )
    pipeline_rows = with_stages[2:-1]
    assert [figures(row[2]) for row in pipeline_rows] == [[7.5, 2.9], [120.0]]
    assert figures(pipeline_rows[0][0]) == [2000] and figures(pipeline_rows[0][3]) == [2.6]


def test_tenants_figures_sit_beside_their_baselines():
    rows = tenants_rows(TENANTS)
    assert [(figures(row[2]), figures(row[3])) for row in rows[:4]] == [
        ([140.2, 9.1], [51.0, 12.0]),  # contacts/s and CPU per contact beside one prefork worker
        ([0.8, 6], []),  # reschedules per Rokt call, Rokt 429s
        ([35.0, 90.0], [12.0, 30.0]),  # B's queue wait p50, p99 beside B alone
        ([900.0, 2100.0], [400.0]),  # B's claim to 202 p50, p99 beside B alone p50
    ]
    [label] = {row[0] for row in rows[:4]}  # one label for the run's four rows
    assert {TENANTS["tenants"], TENANTS["rokt_latency_ms"]} <= set(figures(label))
    assert len(rows) == 5
    backlog = rows[4]
    assert figures(backlog[2]) == [93.5, 1.1, 7]  # Rokt calls/s, reschedules per call, 429s
    assert figures(backlog[3]) == [95.7]  # the limiters' rate
    assert figures(backlog[0]) == [2, 25]  # tenants, ROKT_LIMIT_SLEEP_MS of the run


def test_every_backlog_run_gets_its_row():
    runs = {**TENANTS, "backlog_sleep_0ms": {**TENANTS["backlog_sleep_25ms"], "rokt_calls_per_s": 60.5}}
    backlogs = tenants_rows(runs)[4:]
    assert sorted((figures(row[0])[1], figures(row[2])[0]) for row in backlogs) == [(0, 60.5), (25, 93.5)]


def test_the_table_holds_the_tenants_rows_and_nothing_without_figures():
    header = table_rows(performance_table({}))
    assert table_rows(performance_table({"tenants": TENANTS})) == header + tenants_rows(TENANTS)
    assert tenants_rows(None) == [] and tenants_rows({}) == []


MEMORY = {
    "contacts": 20000,
    "contacts_per_s": 20,
    "redis_bytes_per_terminal_contact": 138,
    "redis_bytes_per_whole_execution": 3479,
    "redis_bytes_per_subscriber": 1418,
    "redis_bytes_per_webhook": 231,
    "store": "sqlite",
    "store_bytes_per_contact": 2277,
    "redis_used_mb": {
        "before": 3.05,
        "at_10000": 5.58,
        "at_20000": 5.47,
        "first_half_mean": 5.24,
        "second_half_mean": 5.23,
        "growth_bytes_per_contact": 215,
    },
}
HISTORY_CPU = {
    "contacts": 2000,
    "accepted_write_cpu_ms": 0.33,
    "confirmed_write_archive_cpu_ms": 0.142,
    "flush_history_cpu_ms_per_contact": 0.472,
    "goal_ms_per_contact": 0.5,
}


def test_history_rows_split_redis_by_kind_beside_the_whole_execution_and_cpu_beside_its_goal():
    per_kind, store, used, cpu = history_rows(MEMORY, HISTORY_CPU)
    assert figures(per_kind[2]) == [138, 1418, 231]  # per finished contact, subscriber, webhook
    assert figures(per_kind[3]) == [3479]
    assert figures(store[2]) == [2277]
    assert figures(used[2]) == [5.58, 5.47, 5.24, 5.23, 215]  # at 10k, 20k, the halves, growth
    assert figures(used[1])[:2] == [10000, 20000] and figures(used[3]) == [3.05]
    assert figures(cpu[2]) == [0.472, 0.33, 0.142] and figures(cpu[3]) == [0.5]
    assert figures(per_kind[0]) == [20000, 20] and figures(cpu[0]) == [2000]


def test_the_table_holds_the_history_rows_only_when_measured():
    header = table_rows(performance_table({}))
    rss_only = {"rss_mb_1k": 81.7}
    assert history_rows(None, None) == [] and history_rows(rss_only, None) == []
    rows = table_rows(performance_table({"memory": MEMORY, "history_cpu": HISTORY_CPU}))
    assert rows[len(header) + 1 :] == [tuple(row) for row in history_rows(MEMORY, HISTORY_CPU)]


ERASURE = {
    "waiting": 100_000,
    "forgets": 1_000,
    "by_id_s": 4.82,
    "by_id_ms_per_contact": 4.82,
    "stream_pass_contacts": 100,
    "stream_pass_ms_per_contact": 1434.6,
    "stream_pass_s_for_all": 1435,
    "scan_ms_per_contact": 3633,
}
ERASURE_BATCH = {
    **ERASURE,
    "scan_contacts": 5,
    "scan_s_for_all": 3633,
    "scan_keys": 296_708,
    "batch_scan_s": 6.62,
    "batch_scan_ms_per_contact": 6.62,
}


def test_the_erasure_row_sets_forget_by_id_beside_a_stream_pass_per_forget():
    assert erasure_rows(None) == []
    ((name, _figure, ours, baseline),) = erasure_rows(ERASURE)
    assert figures(name) == [1000, 100000]
    assert figures(ours) == [4.82, 4.82]
    assert figures(baseline) == [1435, 1434.6, 100, 3633]
    header = table_rows(performance_table({}))
    rows = table_rows(performance_table({"erasure": ERASURE}))
    assert rows[len(header) :] == [tuple(row) for row in erasure_rows(ERASURE)]


def test_the_erasure_rows_set_one_batch_with_the_scans_beside_the_scans_one_by_one():
    first, (name, figure, ours, baseline) = erasure_rows(ERASURE_BATCH)
    assert first == erasure_rows(ERASURE)[0]  # a result from before the batch figures: one row
    assert name == first[0]
    assert figures(figure) == [296708]
    assert figures(ours) == [6.62, 6.62]
    assert figures(baseline) == [3633, 3633, 5]
    header = table_rows(performance_table({}))
    rows = table_rows(performance_table({"erasure": ERASURE_BATCH}))
    assert rows[len(header) :] == [tuple(row) for row in erasure_rows(ERASURE_BATCH)]


CORRECTIONS = {
    "limit_per_s": 50.0,
    "limiter_rate_per_s": 47.8,
    "window_s": 30,
    "held_events": 1900,
    "create_share_setting": 0.5,
    "alone": {"utilization": 0.958, "max_in_any_1s_window": 49, "windows_over_limit": 0, "throttled_429": 2},
    "beside_journey": {
        "creates_share": 0.802,
        "job_share": 0.126,
        "windows_over_limit": 1,
        "throttled_429": 3,
    },
}


def test_the_corrections_rows_set_the_job_alone_and_beside_a_journey_each_beside_its_goal():
    assert corrections_rows(None) == []
    (name, _figure, ours, goal), (name_beside, _figure_beside, beside, goal_beside) = corrections_rows(
        CORRECTIONS
    )
    assert name == name_beside and figures(name) == [1900, 50, 30]
    assert figures(ours) == [0.958, 49, 0, 2]
    assert figures(goal) == [0.9, 0, 47.8]
    assert figures(beside) == [0.802, 0.126, 1, 3]
    assert figures(goal_beside) == [0.5]
    header = table_rows(performance_table({}))
    rows = table_rows(performance_table({"corrections": CORRECTIONS}))
    assert rows[len(header) :] == [tuple(row) for row in corrections_rows(CORRECTIONS)]
