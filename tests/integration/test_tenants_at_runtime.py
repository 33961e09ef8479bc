"""Tenants change while the stack runs: a brand added to the registry is served by the running
workers and web app without any restart; a disabled one's executes get 503 and its queued work
waits, then runs once it is enabled again."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.vocabulary import TenantStatus
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration


def _workers_logged(stack: Stack, line: str) -> None:
    """Every worker serving the stage of the queue the line ends with logged it."""
    workers = stack.workers_serving(line.rsplit(" ", 1)[1].split(".")[0])
    assert workers, line
    stack.wait(lambda: all(line in worker.tail(5000) for worker in workers), 30, line)


def test_a_tenant_added_while_workers_run_is_served_without_a_restart(stack: Stack):
    pids = stack.worker_pids()
    stack.add_tenant("added-later")
    assert stack.runtime.registry.get("added-later").status == TenantStatus.ACTIVE
    payloads = stack.prepare("added-later", jbsim.make_contacts(40))
    result = jbsim.drive(stack.execute_url("added-later"), stack.jwt_secret, payloads, concurrency=8)
    assert result.ok == 40 and result.non_200 == 0
    rows = stack.wait_terminal("added-later", 40, timeout=90)
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    assert stack.worker_pids() == pids  # the same worker processes, never restarted
    _workers_logged(stack, "Started consuming from render.added-later")


def test_a_disabled_tenant_refuses_executes_and_its_queued_work_waits_until_enabled(stack: Stack):
    stack.add_tenant("paused")
    _workers_logged(stack, "Started consuming from rokt.paused")
    _workers_logged(stack, "Started consuming from render.paused")
    payloads = stack.prepare("paused", jbsim.make_contacts(30))
    stack.runtime.registry.set_status("paused", TenantStatus.DISABLED)
    _workers_logged(stack, "Canceling queue render.paused")
    refused = jbsim.drive(stack.execute_url("paused"), stack.jwt_secret, payloads[:5], concurrency=5)
    assert refused.ok == 0 and refused.non_200 == 5  # 503: Journey Builder retries later
    ids = stack.enqueue("paused", payloads)  # queued while disabled: they wait in render.paused
    time.sleep(3)
    assert stack.runtime.ledger.open_count("paused") == len(ids) == 30
    assert stack.rows("paused") == []  # nothing ran meanwhile
    stack.runtime.registry.set_status("paused", TenantStatus.ACTIVE)
    rows = stack.wait_terminal("paused", 30, timeout=90)
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
