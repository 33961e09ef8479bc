"""Every figure an operator watches, read from Redis in one pass: `rokt-sfmc status` shows it,
the Prometheus exporter (`pipeline.ops.exporter`) exports it.

Nothing here is counted in the process that reads it: the figures are the ones every web and
worker process keeps in Redis (queues, the ledger's counts, dead letters, the clients' call
counters, heartbeats), so any process reads the same numbers. Reads are bounded: the
unacknowledged-message hash and each dead-letter store are scanned up to a limit (what is past
it is counted, not classified); nothing scans the keyspace.

Age of the oldest queued message: every task message carries the time it was published (a
header `pipeline.infra.dispatch` stamps on each publish, retries included); the age is read from the
message at the tail of the list. A snapshot only reads: it works when a full Redis refuses writes.

On a RabbitMQ broker (BROKER_URL=amqp://...) a queue's `waiting` is its ready count, from a
passive declare (`pipeline.infra.broker.ready_counts`); `unacked` and `oldestAgeSeconds` are None
there (not available: RabbitMQ tells the unacknowledged count only through its management API,
and the oldest message's age to no one without consuming it). `broker.reachable` says whether
the broker answered; when it did not, every queue figure is None.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from pipeline.clients.http import STATUS_CLASSES
from pipeline.clients.tokens import rejection_of
from pipeline.infra import broker, keys
from pipeline.infra.queues import SENT_AT_HEADER, SHARED_QUEUES, render_queue, rokt_queue
from pipeline.journeys import event_jobs, intake
from pipeline.ops import heartbeats
from pipeline.settings import Tenant, is_amqp
from pipeline.stores import performance
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind, State

log = logging.getLogger(__name__)

VENDORS = ("rokt", "sfmc")
# kombu's Redis transport: one list per queue and priority step, `queue` itself for priority 0
# (kombu.transport.redis.Channel.sep / PRIORITY_STEPS), LPUSH in, RPOP out: the oldest is last
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
# messages delivered to a worker and not yet acknowledged (ETA/countdown retries wait here):
# hash delivery tag -> JSON [message, exchange, routing key]
UNACKED_KEY = "unacked"
MAX_UNACKED_SCANNED = 50_000
MAX_DEAD_LETTERS_SCANNED = 20_000
UNSCANNED = "(unscanned)"  # stage and error class of dead letters past the scan limit


def snapshot(rt: Runtime, tenants: list[str] | None = None) -> dict[str, Any]:
    """The figures of `tenants` (default: every tenant of the registry) and of the service."""
    r = rt.redis
    registry = rt.registry.all()
    names = sorted(registry) if tenants is None else list(tenants)
    tenant_queues = {name: (render_queue(name), rokt_queue(name)) for name in names}
    queue_names = [*SHARED_QUEUES, *(q for qs in tenant_queues.values() for q in qs)]
    broker_url = rt.settings.broker
    if is_amqp(broker_url):
        queues, reachable = amqp_queue_figures(broker_url, queue_names)
        broker_figures = {"kind": "rabbitmq", "reachable": reachable}
    else:
        queues = queue_figures(r, queue_names, unacked_by_queue(r))
        broker_figures = {"kind": "redis", "reachable": True}
    beat = heartbeats.seen(r, "beat").get("beat")
    return {
        "redis": redis_memory(r),
        "generatedAt": round(time.time(), 3),
        "tenants": {
            name: {
                **tenant_figures(rt, name, registry.get(name)),
                "queues": {q: queues[q] for q in tenant_queues[name]},
            }
            for name in names
        },
        "sharedQueues": {q: queues[q] for q in SHARED_QUEUES},
        "workers": {name: round(age, 3) for name, age in sorted(heartbeats.seen(r, "worker").items())},
        "beat": {"lastTickAgeSeconds": None if beat is None else round(beat, 3)},
        "broker": broker_figures,
    }


def redis_memory(r: redis.Redis) -> dict[str, int] | None:
    """Redis' used memory and its `maxmemory` (0: no limit). At `maxmemory` (noeviction) Redis
    refuses writes: execute answers 503, workers pause (docs/operations.md, "Redis full").
    None where INFO is not offered (a managed Redis that renames it; fakeredis)."""
    try:
        info = r.info("memory")
    except redis.ResponseError:
        return None
    return {"usedBytes": int(info.get("used_memory", 0)), "maxBytes": int(info.get("maxmemory", 0))}


def tenant_figures(rt: Runtime, name: str, tenant: Tenant | None) -> dict[str, Any]:
    """One tenant's figures but its queues: one pipelined read, then its outboxes and dead letters."""
    r = rt.redis
    pipe = r.pipeline(transaction=False)
    for vendor in VENDORS:
        pipe.pttl(keys.cooldown(name, vendor))
    for vendor in VENDORS:  # pipeline/stores/ratelimit.py counts them
        pipe.get(keys.ratelimit_deferred(name, vendor))
        pipe.get(keys.ratelimit_late(name, vendor))
    pipe.hgetall(keys.counts(name))
    pipe.hgetall(keys.webhook_counts(name))
    pipe.hgetall(keys.webhook_types(name))
    pipe.hgetall(keys.calls(name))
    pipe.hgetall(keys.auth_failures(name))  # pipeline/web/auth_failures.py writes it
    pipe.get(keys.credentials_rejected(name, "sfmc"))  # pipeline/clients/tokens.py, Refusals
    pipe.hgetall(keys.event_job_totals(name))  # pipeline/journeys/event_jobs.py counts them
    today = rt.reporting_days.today(name)  # the tenant's day (pipeline/stores/performance.py)
    pipe.hgetall(keys.performance_day(name, today))
    for kind in OutboxKind:
        pipe.exists(keys.outbox(name, kind))
    replies = pipe.execute()
    cooldowns, replies = replies[: len(VENDORS)], replies[len(VENDORS) :]
    limiter_counts, replies = replies[: 2 * len(VENDORS)], replies[2 * len(VENDORS) :]
    counts, webhook_counts, webhook_types, calls, auth_failures, refused, job_totals, day, *outbox_exists = (
        replies
    )
    running = event_jobs.list_jobs(r, name, limit=100, running_only=True)
    rejected = rejection_of(refused)
    return {
        "status": str(tenant.status) if tenant is not None else "unknown",
        "outbox": {
            str(kind): _outbox(rt, name, kind) if exists else {"waiting": 0, "oldestAgeSeconds": 0.0}
            for kind, exists in zip(OutboxKind, outbox_exists, strict=True)
        },
        # executions claimed and not yet published to the broker (pipeline/journeys/intake.py)
        "intake": {
            **intake.backlog(r, name),
            "oldestAgeSeconds": round(intake.oldest_age_seconds(r, name), 3),
        },
        "deadLetters": dead_letters(r, name),
        "limiter": {
            vendor: {
                "paused": int(ms) > 0,
                "remainingSeconds": round(max(0, int(ms)) / 1000, 3),
                "deferred": int(deferred or 0),
                "lateWakes": int(late or 0),
            }
            for vendor, ms, deferred, late in zip(
                VENDORS, cooldowns, limiter_counts[::2], limiter_counts[1::2], strict=True
            )
        },
        "executes": executes(counts),
        "webhooks": {
            "received": int(webhook_counts.get("received", 0)),
            "duplicates": int(webhook_counts.get("duplicates", 0)),
            "released": int(webhook_counts.get("released", 0)),
        },
        "webhookTypes": {kind: int(n) for kind, n in sorted(webhook_types.items())},
        "calls": {
            vendor: {klass: int(calls.get(f"{vendor}:{klass}", 0)) for klass in STATUS_CLASSES}
            for vendor in VENDORS
        },
        "tokenFetches": {vendor: int(calls.get(f"{vendor}:token", 0)) for vendor in VENDORS},
        # SFMC refuses the tenant's credentials (client secret, refresh token): its writes wait
        "reconnectNeeded": rejected is not None,
        "sfmcCredentialsRejected": rejected["reason"] if rejected else "",
        # failed execute/webhook authentications, and those answered 429 (`<route>:limited`)
        "authFailures": {field: int(n) for field, n in sorted(auth_failures.items())},
        # corrections, cancels and withdrawals of sent events (pipeline/journeys/event_jobs.py)
        "eventJobs": {
            "running": len(running),
            "toDo": sum(job.as_dict()["toDo"] for job in running),
            "outcomes": {field: int(n) for field, n in sorted(job_totals.items())},
        },
        # today's figures in the tenant's reporting time zone, the whole tenant's (the day's
        # per-activity figures are in the performance data extension and `rokt-sfmc report`)
        "performanceToday": {
            "day": today,
            "figures": performance.figures_of(today, day, performance.ALL).figures,
        },
    }


