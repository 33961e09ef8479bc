"""`history`: Redis and history-store bytes per finished contact, and the store's worker CPU.

The Redis and store figures join `memory` (beside the worker's RSS), the CPU is `history_cpu`.
A stack of its own, deployed as compose runs it (gunicorn, worker-render and worker-rokt, the
SQLite store) with Rokt's webhooks pointed at it, so executions go the whole way: accepted,
confirmed by Rokt's `SubscriptionEventAdded`, archived to the store, a tombstone left in Redis.
Contacts arrive at a steady RATE a second, as Journey Builder sends a journey, not all at once,
so Redis's `used_memory` is sampled at a steady state (and `queued_max` says whether the
pipeline kept pace). Tombstones live
`TOMBSTONE_SECONDS` here instead of the hour of production (EXECUTION_TOMBSTONE_SECONDS), so the
plateau (rate x window of tombstones) is reached inside the run: the run's first half is the
10,000-contact run, the whole run the one twice as long; flat means the second half's readings
equal the first half's once a window has passed.

The CPU figure: a second batch of contacts confirmed with no worker on the `sfmc` queue, so their
history outbox waits; then `flush_history` (the store's batched upsert and the archive script)
drains it in this process, timed with `time.process_time`: the same code a worker runs, without
Celery's per-task share (one task per 500 executions). The ledger's extra XADD runs inside the
transition script that moves the execution anyway: no worker call of its own, Redis CPU only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil

from bench.harness import REPO_ROOT, UNLIMITED, WORKER_CONCURRENCY, journey
from pipeline.delivery.flush import flush_history
from pipeline.infra import keys, queues
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.stores import subscription_records
from pipeline.vocabulary import OutboxKind

TENANT = "mem"
# contacts/s: what this shared 2-core VM keeps pace with while every process of the stack runs on
# it (at Rokt's default 50/s the queue grew: the plateau would have been the backlog's); Redis per
# contact does not depend on the rate, the tombstones held do (rate x window)
RATE = 20
SAMPLE_SECONDS = 2.0


WEBHOOK_DEDUPE_MINUTES = 1  # minutes a processed webhook's markers stay in Redis, in this run


def phases(quick: bool) -> dict[str, int]:
    """Contacts of the run (its first half is the shorter run), subscribers among them, the
    contacts of the CPU batch, the tombstone window and, in the CPU batch, how long Rokt takes
    to confirm (seconds: longer than accepting them all takes)."""
    if quick:
        return {
            "contacts": 1_000,
            "subscribers": 200,
            "cpu_contacts": 500,
            "tombstone_s": 10,
            "land_delay_s": 20,
        }
    return {
        "contacts": 20_000,
        "subscribers": 2_000,
        "cpu_contacts": 2_000,
        "tombstone_s": 60,
        "land_delay_s": 120,
    }


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    sizes = phases(quick)
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "EXECUTION_TOMBSTONE_SECONDS": str(sizes["tombstone_s"]),
        # a webhook's dedupe markers, 120 minutes in production: their plateau inside the run too
        "WEBHOOK_DEDUPE_MINUTES": str(WEBHOOK_DEDUPE_MINUTES),
    }
    tenants = {TENANT: {"rokt_rate_limit": UNLIMITED, "sfmc_rate_limit": UNLIMITED}}
    run_dir = stack.run_dir / "history"
    run_dir.mkdir(exist_ok=True)
    with Stack(run_dir, tenants, web="gunicorn", env=env, worker_name="hist") as own:
        own.webhooks_to(TENANT)
        own.start_split_workers(render=1, rokt=1, render_concurrency=WORKER_CONCURRENCY)
        memory = _memory_run(own, sizes)
        own.stop_workers()
        cpu = _cpu_run(own, sizes["cpu_contacts"], sizes["land_delay_s"])
        own.stop_workers()
    return {"memory": memory, "history_cpu": cpu}


# --- memory: Redis by kind of key, the store, used_memory over the run -------------------------

# each kind's keys as SCAN patterns, built by the keys module ("*" for the id part)
KINDS: dict[str, tuple[str, ...]] = {
    # what each finished contact leaves: its record (a tombstone once archived), its eventId
    # index and its contact index (both gone once archived)
    "execution": (
        keys.execution(TENANT, "*"),
        keys.event(TENANT, "*"),
        keys.contact_executions(TENANT, "*"),
    ),
    # the render index's bucket field (the working copy leaves once the store holds it; the
    # plain-keyed index is an older version's)
    "subscriber": (
        keys.contact_subscriptions(TENANT, "*"),
        keys.subscription(TENANT, "*"),
        keys.legacy_contact_subscriptions(TENANT, "*"),
    ),
    "webhook": (keys.webhook_receipt(TENANT, "*"), keys.webhook_applied(TENANT, "*")),
}


def _memory_run(stack: Stack, sizes: dict[str, int]) -> dict[str, Any]:
    total, subscribers = sizes["contacts"], sizes["subscribers"]
    contacts = [
        jbsim.Contact(f"{TENANT}-{i:07d}", "Ava", f"{TENANT}{i}@example.com", "Sydney", True)
        for i in range(total)
    ]
    account = stack.tenant(TENANT).rokt_account_code
    jbsim.subscribe_contacts(stack.rokt_url, account, contacts[:subscribers])  # a Subscribe webhook each
    def subscribed() -> bool:
        return subscription_records.count(stack.runtime.history, TENANT).get("live", 0) >= subscribers

    stack.wait(subscribed, 120 + subscribers / 20, "subscriptions in the store")
    payloads = stack.prepare(TENANT, contacts, "bench-history", jbsim.RELEASE_EVENT_KEY)
    redis_server = psutil.Process(stack.redis_process.pid)
    baseline_mb = _used_mb(stack)
    whole: list[int] = []
    with Sampler(stack) as sampler:
        started = time.monotonic()
        half_mb = 0.0
        for second, start in enumerate(range(0, total, RATE)):
            # RATE a second, steadily, as Journey Builder sends a journey
            time.sleep(max(0.0, started + second - time.monotonic()))
            stack.enqueue(TENANT, payloads[start : start + RATE])
            if start + RATE == total // 2:
                half_mb = _used_mb(stack)
            if second % 20 == 10 and len(whole) < 400:
                whole.extend(_whole_record_bytes(stack))
        fed_seconds = time.monotonic() - started
        stack.wait(lambda: _settled(stack), 300, "every execution confirmed and archived", interval=0.5)
        end_mb = _used_mb(stack)
    redis_cpu = sum(redis_server.cpu_times()[:2])
    by_kind = {kind: _bytes(stack, patterns) for kind, patterns in KINDS.items()}
    store = stack.runtime.history
    rows = sum(store.counts(TENANT).values())
    store_bytes = store.size_bytes() or 0
    webhooks = int(stack.redis.hget(keys.webhook_counts(TENANT), "received") or 0)
    samples = sampler.samples
    return {
        "redis": f"contacts arriving at a steady rate, tombstones kept {sizes['tombstone_s']} s "
        f"(production: 3600), webhook dedupe markers {WEBHOOK_DEDUPE_MINUTES} min (production: 120), "
        "webhooks and subscriptions as Rokt sends them",
        "contacts": total,
        "contacts_per_s": RATE,
        "redis_bytes_per_terminal_contact": per_unit(*by_kind["execution"]),
        "redis_bytes_per_whole_execution": round(sum(whole) / len(whole)) if whole else None,
        "redis_bytes_per_subscriber": per_unit(by_kind["subscriber"][0], subscribers),
        "redis_bytes_per_webhook": per_unit(by_kind["webhook"][0], webhooks),
        "store": store.engine.dialect.name,
        "store_rows": rows,
        "store_bytes_per_contact": per_unit(store_bytes, rows),
        "redis_used_mb": {
            "before": baseline_mb,
            f"at_{total // 2}": half_mb,
            f"at_{total}": _last(samples, fed_seconds),
            "settled": end_mb,
            **plateau(samples, fed_seconds, sizes["tombstone_s"]),
        },
        "queued_max": sampler.queued_max,
        "redis_bytes_per_contact_by_key": {
            name: round(size / total, 1) for name, size in _by_key_group(stack).items() if size >= total
        },
        "redis_cpu_s_whole_stack": round(redis_cpu, 1),  # since it started: subscribing, the run, the broker
    }


def per_unit(total_bytes: int, count: int) -> int | None:
    """Bytes per unit, rounded; None when nothing was counted (nothing to divide by)."""
    return round(total_bytes / count) if count else None


def plateau(
    samples: list[tuple[float, float]], fed_seconds: float, window: float, rate: float = RATE
) -> dict[str, float]:
    """used_memory's plateau in each half of the feed, from the end of the first tombstone window
    (plus a margin for the pipeline's own lag) on: the mean and range of each half's readings.
    Flat: the second half's mean equals the first's, within its range; what still grows (webhook
    receipts, kept 7 days) shows as the growth in bytes per contact fed between the halves."""
    settle = window * 1.5
    halves = {
        "first_half": [(t, mb) for t, mb in samples if settle <= t < fed_seconds / 2],
        "second_half": [(t, mb) for t, mb in samples if fed_seconds / 2 <= t <= fed_seconds],
    }
    figures: dict[str, float] = {}
    means: list[tuple[float, float]] = []  # (mean time, mean MiB) of each half
    for name, readings in halves.items():
        if not readings:
            continue
        mbs = [mb for _, mb in readings]
        figures[f"{name}_mean"] = round(sum(mbs) / len(mbs), 2)
        figures[f"{name}_range"] = round(max(mbs) - min(mbs), 2)
        means.append((sum(t for t, _ in readings) / len(readings), sum(mbs) / len(mbs)))
    if len(means) == 2 and means[1][0] > means[0][0]:
        fed = rate * (means[1][0] - means[0][0])
        figures["growth_bytes_per_contact"] = round((means[1][1] - means[0][1]) * 2**20 / fed)
    return figures


def _last(samples: list[tuple[float, float]], until: float) -> float:
    """The last reading taken while contacts were still arriving."""
    during = [mb for t, mb in samples if t <= until]
    return during[-1] if during else 0.0


class Sampler:
    """Redis's used_memory (MiB) every SAMPLE_SECONDS, as (seconds since start, MiB)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.samples: list[tuple[float, float]] = []
        self.queued_max = 0  # executions claimed and not yet through Rokt: the pipeline's lag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="used-memory")
        self._started = 0.0

    def __enter__(self) -> Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.samples.append((time.monotonic() - self._started, _used_mb(self.stack)))
            self.queued_max = max(self.queued_max, self.stack.runtime.ledger.open_count(TENANT))


def _used_mb(stack: Stack) -> float:
    return round(int(stack.redis.info("memory")["used_memory"]) / 2**20, 2)


def _bytes(stack: Stack, patterns: Iterable[str]) -> tuple[int, int]:
    """(bytes of every key matching the patterns, keys matching the first one): MEMORY USAGE, key
    names and Redis's per-key overhead included."""
    total, first = 0, 0
    for index, pattern in enumerate(patterns):
        names = list(stack.redis.scan_iter(pattern, count=1000))
        if index == 0:
            first = len(names)
        total += _memory_usage(stack, names)
    return total, first


def _by_key_group(stack: Stack) -> dict[str, int]:
    """Bytes of every key in Redis by its group (`rsf:<tenant>:<part>`, `rsf:_<area>`, or the
    broker's own name up to its first dot or colon), largest first: what is not execution,
    subscriber or webhook, and so whatever else grows."""
    groups: dict[str, int] = {}
    names = list(stack.redis.scan_iter(count=1000))
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        pipe = stack.redis.pipeline(transaction=False)
        for name in chunk:
            pipe.memory_usage(name, samples=0)
        for name, size in zip(chunk, pipe.execute(), strict=True):
            groups[key_group(name)] = groups.get(key_group(name), 0) + int(size or 0)
    return dict(sorted(groups.items(), key=lambda item: -item[1]))


def key_group(name: str) -> str:
    """`rsf:mem:exec:abc` -> `exec`; `rsf:_ops:x` -> `_ops`; `unacked` -> `unacked`."""
    parts = name.split(":")
    if parts[0] == keys.PREFIX and len(parts) > 2:
        return parts[1] if parts[1].startswith("_") else parts[2]
    return parts[0].split(".")[0]


def _memory_usage(stack: Stack, names: list[str]) -> int:
    total = 0
    for start in range(0, len(names), 500):
        pipe = stack.redis.pipeline(transaction=False)
        for name in names[start : start + 500]:
            pipe.memory_usage(name, samples=0)
        total += sum(int(size or 0) for size in pipe.execute())
    return total


def _whole_record_bytes(stack: Stack) -> list[int]:
    """What an execution costs while it is whole (accepted, waiting for Rokt's confirmation): its
    record, eventId index and contact index; what every finished one cost before the store."""
    sizes = []
    for member in stack.redis.zrange(keys.awaiting(TENANT), 0, 49):
        record = stack.redis.hgetall(member)
        if not record or record.get("archived") == "1":
            continue
        event = keys.event(TENANT, record.get("eventId", ""))
        names = [member, event, stack.runtime.ledger.contact_index(TENANT, record.get("contactKey", ""))]
        sizes.append(_memory_usage(stack, names))
    return sizes


def _settled(stack: Stack) -> bool:
    """Nothing queued or awaiting confirmation, and the history outbox drained."""
    ledger = stack.runtime.ledger
    return (
        not ledger.open_count(TENANT)
        and not stack.redis.zcard(keys.awaiting(TENANT))
        and not stack.runtime.outbox(TENANT, OutboxKind.HISTORY).backlog()
    )


# --- CPU: flush_history's work per contact -----------------------------------------------------


def _cpu_run(stack: Stack, count: int, land_delay_s: int) -> dict[str, Any]:
    """`count` contacts with no worker on the `sfmc` queue (their history entries wait), Rokt's
    calendar entries landing (and confirmed) `land_delay_s` after creation; the history outbox
    drained here twice: once all are accepted (each row written, none archived: each waits for
    its confirmation), once all are confirmed (written again, then archived). A contact Rokt
    confirms before the first drain is written once: the worst case is every contact twice."""
    payloads = journey(stack, TENANT, count)
    stack.faults("rokt", land_delay_ms=land_delay_s * 1000)
    held = [q for q in queues.ALL_QUEUES if q not in (queues.SFMC_QUEUE, *queues.ROKT_WORKER_QUEUES)]
    stack.start_workers(1, WORKER_CONCURRENCY, queues=held)
    stack.start_workers(1, 64, queues=queues.ROKT_WORKER_QUEUES, pool="threads")
    stack.runtime.history.counts(TENANT)  # the engine connected and migrated before the clock starts
    stack.enqueue(TENANT, payloads)
    ledger = stack.runtime.ledger
    stack.wait(lambda: not ledger.open_count(TENANT), 120 + count / 20, f"{count} accepted", interval=0.5)
    awaiting = int(stack.redis.zcard(keys.awaiting(TENANT)))
    accepted = _timed_flush(stack)
    stack.wait(
        lambda: not stack.redis.zcard(keys.awaiting(TENANT)), 120 + land_delay_s, "confirmed", interval=0.5
    )
    stack.stop_workers()
    confirmed = _timed_flush(stack)
    figures = {
        "contacts": count,
        "store": stack.runtime.history.engine.dialect.name,
        "written_twice": awaiting,  # accepted, then confirmed: in the first drain and the second
        "accepted_write_cpu_ms": round(accepted[0] * 1000 / count, 3),
        "confirmed_write_archive_cpu_ms": round(confirmed[0] * 1000 / count, 3),
        "redis_cpu_ms": round((accepted[1] + confirmed[1]) * 1000 / count, 3),
    }
    figures["flush_history_cpu_ms_per_contact"] = round(
        figures["accepted_write_cpu_ms"] + figures["confirmed_write_archive_cpu_ms"], 3
    )
    figures["goal_ms_per_contact"] = 0.5
    return figures


def _timed_flush(stack: Stack) -> tuple[float, float]:
    """Drain the history outbox in this process: (its CPU seconds, redis-server's)."""
    box = stack.runtime.outbox(TENANT, OutboxKind.HISTORY)
    redis_server = psutil.Process(stack.redis_process.pid)
    redis_before, before = sum(redis_server.cpu_times()[:2]), time.process_time()
    while box.backlog():
        flush_history(stack.runtime, TENANT, consumer="bench", max_wait=0)
    return time.process_time() - before, sum(redis_server.cpu_times()[:2]) - redis_before
