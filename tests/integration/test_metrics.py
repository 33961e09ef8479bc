"""The exporter as a process of its own, scraped over HTTP while a small journey runs: its
figures are those the workers keep in Redis, and they match what the simulators saw."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.sandbox import jbsim, monitoring
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration

TENANT = "metrics"
ROKT_WAIT = "rokt-wait"  # every tenant's Rokt calls waiting for their limiter ticket


def samples(text: str, name: str, **labels: str) -> dict[tuple, float]:
    """`name`'s samples matching `labels`, keyed by their other labels' values."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                rest = tuple(v for k, v in sorted(s.labels.items()) if k not in labels)
                found[rest] = s.value
    return found


def _add_tenant(stack: Stack) -> None:
    """A tenant of this test's own, added at run time (the session's workers pick it up)."""
    stack.add_tenant(TENANT)
    line = f"Started consuming from rokt.{TENANT}"
    stack.wait(lambda: all(line in w.tail(5000) for w in stack.workers_serving("rokt")), 30, line)


def test_the_exporter_counts_what_the_simulators_saw(stack: Stack):
    _add_tenant(stack)
    stack.faults("rokt", rate_limit=10)  # below the tenant's 50/s: Rokt answers 429s
    exporter, url = monitoring.start_exporter(stack.run_dir, stack.env)
    try:
        scraper = monitoring.Scraper(url, interval=0.3)
        busiest = 0.0

        def held_now() -> float:
            text = scraper.scrape()
            # the tenant's own queue, and the shared one its calls wait in for their limiter
            # ticket or a 429's countdown (only this test's tenant sends to Rokt meanwhile)
            held = 0.0
            for queue in ({"tenant": TENANT, "queue": f"rokt.{TENANT}"}, {"tenant": "", "queue": ROKT_WAIT}):
                held += samples(text, "rsf_queue_messages_waiting", **queue).get((), 0)
                held += samples(text, "rsf_queue_messages_unacked", **queue).get((), 0)
            return held

        def scrape_and_watch() -> None:
            nonlocal busiest
            busiest = max(busiest, held_now())

        before = held_now()  # anything an earlier test left in the shared rokt-wait

        payloads = stack.prepare(TENANT, jbsim.make_contacts(40))
        result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=8)
        assert result.ok == 40

        def terminal() -> bool:
            scrape_and_watch()
            return len(stack.rows(TENANT)) >= 40 and stack.runtime.ledger.open_count(TENANT) == 0

        stack.wait(terminal, 120, f"40 terminal rows of {TENANT}")
        rows = stack.rows(TENANT)
        text = scraper.scrape()
    finally:
        exporter.stop()
    assert scraper.scrapes >= 3 and scraper.failures == 0
    assert busiest > before  # a scrape during the run saw the tenant's Rokt work queued, waiting or in hand

    outcomes = Counter(row["Status"] for row in rows)
    assert outcomes == expected_outcomes(payloads)
    executions = samples(text, "rsf_executions", tenant=TENANT)
    assert {state: int(n) for (state,), n in executions.items() if n} == dict(outcomes)
    assert samples(text, "rsf_executions_received_total", tenant=TENANT) == {(): 40}

    rokt = stack.rokt_state()
    calls = {
        klass: int(n)
        for (klass,), n in samples(text, "rsf_vendor_calls_total", tenant=TENANT, vendor="rokt").items()
    }
    assert rokt["throttled"] > 0
    assert calls["429"] == rokt["throttled"]
    assert calls["2xx"] == rokt["event_posts"] + rokt["token_requests"]
    assert calls["5xx"] == calls["error"] == 0
    tokens = samples(text, "rsf_vendor_token_fetches_total", tenant=TENANT, vendor="rokt")
    assert tokens == {(): rokt["token_requests"]}
    sfmc = stack.sfmc_state()
    sfmc_calls = samples(text, "rsf_vendor_calls_total", tenant=TENANT, vendor="sfmc")
    assert sfmc_calls[("2xx",)] >= sfmc["rowset_calls"] > 0

    alive = samples(text, "rsf_workers_alive")[()]
    assert alive >= len(stack.workers)
    assert samples(text, "rsf_redis_up") == {(): 1}
    assert samples(text, "rsf_tenant_info", tenant=TENANT) == {("active",): 1}
