"""The Rokt stage on a threads pool (worker-rokt) beside render on prefork (worker-render), as
compose runs them: a backlog above the account's limit is rescheduled to limiter tickets, not
slept in pool slots, without a retry storm and without a request over the limit."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.infra.queues import RENDER_QUEUE, ROKT_QUEUE
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration

CONTACTS = 150
RATE = 20  # the tenant's limit and the simulator's: 150 contacts take ~7.5 s of slots


def test_a_backlog_above_the_limit_waits_on_tickets_not_in_threads(stack: Stack):
    stack.faults("rokt", rate_limit=RATE, latency_ms=150)
    limiter = stack.runtime.limiter("threads", "rokt")
    deferred_before = limiter.deferred()
    payloads = stack.prepare("threads", jbsim.make_contacts(CONTACTS, seed=14))
    result = jbsim.drive(stack.execute_url("threads"), stack.jwt_secret, payloads, concurrency=16)
    assert result.ok == CONTACTS
    rows = stack.wait_terminal("threads", CONTACTS, timeout=120)

    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    rokt = stack.rokt_state()
    assert rokt["events"] == expected_outcomes(payloads)["accepted"]
    assert rokt["throttled"] == 0 and rokt["max_posts_in_any_1s_window"] <= RATE
    assert rokt["duplicate_calendar_entries"] == 0
    # the contacts arrived far faster than 20/s: most waited on a ticket, each about once
    deferred = limiter.deferred() - deferred_before
    sent = rokt["events"]
    assert sent > 60 and deferred > sent / 2, (deferred, sent)
    assert deferred < 3 * sent, f"{deferred} reschedules for {sent} calls: a retry storm"

    rokt_workers, render_workers = stack.workers_serving(ROKT_QUEUE), stack.workers_serving(RENDER_QUEUE)
    assert rokt_workers and render_workers and not set(rokt_workers) & set(render_workers)
    for worker in rokt_workers:
        assert "(thread)" in worker.output(), "worker-rokt runs a threads pool"
    assert any("rsf.create_rokt_event[" in w.log_path.read_text(errors="replace") for w in rokt_workers)
    for worker in render_workers:
        assert "rsf.create_rokt_event[" not in worker.log_path.read_text(errors="replace")
