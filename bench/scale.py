"""`scale`: contacts per second through the whole chain with 1, 2 and 4 worker processes
(one instance, -c N), no rate limit, zero-latency simulators. Reported as measured: on a
2-core machine the simulators, Redis and this process share the same cores."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.harness import delivered, journey, reset
from pipeline.sandbox.stack import Stack

TENANT = "bench"
PROCESSES = (1, 2, 4)


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    count = 600 if quick else 3_000
    figures: dict[str, Any] = {"contacts": count, "cores": os.cpu_count()}
    for processes in PROCESSES:
        reset(stack)
        payloads = journey(stack, TENANT, count)
        stack.start_workers(1, processes)
        started = time.monotonic()
        stack.enqueue(TENANT, payloads)
        finished = stack.wait(
            lambda: delivered(stack, TENANT, count),
            120 + count / 5,
            f"{count} contacts, -c {processes}",
            interval=0.2,
        )
        stack.stop_workers()
        figures[f"contacts_per_s_{processes}"] = round(count / (finished - started), 1)
    return {"scale": figures}