def _outbox(rt: Runtime, name: str, kind: OutboxKind) -> dict[str, Any]:
    waiting, oldest = rt.outbox(name, kind).waiting()
    return {"waiting": waiting, "oldestAgeSeconds": round(oldest, 3)}


def executes(counts: dict[str, str]) -> dict[str, int]:
    """Executions by state from the ledger's per-tenant counts, plus `received` (claims ever) and
    `replayed` (failed ones re-queued); each only grows. The ledger counts each execution in the
    state it is in, but never counts `queued`: that is what the claims have not left."""
    values = {state: int(counts.get(state, 0)) for state in State if state != State.QUEUED}
    received = int(counts.get("received", 0))
    return {
        State.QUEUED.value: max(0, received - sum(values.values())),
        **{str(state): n for state, n in values.items()},
        "received": received,
        "replayed": int(counts.get("replayed", 0)),
    }


def dead_letters(r: redis.Redis, tenant: str) -> dict[str, dict[str, int]]:
    """Dead letters by stage and error class (records past MAX_DEAD_LETTERS_SCANNED: UNSCANNED)."""
    key = keys.dead_letters(tenant)
    total = int(r.hlen(key))
    found: dict[str, dict[str, int]] = {}
    scanned = 0
    if total:
        for _item, raw in r.hscan_iter(key, count=1000):
            try:
                record = json.loads(raw)
                stage, klass = str(record.get("stage", "")), str(record.get("errorClass", ""))
            except (ValueError, AttributeError):
                stage, klass = UNSCANNED, UNSCANNED
            by_class = found.setdefault(stage, {})
            by_class[klass] = by_class.get(klass, 0) + 1
            scanned += 1
            if scanned >= MAX_DEAD_LETTERS_SCANNED:
                break
    if total > scanned:
        found.setdefault(UNSCANNED, {})[UNSCANNED] = total - scanned
    return found


