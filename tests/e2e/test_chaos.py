"""Each chaos scenario, small, through `rokt-sfmc demo --chaos`: nothing lost, nothing twice."""

import json
import subprocess
import sys

import pytest

from pipeline.sandbox.stack import environ_outside_stacks

# the pytest-timeout of a test that runs a chaos demo (setup.cfg's 300 s otherwise): the demo's own
# limit stays below it, so a slow demo fails with its output rather than being killed mid-run
CHAOS_TEST_TIMEOUT = 660
CHAOS_DEMO_TIMEOUT = 540
# how long a demo told to stop (SIGTERM) may take to stop its stack before it is killed
DEMO_STOP_SECONDS = 60


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(CHAOS_TEST_TIMEOUT)]


# Each process-level failure alone (they interact with the reconciler and the pump differently),
# then every scenario at once. The clean Redis restart and the vendor faults run only in the
# combined run (alone they cost CI a minute and a half of its 20; crash-redis alone takes Redis
# away harder); `rokt-sfmc demo --chaos restart-redis` runs one alone by hand. redis-full (5 s at
# maxmemory) joins the combined run too: it adds at most its 5 s there, where a run of its own
# would add a whole stack (~40 s). kill-postgres rides with crash-redis (a stack run of its own
# would cost CI another run): the store's server killed while Redis crashes too, and still every
# execution ends in the store.


@pytest.mark.parametrize(
    "scenario",
    [
        "kill-workers",
        "crash-redis,kill-postgres",
        "kill-workers,restart-redis,rokt-faults,sfmc-faults,redis-full",
    ],
)
def test_chaos_scenario_loses_nothing_and_sends_nothing_twice(tmp_path, scenario):
    report = chaos_report(tmp_path, scenario)
    assert_nothing_lost_nor_twice(report)
    injected = {k: v for k, v in report["chaos"].items() if k not in ("scenarios", "supervisor_restarts")}
    assert injected and all(v > 0 for v in injected.values()), report["chaos"]  # the faults did happen
    if "redis-full" in scenario:  # Redis refused writes meanwhile; the memory alert saw it
        assert injected["redis_oom_refusals"] > 0, report["chaos"]
        if report["ops"]["prometheus"].startswith("ran"):
            assert "RsfRedisFull" in report["ops"]["alerts"], report["ops"]
    if "ping_after_redis_restart_s" in injected:  # remote control on: every worker answers again
        assert injected["ping_after_redis_restart_s"] < 30, report["chaos"]
    assert report["subscriptions"]["rows"] > 0
    if "kill-postgres" in scenario:  # the demo's own PostgreSQL, killed once, holds every execution
        assert injected["postgres_kills"] == 1, report["chaos"]
        history = report["history"]
        assert history["store"] == "postgresql" and history["waiting"] == 0, history
        assert history["archived"] == sum(report["outcomes"].values()) == 250, history


def chaos_report(
    tmp_path, scenario: str, env: dict[str, str] | None = None, timeout: float = CHAOS_DEMO_TIMEOUT
) -> dict:
    """`rokt-sfmc demo --contacts 250 --chaos <scenario>` in a process of its own (its own stack,
    not this session's Redis or tenants), `env` added; its JSON report once it exited 0. A demo
    that overruns, or a test interrupted, gets SIGTERM first: it stops every process of its stack
    (its children run in sessions of their own, so killing the demo alone would orphan them)."""
    report_path = tmp_path / "report.json"
    base = {k: v for k, v in environ_outside_stacks().items() if k not in ("REDIS_URL", "TENANTS_FILE")}
    demo = ["demo", "--contacts", "250", "--chaos", scenario, "--report", str(report_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *demo],
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.terminate()  # the demo unwinds its `with Stack`
            try:
                process.communicate(timeout=DEMO_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(report_path.read_text())


def assert_nothing_lost_nor_twice(report: dict) -> None:
    assert report["lost"] == 0
    assert report["rokt"]["duplicate_calendar_entries"] == 0
    assert sum(report["outcomes"].values()) == 250
    assert report["outcomes"]["accepted"] == 0  # every accepted event got confirmed in the end
