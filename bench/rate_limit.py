"""`rate_limit`: 8 worker processes creating events at the Rokt simulator, which enforces
100 requests/s (a strict trailing 1-second window, 429 beyond it), for 30 s: our global Redis
limiter, against Celery's own `rate_limit="100/s"` on the same task and the same processes.

Celery's limit is a token bucket inside each worker instance, so the result depends on how the
8 processes are deployed: 4 instances of 2 (four containers) and 1 instance of 8 both run.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from bench.harness import journey, reset
from pipeline.infra.queues import ROKT_WAIT_QUEUE, render_queue, rokt_queue
from pipeline.sandbox.common import max_in_any_window
from pipeline.sandbox.stack import Stack

LIMIT = 100.0
# (figure name, tenant, Celery app, instances, processes per instance)
VARIANTS = (
    ("ours", "rl-ours", "tasks", 4, 2),
    ("celery_rate_limit_4x2", "rl-celery", "bench.celery_rate_limit_app", 4, 2),
    ("celery_rate_limit_1x8", "rl-celery", "bench.celery_rate_limit_app", 1, 8),
)


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    seconds = 10 if quick else 30
    figures: dict[str, Any] = {
        "limit_per_s": LIMIT,
        "window_s": seconds,
        "processes": "8 (4 instances of -c 2, or 1 of -c 8)",
    }
    for name, tenant, app, instances, per_instance in VARIANTS:
        reset(stack, rokt_rate_limit=LIMIT)
        _rendered_backlog(stack, tenant, int(LIMIT * seconds * 1.5) + 500)
        # rokt-wait: where a call waiting for its limiter ticket goes (ours; unused by Celery's)
        stack.start_workers(instances, per_instance, app=app, queues=[rokt_queue(tenant), ROKT_WAIT_QUEUE])
        first = _first_post(stack)
        time.sleep(max(0.0, first + seconds + 1 - time.monotonic()))
        posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()
        stack.stop_workers()
        figures[name] = window_figures(posts["accepted"], posts["throttled"], first, seconds)
        figures[name]["deployment"] = f"{instances} x -c {per_instance}"
    return {"rate_limit": figures}


def _rendered_backlog(stack: Stack, tenant: str, count: int) -> None:
    """More create tasks than the window can drain, rendered beforehand by a separate worker:
    during the window the 8 processes only send (on 2 cores, rendering and flushing beside the
    sending would cap the rate at the CPU, not at the limiter)."""
    payloads = journey(stack, tenant, count)
    stack.start_workers(1, 2, queues=[render_queue(tenant)])
    stack.enqueue(tenant, payloads)
    stack.wait(
        lambda: stack.redis.llen(rokt_queue(tenant)) >= count and stack.redis.llen(render_queue(tenant)) == 0,
        60 + count / 20,
        f"{count} renders",
        interval=0.2,
    )
    stack.stop_workers()


def window_figures(
    accepted: list[float], throttled: list[float], start: float, seconds: int, limit: float = LIMIT
) -> dict[str, Any]:
    """What the vendor saw in [start, start + seconds): sent = accepted + answered 429;
    windows_over_limit counts whole seconds from the start holding more than the limit."""
    end = start + seconds
    ok = [t for t in accepted if start <= t < end]
    refused = [t for t in throttled if start <= t < end]
    sent = sorted(ok + refused)
    per_second = [0] * seconds
    for t in sent:
        per_second[int(t - start)] += 1
    return {
        "utilization": round(len(ok) / (limit * seconds), 3),
        "accepted": len(ok),
        "sent": len(sent),
        "throttled_429": len(refused),
        "max_in_any_1s_window": max_in_any_window(sent),
        "windows_over_limit": sum(1 for count in per_second if count > limit),
    }


def _first_post(stack: Stack, timeout: float = 60) -> float:
    """The simulator's clock (CLOCK_MONOTONIC, shared by every process of this host) at the
    first event POST: the window starts there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=30).json()
        times = posts["accepted"] + posts["throttled"]
        if times:
            return min(times)
        time.sleep(0.1)
    raise TimeoutError("no event POST reached the Rokt simulator")
