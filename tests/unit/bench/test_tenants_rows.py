"""The README rows of the `tenants` benchmark, from its results.json figures."""

from bench.markdown import performance_table, tenants_rows

FIGURES = {
    "tenants": 20,
    "rokt_latency_ms": 150,
    "contacts_per_s": 140.2,
    "cpu_ms_per_contact": 9.1,
    "baseline_prefork_contacts_per_s": 51.0,
    "baseline_prefork_cpu_ms_per_contact": 12.0,
    "reschedules_per_rokt_call": 0.8,
    "rokt_429s": 0,
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
        "rokt_429s": 0,
    },
}


def test_tenants_figures_sit_beside_their_baselines():
    rows = tenants_rows(FIGURES)
    assert rows[0][2:] == ("140.2 · 9.1 ms", "one prefork worker: 51.0 · 12.0 ms")
    assert rows[1][2] == "0.8 · 0"
    assert rows[2][2:] == ("35.0 · 90.0", "B alone: 12.0 · 30.0")
    assert rows[3][2:] == ("900.0 · 2100.0", "B alone p50: 400.0")
    assert all(row[0] == "tenants, 20 x 50/s, Rokt +150 ms" for row in rows[:4])
    assert rows[4] == (
        "tenants, 2 tenants' Rokt backlog, ROKT_LIMIT_SLEEP_MS=25",
        "Rokt calls/s · reschedules per call · 429s",
        "93.5 · 1.1 · 0",
        "limiters' rate 95.7/s",
    )


def test_no_tenants_figures_no_rows():
    assert tenants_rows(None) == []
    table = performance_table({"tenants": FIGURES})
    assert "tenants, 20 x 50/s" in table and table.count("\n") == 2 + 5
