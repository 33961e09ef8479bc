"""`python -m bench.redis_cost [CONTACTS]`: Redis CPU per contact (docs/scaling.md), printed as JSON.

Contacts run through the workers as compose runs them (worker-render prefork, worker-rokt
threads) against zero-latency simulators; the figure is the bundled redis-server's user + system
CPU over the run ÷ contacts, claims and pumping included. Once with Redis as the broker too, once
with a RabbitMQ vhost as the broker (Redis for state only; skipped, with the reason, when
RABBITMQ_URL does not answer). Not part of `make bench`: a sizing figure, run when sizing.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.harness import REPO_ROOT, TENANTS, bench_stack, delivered, journey, reset
from pipeline.sandbox import rabbitmq
from pipeline.sandbox.stack import Stack

TENANT = "bench"
WARM_UP = 200


def measure(stack: Stack, contacts: int) -> dict[str, Any]:
    reset(stack)
    payloads = journey(stack, TENANT, contacts + WARM_UP)
    stack.start_split_workers(render=1, rokt=1, render_concurrency=8, rokt_concurrency=64)
    stack.enqueue(TENANT, payloads[:WARM_UP])
    stack.wait(lambda: delivered(stack, TENANT, WARM_UP), 120, "warm-up")
    time.sleep(3)  # the warm-up's scheduled flushes
    redis_server = psutil.Process(stack.redis_process.pid)
    before, started = sum(redis_server.cpu_times()[:2]), time.monotonic()
    stack.enqueue(TENANT, payloads[WARM_UP:])
    stack.wait(lambda: delivered(stack, TENANT, contacts + WARM_UP), 600, "the run", interval=0.2)
    cpu = sum(redis_server.cpu_times()[:2]) - before
    stack.stop_workers()
    return {
        "contacts": contacts,
        "redis_cpu_ms_per_contact": round(cpu * 1000 / contacts, 3),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    contacts = int(args[0]) if args else 2_000
    figures: dict[str, Any] = {}
    with bench_stack(Path(tempfile.mkdtemp(prefix="rokt-sfmc-redis-cost-"))) as stack:
        figures["redis_broker"] = measure(stack, contacts)
    try:
        with rabbitmq.temporary_vhost("rsf-redis-cost") as url:
            run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-redis-cost-"))
            env = {"PYTHONPATH": str(REPO_ROOT)}
            with Stack(run_dir, TENANTS, env=env, worker_name="bench-worker", broker_url=url) as stack:
                figures["rabbitmq_broker"] = measure(stack, contacts)
    except rabbitmq.RabbitMQUnavailable as exc:
        figures["rabbitmq_broker"] = {"skipped": str(exc)}
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
