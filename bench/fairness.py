"""`fairness`: tenant A enqueues 20,000 executions, then tenant B enqueues 100; B's queue wait
(execute's claim -> render start, from the ledger's createdAt and renderStartedAt), against B
alone on an idle system. Each tenant has the default Rokt limit (50/s) of its own account."""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

from bench.harness import WORKER_CONCURRENCY, journey, reset
from pipeline.queues import render_queue
from pipeline.sandbox.stack import Stack

B_COUNT = 100


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    a_count = 2_000 if quick else 20_000
    deadline = 180 if quick else 900

    reset(stack)
    b_payloads = journey(stack, "fair-b", B_COUNT)
    stack.start_workers(1, WORKER_CONCURRENCY)
    alone = _waits(stack, stack.enqueue("fair-b", b_payloads), deadline)

    reset(stack)
    a_payloads, b_payloads = journey(stack, "fair-a", a_count), journey(stack, "fair-b", B_COUNT)
    stack.start_workers(1, WORKER_CONCURRENCY)
    stack.enqueue("fair-a", a_payloads)
    backlog = stack.redis.llen(render_queue("fair-a"))
    behind = _waits(stack, stack.enqueue("fair-b", b_payloads), deadline)
    stack.stop_workers()
    return {
        "fairness": {
            "a_executions": a_count,
            "b_executions": B_COUNT,
            "a_render_queue_when_b_enqueued": backlog,
            "worker": f"1 instance, -c {WORKER_CONCURRENCY}",
            "b_behind_a": behind,
            "b_alone": alone,
        }
    }


def _waits(stack: Stack, execution_ids: list[str], deadline: float) -> dict[str, Any]:
    """Queue waits of these executions once all have started rendering (or the deadline)."""
    tenant, ledger = "fair-b", stack.runtime.ledger
    ends = time.monotonic() + deadline
    waits: list[float] = []
    while True:
        stack.check_alive()
        pipe = stack.redis.pipeline()
        for execution in execution_ids:
            pipe.hmget(ledger.member(tenant, execution), "createdAt", "renderStartedAt")
        waits = [_ms_between(created, started) for created, started in pipe.execute() if started]
        if len(waits) == len(execution_ids) or time.monotonic() > ends:
            break
        time.sleep(0.2)
    if not waits:
        return {"rendered": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    waits.sort()
    return {
        "rendered": len(waits),
        "p50_ms": round(statistics.median(waits), 1),
        "p99_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 1),
        "max_ms": round(waits[-1], 1),
    }


def _ms_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000
