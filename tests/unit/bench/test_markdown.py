"""The README rows of the `durability` benchmark, from its results.json figures."""

from bench.markdown import durability_rows, performance_table

FIGURES = {
    "connections": 50,
    "crash_redis_contacts": 1500,
    "crash_redis_lost": 0,
    "crash_redis_duplicates": 0,
    "everysec_rps": 900.0,
    "everysec_p99_ms": 80.0,
    "always_rps": 700.5,
    "always_p99_ms": 95.0,
    "always_intake_ratio": 0.778,
    "wait_replica_rps": 650.0,
    "wait_replica_p99_ms": 110.0,
    "wait_replica_intake_ratio": 0.722,
}


def test_durability_figures_sit_beside_the_everysec_baseline():
    rows = durability_rows(FIGURES)
    assert rows[0][0] == "durability, demo --chaos crash-redis, 1,500 contacts"
    assert rows[0][2] == "0 · 0"
    assert rows[1][2:] == ("700.5 · 95 · 0.778x", "AOF everysec: 900 · 80")
    assert rows[2][2:] == ("650 · 110 · 0.722x", "AOF everysec: 900 · 80")


def test_no_durability_figures_no_rows():
    assert durability_rows(None) == []
    table = performance_table({"durability": FIGURES})
    assert "crash-redis" in table and table.count("\n") == 2 + 3
