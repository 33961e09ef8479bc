"""`pipeline`, `sfmc_batching` and `memory`: one run of contacts through the whole chain
(render, create at Rokt, status rows and journey releases to SFMC) on one worker instance,
against zero-latency simulators with no rate limit; then a no-op task on the same Redis.

`pipeline.stage_cpu_ms_per_contact`: a second run with one worker instance per stage (the
render queues; the Rokt queues; SFMC flushes and the rest), each instance's CPU per contact:
what each stage costs, Celery's own share of its tasks included."""

from __future__ import annotations

import time
from typing import Any

from bench.harness import WORKER_CONCURRENCY, delivered, journey, reset
from bench.noop_app import NOOP_QUEUE, NOOP_TASK
from bench.procs import PeakRss, cpu_seconds, rss_mb
from pipeline.infra import dispatch, queues
from pipeline.sandbox.stack import Stack

TENANT = "bench"


def phases(quick: bool) -> tuple[int, int, int]:
    """(contacts for the first memory reading, for the CPU figure, for the last memory reading)."""
    return (1_000, 2_000, 4_000) if quick else (1_000, 10_000, 20_000)


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    first, measured, total = phases(quick)
    reset(stack)
    payloads = journey(stack, TENANT, total)
    stack.start_workers(1, WORKER_CONCURRENCY)
    pids = stack.worker_pids()
    cpu_start = cpu_seconds(pids)
    cpu_at_measured = 0.0
    busy_seconds = 0.0  # first enqueue -> last row delivered, summed over the phases
    rss: dict[str, float] = {}
    consumer: dict[str, float] = {}  # the worker's main process, which receives every task
    done = 0
    with PeakRss(pids) as peak:
        for target in (first, measured, total):
            started = time.monotonic()
            stack.enqueue(TENANT, payloads[done:target])
            done = target
            finished = stack.wait(
                lambda n=done: delivered(stack, TENANT, n), 120 + done / 20, f"{done} contacts", interval=0.2
            )
            if target <= measured:
                busy_seconds += finished - started
            if target == first:
                rss[f"rss_mb_{first // 1000}k"] = peak.peak_mb()
                consumer["mb"], consumer["tasks"] = rss_mb(pids[0]), _tasks_received(stack)
            if target == measured:
                cpu_at_measured = cpu_seconds(pids)
        rss[f"rss_mb_{total // 1000}k"] = peak.peak_mb()
        consumer_growth = (rss_mb(pids[0]) - consumer["mb"]) / (_tasks_received(stack) - consumer["tasks"])
    rokt, sfmc = stack.rokt_state(), stack.sfmc_state()
    stack.stop_workers()

    stages = _stage_run(stack, measured // 2)
    noop_cpu, noop_growth = _noop_run(stack, measured)
    cpu_ms = (cpu_at_measured - cpu_start) * 1000 / measured
    noop_ms = noop_cpu * 1000 / measured
    status_rows = sfmc["data_extensions"].get(stack.status_de_key(TENANT), 0)
    return {
        "pipeline": {
            "contacts": measured,
            "worker": f"1 instance, -c {WORKER_CONCURRENCY} (prefork)",
            "cpu_ms_per_contact": round(cpu_ms, 2),
            "noop_cpu_ms_per_task": round(noop_ms, 2),
            "ratio": round(cpu_ms / noop_ms, 1) if noop_ms else None,
            "contacts_per_s": round(measured / busy_seconds, 1),
            "stage_cpu_ms_per_contact": stages,
            "stage_workers": f"1 per stage, -c {STAGE_CONCURRENCY} (prefork), {measured // 2} contacts",
            "rokt_event_posts": rokt["event_posts"],
            "duplicate_calendar_entries": rokt["duplicate_calendar_entries"],
        },
        "sfmc_batching": {
            "status_rows": status_rows,
            "rowset_calls": sfmc["rowset_calls"],
            "calls_per_10k_rows": round(sfmc["rowset_calls"] * 10_000 / status_rows, 1),
            "max_rows_per_call": sfmc["max_rows_per_rowset"],
            "release_calls_per_10k_contacts": round(sfmc["release_calls"] * 10_000 / total, 1),
            "unbatched_calls_per_10k_rows": 10_000,  # the baseline: one upsert per row (computed)
            "token_requests": {"sfmc": sfmc["token_requests"], "rokt": rokt["token_requests"]},
        },
        "memory": {
            "worker": f"largest of the main process and its {WORKER_CONCURRENCY} pool children",
            **rss,
            # the main process keeps nothing of a finished task, yet grows; so does the baseline's
            "main_process_mb_per_10k_tasks": round(consumer_growth * 10_000, 2),
            "noop_main_process_mb_per_10k_tasks": round(noop_growth * 10_000, 2),
        },
    }


# the stages as separate worker instances: (name, the shared queues it consumes; the bootstep adds
# each tenant's own render/rokt queue to the instance serving the shared one)
STAGES = (
    ("render", (queues.RENDER_QUEUE,)),
    ("create", (queues.ROKT_QUEUE,)),
    ("flush", tuple(q for q in queues.ALL_QUEUES if q not in (queues.RENDER_QUEUE, queues.ROKT_QUEUE))),
)
STAGE_CONCURRENCY = 4


def _stage_run(stack: Stack, count: int) -> dict[str, float]:
    """Worker CPU ms per contact of each stage (its own instance), and their total."""
    reset(stack)
    payloads = journey(stack, TENANT, count)
    workers = {
        name: stack.start_workers(1, STAGE_CONCURRENCY, queues=[*shared, *_tenant_queues(shared)])[0]
        for name, shared in STAGES
    }
    before = {name: cpu_seconds([w.pid]) for name, w in workers.items()}
    stack.enqueue(TENANT, payloads)
    stack.wait(
        lambda: delivered(stack, TENANT, count), 120 + count / 20, f"{count} contacts by stage", interval=0.2
    )
    figures = {
        name: round((cpu_seconds([w.pid]) - before[name]) * 1000 / count, 2) for name, w in workers.items()
    }
    stack.stop_workers()
    return {**figures, "total": round(sum(figures.values()), 2)}


def _tenant_queues(shared: tuple[str, ...]) -> list[str]:
    """The benchmark tenant's own queues of these stages (as the bootstep would add them)."""
    own = {queues.RENDER_QUEUE: queues.render_queue(TENANT), queues.ROKT_QUEUE: queues.rokt_queue(TENANT)}
    return [own[q] for q in shared if q in own]


def _tasks_received(stack: Stack) -> int:
    """Tasks the running workers received, counted from their logs (Celery logs each one)."""
    return sum(w.log_path.read_text(errors="replace").count("] received") for w in stack.workers)


def _noop_run(stack: Stack, count: int) -> tuple[float, float]:
    """Worker CPU seconds for `count` no-op tasks sent the way the pipeline sends its tasks, and
    the main process's growth in MiB per task after the first tenth."""
    stack.start_workers(1, WORKER_CONCURRENCY, app="bench.noop_app", queues=[NOOP_QUEUE])
    pids = stack.worker_pids()
    before = cpu_seconds(pids)
    producer = dispatch.producer()
    warm = count // 10
    main_after_warm = 0.0
    for start, end in ((0, warm), (warm, count)):
        for index in range(start, end):
            producer.send_task(NOOP_TASK, queue=NOOP_QUEUE, task_id=f"noop:{index}")
        stack.wait(
            lambda: stack.redis.llen(NOOP_QUEUE) == 0 and stack.redis.hlen("unacked") == 0,
            60 + count / 50,
            f"{end} no-op tasks",
            interval=0.2,
        )
        if start == 0:
            main_after_warm = rss_mb(pids[0])
    used = cpu_seconds(pids) - before
    growth = (rss_mb(pids[0]) - main_after_warm) / (count - warm)
    stack.stop_workers()
    return used, growth
