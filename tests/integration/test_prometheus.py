"""The alert rules with the real Prometheus (Debian's `prometheus` package): promtool accepts
them, and Prometheus on loopback, scraping the exporter every second during a small run, fires
"Redis memory high" once Redis's maxmemory is set just above what it uses, "no worker heartbeat"
once the workers stop (and "beat silent" once beat stops)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.sandbox import jbsim, monitoring, processes
from pipeline.sandbox.stack import Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="Prometheus not installed: `sudo apt-get install -y prometheus` (Debian) runs these tests",
    ),
]

RULES = monitoring.ALERT_RULES
CONFIG = RULES.with_name("prometheus.yml")
TENANT = "prom"
# the test copy of the rules: every `for:` 0s, and these thresholds (seconds) shortened so a
# test sees them pass; the worker heartbeat is written every 10 s, beat ticks at least as often
SHORTER = {
    "RsfNoWorkerHeartbeat": ("> 60", "> 12"),
    "RsfWorkerHeartbeatStale": ("> 60", "> 12"),
    "RsfBeatSilent": ("> 120", "> 15"),
}


def test_promtool_accepts_the_rules_and_the_scrape_config():
    for argv in (["promtool", "check", "rules", str(RULES)], ["promtool", "check", "config", str(CONFIG)]):
        checked = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def quick_rules(target: Path) -> Path:
    """The rules of alerts.yml with `for: 0s` and the SHORTER thresholds."""
    document = yaml.safe_load(RULES.read_text())
    changed = set()
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
            if rule["alert"] in SHORTER:
                old, new = SHORTER[rule["alert"]]
                assert old in rule["expr"], f"{rule['alert']}: {old!r} not in its expression"
                rule["expr"] = rule["expr"].replace(old, new)
                changed.add(rule["alert"])
    assert changed == set(SHORTER)
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _start_beat(stack: Stack) -> processes.Child:
    argv = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-S", "tasks.beat:HeartbeatScheduler"]
    return processes.Child("beat-heartbeat", [*argv, "-l", "INFO"], stack.env, stack.run_dir)


def test_prometheus_fires_memory_high_then_no_worker_heartbeat_then_beat_silent(tmp_path: Path):
    """A stack of its own (the session's runs beside it): this test stops its workers."""
    tenant = {
        "rokt_account_code": TENANT,
        "sfmc_status_de_key": "Status_prom",
        "sfmc_subscription_de_key": "Subs_prom",
    }
    with Stack(tmp_path / "stack", {TENANT: tenant}, web="thread", worker_name="prom") as own:
        own.start_workers(1, concurrency=2)
        beat = _start_beat(own)
        exporter, url = monitoring.start_exporter(own.run_dir, own.env)
        rules = quick_rules(tmp_path / "alerts-quick.yml")
        try:
            with monitoring.Prometheus(tmp_path, [url.removeprefix("http://")], rules) as prom:

                def scraped(expr: str) -> float | None:
                    result = prom.query(expr)
                    return float(result[0]["value"][1]) if result else None

                own.wait(
                    lambda: scraped("rsf_beat_last_tick_age_seconds") is not None, 40, "beat's heartbeat"
                )
                own.wait(
                    lambda: prom.targets_up() and scraped("rsf_workers_alive") == 1, 30, "a scraped worker"
                )
                payloads = own.prepare(TENANT, jbsim.make_contacts(20))
                result = jbsim.drive(own.execute_url(TENANT), own.jwt_secret, payloads, concurrency=4)
                assert result.ok == 20
                own.wait_terminal(TENANT, 20, timeout=90)
                own.wait(
                    lambda: scraped(f'rsf_executions_received_total{{tenant="{TENANT}"}}') == 20,
                    15,
                    "the count",
                )
                firing = prom.firing()
                assert "RsfNoWorkerHeartbeat" not in firing and "RsfBeatSilent" not in firing, firing
                assert "RsfRedisMemoryHigh" not in firing and "RsfRedisFull" not in firing, firing

                redis_memory_high_fires_on_a_small_maxmemory(own, prom)

                own.stop_workers()
                own.wait(lambda: "RsfNoWorkerHeartbeat" in prom.firing(), 45, "RsfNoWorkerHeartbeat firing")
                alert = next(a for a in prom.alerts() if a["labels"]["alertname"] == "RsfNoWorkerHeartbeat")
                assert alert["annotations"]["runbook_url"] == "docs/operations.md#frozen-worker"
                assert "RsfBeatSilent" not in prom.firing()

                beat.stop()
                own.wait(lambda: "RsfBeatSilent" in prom.firing(), 45, "RsfBeatSilent firing")
        finally:
            beat.stop()
            exporter.stop()


def redis_memory_high_fires_on_a_small_maxmemory(stack: Stack, prom: monitoring.Prometheus) -> None:
    """maxmemory kept, every second, where what Redis uses is 87.5% of it (over the alert's 0.8,
    under RsfRedisFull's 0.95): the stack's memory moves meanwhile (its history flush frees what it
    archives; once, on a loaded CI host, it fell out of the band before a scrape), so the cap
    follows it. The exporter reports both, RsfRedisMemoryHigh fires and RsfRedisFull does not;
    back to the limit it had, it resolves."""
    had = stack.redis.config_get("maxmemory")["maxmemory"]

    def in_the_band_and_firing() -> bool:
        used = int(stack.redis.info("memory")["used_memory"])
        stack.redis.config_set("maxmemory", str(int(used / 0.875)))  # the middle of the 0.8-0.95 band
        return "RsfRedisMemoryHigh" in prom.firing()

    try:
        stack.wait(in_the_band_and_firing, 45, "RsfRedisMemoryHigh firing", interval=1.0)
        alert = next(a for a in prom.alerts() if a["labels"]["alertname"] == "RsfRedisMemoryHigh")
        assert alert["annotations"]["runbook_url"] == "docs/operations.md#redis-full"
        assert "RsfRedisFull" not in prom.firing()
    finally:
        stack.redis.config_set("maxmemory", had)
    stack.wait(lambda: "RsfRedisMemoryHigh" not in prom.firing(), 45, "RsfRedisMemoryHigh resolved")
