"""The operator's commands against the session's real stack: `status` after a small run,
`healthcheck` of running workers, web and exporter, `dlq stats` and `dlq purge` on real Redis."""

from __future__ import annotations

import json
import sys
import time

import pytest

from pipeline.infra import keys
from pipeline.ops import heartbeats
from pipeline.sandbox import jbsim
from pipeline.sandbox.processes import Child, free_port, http_ok, wait_until
from pipeline.sandbox.stack import Stack
from pipeline.stores.deadletters import record_dead_letter
from pipeline.vocabulary import Stage
from tests.integration.helpers import cli

pytestmark = pytest.mark.integration

TENANT = "cli-ops"  # added to the registry at run time: no pinned tenant of another test is touched


@pytest.fixture(scope="module")
def ops_tenant(stack: Stack) -> str:
    stack.add_tenant(TENANT)
    return TENANT


def test_status_json_shows_the_tenant_figures_after_a_small_run(stack: Stack, ops_tenant: str):
    payloads = stack.prepare(ops_tenant, jbsim.make_contacts(20, seed=12))
    result = jbsim.drive(stack.execute_url(ops_tenant), stack.jwt_secret, payloads, concurrency=5)
    assert result.ok == 20
    stack.wait_terminal(ops_tenant, 20)

    shown = cli(stack, "status", "--json", "--tenant", ops_tenant)
    assert shown.returncode == 0, shown.stderr
    snapshot = json.loads(shown.stdout)
    assert list(snapshot["tenants"]) == [ops_tenant]
    mine = snapshot["tenants"][ops_tenant]
    assert mine["status"] == "active" and mine["reconnectNeeded"] is False
    executes = mine["executes"]
    assert executes["received"] == 20 and executes["queued"] == 0
    assert sum(n for state, n in executes.items() if state not in ("received", "replayed")) == 20
    assert mine["calls"]["rokt"]["2xx"] > 0 and mine["tokenFetches"]["rokt"] >= 1
    assert set(mine["queues"]) == {f"render.{ops_tenant}", f"rokt.{ops_tenant}"}
    assert all(q["waiting"] == 0 for q in mine["queues"].values())
    assert any(name.startswith("w-") for name in snapshot["workers"])

    table = cli(stack, "status", "--tenant", ops_tenant)
    assert table.returncode == 0, table.stderr
    assert ops_tenant in table.stdout and "executes" in table.stdout and "received" in table.stdout


def _workers(stack: Stack) -> dict[str, float]:
    return heartbeats.seen(stack.redis, "worker")


def test_healthcheck_of_running_workers_and_the_web_app(stack: Stack):
    # each worker beats from its event loop as soon as it consumes: every one is seen
    names = {f"{worker.name}@" for worker in stack.workers}
    stack.wait(
        lambda: all(any(seen.startswith(name) for seen in _workers(stack)) for name in names),
        30,
        "a heartbeat of every worker",
    )
    healthy = cli(stack, "healthcheck", "worker")  # default: any worker of this host
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("healthy: worker w-")
    named = cli(stack, "healthcheck", "worker", "--hostname", next(iter(_workers(stack))))
    assert named.returncode == 0, named.stderr
    elsewhere = cli(stack, "healthcheck", "worker", "--hostname", "no-such-host")
    assert elsewhere.returncode == 1 and "no worker heartbeat for 'no-such-host'" in elsewhere.stderr

    web = cli(stack, "healthcheck", "web")  # PUBLIC_BASE_URL: the stack's web app
    assert web.returncode == 0, web.stderr
    down = cli(stack, "healthcheck", "web", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "unreachable" in down.stderr


def test_healthcheck_of_the_exporter_process(stack: Stack, tmp_path):
    port = free_port()
    argv = [sys.executable, "-m", "pipeline.cli", "exporter", "--port", str(port), "--host", "127.0.0.1"]
    exporter = Child("exporter-cli", argv, stack.env, tmp_path)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 20, "exporter", exporter)
        up = cli(stack, "healthcheck", "exporter", "--port", str(port))
        assert up.returncode == 0, up.stderr
    finally:
        exporter.stop()
    down = cli(stack, "healthcheck", "exporter", "--port", str(port))
    assert down.returncode == 1 and "unreachable" in down.stderr


def test_dlq_stats_and_purge_on_real_redis(stack: Stack, ops_tenant: str):
    r = stack.redis
    for item_id, stage, days_ago in (
        ("ops-old-1", Stage.CREATE_EVENT, 45),
        ("ops-old-2", Stage.RECORD_STATUS, 40),
        ("ops-new", Stage.CREATE_EVENT, 0),
    ):
        record_dead_letter(
            r, ops_tenant, item_id, stage=stage, error_class="permanent", reason="x", attempts=1, payload={}
        )
        if days_ago:
            letter = json.loads(r.hget(keys.dead_letters(ops_tenant), item_id))
            letter["failedAt"] = time.strftime(
                "%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(time.time() - days_ago * 86400)
            )
            r.hset(keys.dead_letters(ops_tenant), item_id, json.dumps(letter, sort_keys=True))
    before = r.hlen(keys.dead_letters(ops_tenant))

    stats = cli(stack, "dlq", "stats", "--tenant", ops_tenant)
    assert stats.returncode == 0, stats.stderr
    counted = json.loads(stats.stdout)
    assert counted["total"] == before and counted["byStage"]["record_status"]["total"] >= 1

    dry = cli(stack, "dlq", "purge", "--tenant", ops_tenant, "--older-than", "30d")
    assert dry.returncode == 1 and "--yes" in dry.stderr
    assert json.loads(dry.stdout)["ids"] == ["ops-old-1", "ops-old-2"]
    assert r.hlen(keys.dead_letters(ops_tenant)) == before
    done = cli(stack, "dlq", "purge", "--tenant", ops_tenant, "--older-than", "30d", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == 2
    assert r.hlen(keys.dead_letters(ops_tenant)) == before - 2 and r.hexists(
        keys.dead_letters(ops_tenant), "ops-new"
    )
