"""`tenants`: the service grows by tenants (Rokt caps each account at ~50/s). 20 tenants, each
with a Rokt account of its own at 50/s, the Rokt simulator answering after 150 ms, workers split
as compose runs them: worker-render (prefork) and worker-rokt (a threads pool).

- contacts/s sustained from workers ready to every contact delivered (rows and releases in SFMC),
  with all contacts queued up front, and the workers' CPU ms per contact (every process of both
  instances, pool children included);
- how the Rokt stage waited for its slots: reschedules (limiter tickets) per Rokt call, the
  simulator's 429s (0: the limiter kept every account under its limit) and each instance's
  in-flight ceiling (threads / latency); the baseline is the same run, a quarter the size, on
  one prefork worker for every queue (-c 8: one process per call in flight);
- B's queue wait (claim -> render start) for 100 executions alone and behind A's backlog, and B's
  time to its Rokt answer (claim -> accepted), under the same latency (`fairness` is the same
  measurement against a zero-latency simulator);
- the Rokt stage alone draining a backlog rendered beforehand for 2 tenants (each far above its
  rate) with ROKT_LIMIT_SLEEP_MS 0, 25 and 100: Rokt calls/s against the limiters' rate,
  reschedules per call, 429s, slots given up by late wakers.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from bench.fairness import B_COUNT, SPLIT_WORKERS, queue_waits
from bench.harness import WORKER_CONCURRENCY, delivered, journey, reset
from bench.procs import cpu_seconds
from pipeline.infra.queues import RENDER_QUEUE, ROKT_WORKER_QUEUES, render_queue, rokt_queue
from pipeline.sandbox.stack import ROKT_THREADS, Stack

TENANT_COUNT = 20
RATE = 50.0  # each tenant's Rokt limit (the Tenant default) and its account's at the simulator
LATENCY_MS = 150
# the benchmark's tenants (bench/harness.py TENANTS): ten-01 ... ten-20, each its own account
TENANTS = [f"ten-{i:02d}" for i in range(1, TENANT_COUNT + 1)]
SLEEP_BUDGETS_MS = (0, 25, 100)  # ROKT_LIMIT_SLEEP_MS: never sleep, the default, more
# The backlog phase's tenants: on 2 cores the Rokt stage tops out near 150-170 calls/s, so 20
# accounts' backlog would reach each limiter at a few calls/s and never wait; 2 accounts at 50/s
# do, within what the CPU sends.
BACKLOG_TENANTS = TENANTS[:2]


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    per_tenant = 60 if quick else 500
    a_count = 1_000 if quick else 10_000
    deadline = 240 if quick else 900
    figures = _throughput(stack, per_tenant, deadline)
    # the baseline: one prefork worker for every queue (before the split): a process per call
    baseline = _throughput(stack, per_tenant // 4, deadline, split=False)
    figures["baseline_prefork_contacts_per_s"] = baseline["contacts_per_s"]
    figures["baseline_prefork_cpu_ms_per_contact"] = baseline["cpu_ms_per_contact"]
    figures.update(_b_waits(stack, a_count, deadline))
    # the Rokt stage alone against a backlog above every account's rate, at three sleep budgets
    for sleep_ms in SLEEP_BUDGETS_MS:
        figures[f"backlog_sleep_{sleep_ms}ms"] = _backlog(stack, 150 if quick else 1_000, sleep_ms, deadline)
    stack.stop_workers()
    return {"tenants": figures}


def _backlog(stack: Stack, per_tenant: int, sleep_ms: int, deadline: float) -> dict[str, Any]:
    """BACKLOG_TENANTS' creates rendered beforehand (a render-only worker), then worker-rokt
    alone with ROKT_LIMIT_SLEEP_MS=`sleep_ms` drains them: Rokt calls/s from the first POST to
    the last (against what the limiters allow), reschedules per call (the storm check), 429s."""
    _slow_rokt(stack)
    total = per_tenant * len(BACKLOG_TENANTS)
    stack.start_workers(1, WORKER_CONCURRENCY, queues=[RENDER_QUEUE])
    for tenant in BACKLOG_TENANTS:
        stack.enqueue(tenant, journey(stack, tenant, per_tenant))
    stack.wait(
        lambda: sum(stack.redis.llen(rokt_queue(t)) for t in BACKLOG_TENANTS) >= total,
        deadline,
        f"{total} renders",
        interval=0.2,
    )
    stack.stop_workers()
    saved = stack.env.get("ROKT_LIMIT_SLEEP_MS")
    stack.env["ROKT_LIMIT_SLEEP_MS"] = str(sleep_ms)
    try:
        stack.start_workers(1, ROKT_THREADS, queues=ROKT_WORKER_QUEUES, pool="threads")
    finally:
        if saved is None:
            stack.env.pop("ROKT_LIMIT_SLEEP_MS")
        else:
            stack.env["ROKT_LIMIT_SLEEP_MS"] = saved
    ledger = stack.runtime.ledger
    stack.wait(
        lambda: not any(ledger.open_count(t) for t in BACKLOG_TENANTS), deadline, f"{total} Rokt calls"
    )
    stack.stop_workers()
    posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()["accepted"]
    rokt = stack.rokt_state()
    deferred = sum(stack.runtime.limiter(t, "rokt").deferred() for t in BACKLOG_TENANTS)
    span = max(posts) - min(posts) if len(posts) > 1 else 0.0
    return {
        "tenants": len(BACKLOG_TENANTS),
        "rokt_calls": rokt["event_posts"],
        "limit_per_s": round(
            len(BACKLOG_TENANTS) / stack.runtime.limiter(BACKLOG_TENANTS[0], "rokt").emission, 1
        ),
        "rokt_calls_per_s": round(len(posts) / span, 1) if span else None,
        "reschedules_per_rokt_call": round(deferred / max(1, rokt["event_posts"]), 2),
        "rokt_429s": rokt["throttled"],
        # slots given up by calls that woke more than 10 ms after them (pipeline/stores/ratelimit.py)
        "late_wakes": sum(stack.runtime.limiter(t, "rokt").late_wakes() for t in BACKLOG_TENANTS),
    }


def _slow_rokt(stack: Stack) -> None:
    reset(stack, rokt_rate_limit=RATE)  # per account at the simulator, as Rokt counts it
    stack.faults("rokt", latency_ms=LATENCY_MS)


def _throughput(stack: Stack, per_tenant: int, deadline: float, split: bool = True) -> dict[str, Any]:
    _slow_rokt(stack)
    for tenant in TENANTS:
        stack.enqueue(tenant, journey(stack, tenant, per_tenant))
    total = per_tenant * TENANT_COUNT
    if split:
        workers = stack.start_split_workers(render_concurrency=WORKER_CONCURRENCY)
    else:
        workers = stack.start_workers(1, WORKER_CONCURRENCY)
    pids = [w.pid for w in workers]
    cpu_start, started = cpu_seconds(pids), time.monotonic()
    finished = stack.wait(
        lambda: all(delivered(stack, t, per_tenant) for t in TENANTS),
        deadline,
        f"{total} contacts of {TENANT_COUNT} tenants",
        interval=0.5,
    )
    cpu = cpu_seconds(pids) - cpu_start
    rokt = stack.rokt_state()
    deferred = sum(stack.runtime.limiter(t, "rokt").deferred() for t in TENANTS)
    stack.stop_workers()
    seconds = finished - started
    return {
        "tenants": TENANT_COUNT,
        "contacts": total,
        "rokt_latency_ms": LATENCY_MS,
        "workers": SPLIT_WORKERS,
        "contacts_per_s": round(total / seconds, 1),
        "demand_per_s": TENANT_COUNT * RATE,
        "rokt_in_flight_ceiling_per_s": round(ROKT_THREADS / (LATENCY_MS / 1000), 1),
        "cpu_ms_per_contact": round(cpu * 1000 / total, 2),
        "reschedules_per_rokt_call": round(deferred / max(1, rokt["event_posts"]), 2),
        "rokt_429s": rokt["throttled"],
        "duplicate_calendar_entries": rokt["duplicate_calendar_entries"],
    }


def _b_waits(stack: Stack, a_count: int, deadline: float) -> dict[str, Any]:
    _slow_rokt(stack)
    b_payloads = journey(stack, "fair-b", B_COUNT)
    stack.start_split_workers(render_concurrency=WORKER_CONCURRENCY)
    alone = queue_waits(stack, stack.enqueue("fair-b", b_payloads), deadline, until="accepted")

    _slow_rokt(stack)
    a_payloads, b_payloads = journey(stack, "fair-a", a_count), journey(stack, "fair-b", B_COUNT)
    stack.start_split_workers(render_concurrency=WORKER_CONCURRENCY)
    stack.enqueue("fair-a", a_payloads)
    backlog = stack.redis.llen(render_queue("fair-a"))
    behind = queue_waits(stack, stack.enqueue("fair-b", b_payloads), deadline, until="accepted")
    return {
        "b_wait_p50_ms": behind["p50_ms"],
        "b_wait_p99_ms": behind["p99_ms"],
        "b_alone_wait_p50_ms": alone["p50_ms"],
        "b_alone_wait_p99_ms": alone["p99_ms"],
        "b_accepted_p50_ms": behind["accepted_p50_ms"],
        "b_accepted_p99_ms": behind["accepted_p99_ms"],
        "b_alone_accepted_p50_ms": alone["accepted_p50_ms"],
        "a_executions": a_count,
        "a_render_queue_when_b_enqueued": backlog,
    }
