"""`fairness`: tenant A enqueues 20,000 executions, then tenant B enqueues 100; B's queue wait
(execute's claim -> render start, from the ledger's createdAt and renderStartedAt), against B
alone on an idle system. Each tenant has the default Rokt limit (50/s) of its own account. The
workers are split as compose runs them: worker-render (prefork) and worker-rokt (threads), so
no render waits behind a Rokt call waiting for its slot (`tenants` repeats this with 150 ms of
Rokt latency)."""

from __future__ import annotations

import statistics
import time
from datetime import datetime
from typing import Any

from bench.harness import WORKER_CONCURRENCY, journey, reset
from pipeline.infra import keys
from pipeline.infra.queues import render_queue
from pipeline.sandbox.stack import ROKT_THREADS, Stack
from pipeline.vocabulary import State

B_COUNT = 100
B_TENANT = "fair-b"
SPLIT_WORKERS = (
    f"worker-render 1 x -c {WORKER_CONCURRENCY} (prefork), worker-rokt 1 x -c {ROKT_THREADS} (threads)"
)


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    a_count = 2_000 if quick else 20_000
    deadline = 180 if quick else 900

    reset(stack)
    b_payloads = journey(stack, B_TENANT, B_COUNT)
    stack.start_split_workers(render_concurrency=WORKER_CONCURRENCY)
    alone = queue_waits(stack, stack.enqueue(B_TENANT, b_payloads), deadline)

    reset(stack)
    a_payloads, b_payloads = journey(stack, "fair-a", a_count), journey(stack, B_TENANT, B_COUNT)
    stack.start_split_workers(render_concurrency=WORKER_CONCURRENCY)
    stack.enqueue("fair-a", a_payloads)
    backlog = stack.redis.llen(render_queue("fair-a"))
    behind = queue_waits(stack, stack.enqueue(B_TENANT, b_payloads), deadline)
    stack.stop_workers()
    return {
        "fairness": {
            "a_executions": a_count,
            "b_executions": B_COUNT,
            "a_render_queue_when_b_enqueued": backlog,
            "worker": SPLIT_WORKERS,
            "b_behind_a": behind,
            "b_alone": alone,
        }
    }


def queue_waits(
    stack: Stack, execution_ids: list[str], deadline: float, until: str = "rendering"
) -> dict[str, Any]:
    """B's queue waits once all its executions started rendering (`until="accepted"`: and all
    ended, adding the time from claim to the end: `accepted_p50_ms`...), or at the deadline."""
    ends = time.monotonic() + deadline
    while True:
        stack.check_alive()
        pipe = stack.redis.pipeline()
        for execution in execution_ids:
            pipe.hmget(
                keys.execution(B_TENANT, execution), "createdAt", "renderStartedAt", "status", "updatedAt"
            )
        records = pipe.execute()
        started = [r for r in records if r[1]]
        ended = [r for r in records if r[2] and r[2] != State.QUEUED]
        done = len(started) == len(execution_ids) and (
            until == "rendering" or len(ended) == len(execution_ids)
        )
        if done or time.monotonic() > ends:
            break
        time.sleep(0.2)
    figures = _percentiles([_ms_between(r[0], r[1]) for r in started])
    figures = {"rendered": len(started), **figures}
    if until == "accepted":
        accepted = [_ms_between(r[0], r[3]) for r in ended if r[2] == State.ACCEPTED]
        figures.update({"accepted": len(accepted), **_percentiles(accepted, "accepted_")})
    return figures


def _percentiles(values: list[float], prefix: str = "") -> dict[str, float | None]:
    if not values:
        return {f"{prefix}p50_ms": None, f"{prefix}p99_ms": None, f"{prefix}max_ms": None}
    values = sorted(values)
    return {
        f"{prefix}p50_ms": round(statistics.median(values), 1),
        f"{prefix}p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
        f"{prefix}max_ms": round(values[-1], 1),
    }


def _ms_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000
