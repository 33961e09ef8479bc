"""Intake through the pump, on real parts (a Redis of our own, real Celery workers, the simulators):
executes accepted while the broker is down and delivered once it is back; a pump killed mid-batch
loses nothing and sends nothing twice."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.infra import keys
from pipeline.journeys import intake
from pipeline.journeys.executions import new_execution
from pipeline.sandbox import jbsim, processes
from pipeline.sandbox.stack import Stack
from schemas.jb_execute import ExecuteSchema
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration

TENANT = "intake"
IDLE = "intake-idle"  # a tenant without traffic: the killed worker consumes only its render queue


def test_executes_are_accepted_while_the_broker_is_down_and_delivered_once_it_is_back(tmp_path: Path):
    # the broker: a Redis of its own (BROKER_URL), so it can be down while the state Redis is up
    broker, broker_url = processes.start_redis(tmp_path)
    port = int(broker_url.rsplit(":", 1)[1].split("/")[0])
    with Stack(
        tmp_path / "stack", {TENANT: {}}, web="thread", worker_name="down", broker_url=broker_url
    ) as stack:
        try:
            stack.start_workers(1, 4)
            payloads = stack.prepare(TENANT, jbsim.make_contacts(60, seed=14))
            broker.stop()  # SIGTERM: the broker is gone while Journey Builder keeps calling
            result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, retries=0)
            assert result.ok == 60, result  # every execute answered 200 at the first try
            assert stack.runtime.ledger.open_count(TENANT) == 60
            time.sleep(3)  # the pump tries, fails and keeps them: nothing reached a worker
            assert stack.runtime.ledger.open_count(TENANT) == 60
            assert intake.backlog(stack.redis, TENANT)["waiting"] == 60
            assert stack.rokt_state()["event_posts"] == 0
            broker, _url = processes.start_redis(tmp_path, port)  # back, on its port
            rows = stack.wait_terminal(TENANT, 60, timeout=120)
        finally:
            broker.stop()
        assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
        assert intake.backlog(stack.redis, TENANT) == {"waiting": 0, "pending": 0}
        rokt = stack.rokt_state()
        assert rokt["events"] == expected_outcomes(payloads)["accepted"]
        assert rokt["duplicate_calendar_entries"] == 0
        worker_log = "\n".join(worker.output() for worker in stack.workers)
        assert "intake pump" in worker_log and "again in" in worker_log  # it did meet the broker down


def test_a_pump_killed_mid_batch_loses_nothing_and_sends_nothing_twice(tmp_path: Path):
    env = {"INTAKE_RECLAIM_SECONDS": "3"}
    with Stack(tmp_path / "stack", {TENANT: {}, IDLE: {}}, env=env, worker_name="pk") as stack:
        count = 800
        payloads = stack.prepare(TENANT, jbsim.make_contacts(count, seed=15))
        schema = ExecuteSchema()
        for payload in payloads:  # accepted by execute (claimed: in the intake stream), no pump yet
            assert stack.runtime.ledger.claim(TENANT, *new_execution(schema.load(payload)))
        assert intake.backlog(stack.redis, TENANT)["waiting"] == count

        # a worker that only pumps (it consumes the render queue of a tenant without traffic)
        (pumping,) = stack.start_workers(1, 1, queues=(f"render.{IDLE}",))
        consumer = stack.worker_hostnames()[pumping.name]
        key = keys.intake(TENANT)
        deadline = time.monotonic() + 60
        while True:  # freeze it (SIGSTOP) until it is caught with a batch in hand, one done before
            assert time.monotonic() < deadline, f"never caught mid-batch:\n{pumping.tail()}"
            pumping.kill(signal.SIGSTOP)
            held = _held_by(stack, key, consumer)
            published = count - intake.backlog(stack.redis, TENANT)["waiting"]  # and acknowledged
            if held and 0 < published < count:
                break
            pumping.kill(signal.SIGCONT)
            time.sleep(0.005)
        pumping.kill()  # SIGKILL of the whole worker, its pump thread mid-batch
        pumping.stop(timeout=5)
        stack.workers.remove(pumping)
        assert _held_by(stack, key, consumer) == held  # left pending: nobody acknowledges them

        # another worker (another name: the lost one never comes back) takes its entries over
        stack.start_workers(1, 4)
        rows = stack.wait_terminal(TENANT, count, timeout=240)
        assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
        assert len({row["ExecutionId"] for row in rows}) == count
        assert intake.backlog(stack.redis, TENANT) == {"waiting": 0, "pending": 0}
        rokt = stack.rokt_state()
        assert rokt["events"] == expected_outcomes(payloads)["accepted"]
        assert rokt["duplicate_calendar_entries"] == 0
        assert "took over" in "\n".join(worker.output() for worker in stack.workers)
        print(
            f"held by the killed pump: {held}; published and acknowledged before the kill: {published}; "
            f"repeated event posts: {rokt['repeated_event_posts']}"
        )


def _held_by(stack: Stack, key: str, consumer: str) -> int:
    """Entries of the stream `consumer` holds unacknowledged (0 before the group exists)."""
    try:
        summary = stack.redis.xpending(key, intake.GROUP)
    except Exception:  # no group yet
        return 0
    return int(dict((c["name"], c["pending"]) for c in summary.get("consumers") or []).get(consumer, 0))
