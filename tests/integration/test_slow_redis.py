"""A Redis that stops answering does not stall a worker's event loop (issue 23, item 8).

A stack of its own: the Celery broker is a second redis-server, so freezing the application's
Redis (SIGSTOP: connections are still accepted, nothing is answered, as a Redis lost behind a
network that drops packets) leaves the loop's only Redis the one it polls for tasks and remote
control. While the application's Redis is frozen the worker must keep answering `inspect ping`,
which its event loop serves: a loop held by a heartbeat write or a registry read answers late or
not at all. Once Redis answers again (SIGCONT), the heartbeats resume.

The figures (ping latencies during the stall, the longest gap between answers) are printed
with `-s`: they are what the issue's closing note reports.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from pipeline.infra import dispatch, keys
from pipeline.sandbox import processes
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import _own

pytestmark = pytest.mark.integration

TENANT = "stall"
STALL_SECONDS = 25.0  # longer than two heartbeat ticks (10 s) and several registry reads (5 s)
PING_TIMEOUT = 5.0  # a reply later than this counts as none
ANSWER_WITHIN = 1.5  # an event loop that ticks answers a ping well within this
RESUME_WITHIN = 30.0  # a heartbeat tick (10 s) plus a write's timeout, with room for a slow host


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on its own stack: the session one is neither needed nor touched."""


@pytest.fixture(scope="module")
def stall_stack(tmp_path_factory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("slow-redis")
    broker, broker_url = processes.start_redis(run_dir)
    stack = Stack(
        run_dir,
        {TENANT: _own(TENANT)},
        env={"LOG_LEVEL": "INFO"},
        worker_name="stallw",
        worker_concurrency=1,
        broker_url=broker_url,
    )
    try:
        stack.start()
        stack.start_workers(1, 1)
        yield stack
    finally:
        stack.stop()
        broker.stop()


def _ping(hostname: str) -> float | None:
    """Seconds until `hostname` answered a ping, None when it did not within PING_TIMEOUT."""
    started = time.monotonic()
    try:
        replies = dispatch.producer().control.ping(destination=[hostname], timeout=PING_TIMEOUT)
    except Exception:
        return None
    answered = any(hostname in reply for reply in replies or [])
    return time.monotonic() - started if answered else None


def _mark(stack: Stack, hostname: str) -> float | None:
    raw = stack.redis.get(keys.heartbeat("worker", hostname))
    return float(raw) if raw is not None else None


def test_a_frozen_redis_does_not_stall_the_worker_s_loop_and_heartbeats_resume(stall_stack: Stack):
    stack = stall_stack
    [hostname] = stack.worker_hostnames().values()
    [worker] = stack.workers
    redis_pid = stack.redis_process.pid if stack.redis_process else 0
    assert redis_pid and stack.redis_bundled
    processes.wait_until(lambda: _mark(stack, hostname) is not None, 30, "a first heartbeat", worker)
    assert _ping(hostname) is not None, "the worker does not answer a ping before the stall"

    latencies: list[float | None] = []
    answered_at: list[float] = []
    frozen_at = time.monotonic()
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        while time.monotonic() - frozen_at < STALL_SECONDS:
            latency = _ping(hostname)
            latencies.append(latency)
            if latency is not None:
                answered_at.append(time.monotonic())
            time.sleep(0.2)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    thawed_at = time.time()
    stalled_for = time.monotonic() - frozen_at

    answers = [latency for latency in latencies if latency is not None]
    edges = [frozen_at, *answered_at, frozen_at + stalled_for]
    longest_gap = max(later - earlier for earlier, later in itertools.pairwise(edges))
    figures = {
        "stalled_seconds": round(stalled_for, 1),
        "pings": len(latencies),
        "answered": len(answers),
        "latency_max_seconds": round(max(answers), 3) if answers else None,
        "latency_median_seconds": round(sorted(answers)[len(answers) // 2], 3) if answers else None,
        "longest_gap_between_answers_seconds": round(longest_gap, 2),
    }
    print("\nslow redis:", json.dumps(figures))
    # the loop ticked through the stall: every ping answered, each promptly
    assert len(answers) == len(latencies), figures
    assert max(answers) < ANSWER_WITHIN, figures
    assert longest_gap < PING_TIMEOUT, figures

    # Redis is back: a heartbeat stamped after the thaw lands within a tick or so
    processes.wait_until(
        lambda: (_mark(stack, hostname) or 0) > thawed_at, RESUME_WITHIN, "heartbeats resuming", worker
    )
    assert _ping(hostname) is not None
    # the stall was logged once (not a line a tick), and the recovery once
    said = f"worker heartbeat of {hostname}"
    processes.wait_until(lambda: f"{said} works again" in worker.output(), 15, "the recovery line", worker)
    lines = [line for line in worker.output().splitlines() if said in line]
    assert len(lines) == 2 and "failed" in lines[0] and "works again" in lines[1], lines