def unacked_by_queue(r: redis.Redis) -> dict[str, int]:
    """Messages held by workers unacknowledged (kombu's `unacked` hash), by queue (the routing
    key they were published with is the queue's name); at most MAX_UNACKED_SCANNED read."""
    counts: dict[str, int] = {}
    for scanned, (_tag, raw) in enumerate(r.hscan_iter(UNACKED_KEY, count=1000), start=1):
        try:
            queue = str(json.loads(raw)[2])
        except (ValueError, IndexError, TypeError):
            queue = ""
        counts[queue] = counts.get(queue, 0) + 1
        if scanned >= MAX_UNACKED_SCANNED:
            break
    return counts


def _sent_at(raw: str | None) -> float | None:
    """When a waiting message was published (the header `pipeline.infra.dispatch` stamps on every
    task message); None for an empty queue or a message without it."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"].get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def queue_figures(r: redis.Redis, queues: list[str], unacked: dict[str, int]) -> dict[str, dict[str, Any]]:
    """waiting, unacked and oldestAgeSeconds of each queue: one pipelined round trip for all,
    reads only (a full Redis refuses writes, and that is when these figures matter)."""
    queues = list(dict.fromkeys(queues))
    pipe = r.pipeline(transaction=False)
    for queue in queues:
        for step in PRIORITY_STEPS:
            pipe.llen(queue if not step else f"{queue}{PRIORITY_SEPARATOR}{step}")
        pipe.lindex(queue, -1)  # the oldest: kombu pushes on the left and pops on the right
    replies = pipe.execute()
    now = time.time()
    width = len(PRIORITY_STEPS) + 1
    figures: dict[str, dict[str, Any]] = {}
    for i, queue in enumerate(queues):
        row = replies[i * width : (i + 1) * width]
        sent_at = _sent_at(row[-1])
        figures[queue] = {
            "waiting": sum(int(n) for n in row[: len(PRIORITY_STEPS)]),
            "unacked": unacked.get(queue, 0),
            "oldestAgeSeconds": round(max(0.0, now - sent_at), 3) if sent_at is not None else 0.0,
        }
    return figures


def amqp_queue_figures(url: str, queues: list[str]) -> tuple[dict[str, dict[str, Any]], bool]:
    """The queue figures on RabbitMQ: `waiting` = messages ready (0 for a queue not declared
    yet), `unacked` and `oldestAgeSeconds` None (not available); and whether RabbitMQ answered
    (when not, every figure is None)."""
    try:
        ready = broker.ready_counts(url, queues)
    except Exception as exc:  # kombu/amqp/socket errors: the broker is away, the rest still reads
        log.warning("status: RabbitMQ unreachable: %s", exc)
        return {q: {"waiting": None, "unacked": None, "oldestAgeSeconds": None} for q in queues}, False
    return {
        q: {"waiting": ready.get(q) or 0, "unacked": None, "oldestAgeSeconds": None} for q in queues
    }, True
