"""Rokt webhooks: receipt (dedupe on the envelope eventId) and processing by event type.

Rokt retries for 30 minutes and may deliver twice (docs/vendors/rokt-calendar-api.md §9.1): the receiver
stores each envelope once under its eventId, set-if-absent, and only the first delivery is
enqueued. The task then reads the stored envelope (the queue carries ids only).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from pipeline.delivery.retry_policy import retryable
from pipeline.infra import keys
from pipeline.journeys import executions
from pipeline.settings import Settings
from pipeline.stores import subscription_records
from pipeline.stores.deadletters import record_exception
from pipeline.stores.ledger import PENDING, now_iso
from pipeline.subscriptions.subscription_rows import attributes, process_subscription_event
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import HELD_STATES, JobKind, OutboxKind, Stage, State, states_leading_to
from schemas.rokt_webhook import (
    EVENT_ADDED,
    EVENT_DELETED,
    EVENT_REMOVED,
    EVENT_UPDATED,
    SUBSCRIPTION_TYPES,
    load_subscription,
)

log = logging.getLogger(__name__)


def receipt_ttl_seconds(settings: Settings) -> int:
    """How long an envelope waits in Redis to be processed: WEBHOOK_RECEIPT_DAYS (the reconciler
    re-drives it meanwhile)."""
    return int(float(settings.webhook_receipt_days) * 86400)


def dedupe_ttl_seconds(settings: Settings) -> int:
    """How long a processed webhook's marker stays in Redis: WEBHOOK_DEDUPE_MINUTES covers Rokt's
    30 minutes of retries (twice over) and a lost task's redelivery; a later re-send (Rokt's
    dashboard) is claimed again, and its task finds the receipt in the history store."""
    return int(settings.webhook_dedupe_minutes) * 60


class NotYetAccepted(Exception):
    """A confirmation overtook our own record of the 202: retry shortly."""


def claim_webhook(r: redis.Redis, tenant: str, envelope: dict[str, Any], ttl_seconds: int) -> bool:
    """True for the first delivery of this eventId (the caller enqueues it)."""
    stored = json.dumps(envelope, sort_keys=True)
    claimed = bool(r.set(keys.webhook_receipt(tenant, envelope["eventId"]), stored, nx=True, ex=ttl_seconds))
    pipe = r.pipeline()
    pipe.set(keys.last_webhook(tenant), time.time())
    pipe.hincrby(keys.webhook_counts(tenant), "received" if claimed else "duplicates", 1)
    if claimed:  # until processed, the reconciler can see it (its task may be lost with a worker)
        pipe.zadd(keys.webhooks_open(tenant), {envelope["eventId"]: time.time()})
        pipe.hincrby(keys.webhook_types(tenant), envelope["eventType"], 1)  # the exporter's
    try:
        pipe.execute()
    except redis.RedisError:
        # e.g. Redis full (MULTI refused whole): a receipt without its open entry would make Rokt's
        # retry a "duplicate" that is never processed; a delete is accepted even when full
        if claimed:
            r.delete(keys.webhook_receipt(tenant, envelope["eventId"]))
        raise
    return claimed


def release_webhook(r: redis.Redis, tenant: str, event_id: str) -> None:
    """Undo a claim whose enqueue failed, so Rokt's retry is accepted again."""
    r.delete(keys.webhook_receipt(tenant, event_id))
    r.zrem(keys.webhooks_open(tenant), event_id)
    r.hincrby(keys.webhook_counts(tenant), "released", 1)  # counters only grow (Prometheus)


def process_webhook(rt: Runtime, tenant: str, event_id: str) -> tuple[OutboxKind, ...]:
    """Apply one stored webhook; returns the outbox kinds it appended to (to schedule flushes).
    Once applied, its receipt goes to the history store and Redis keeps only what dedupe needs
    (no contact data) for WEBHOOK_DEDUPE_MINUTES."""
    kinds = _apply_webhook(rt, tenant, event_id)
    strip_receipt(rt.redis, tenant, event_id, "processed", dedupe_ttl_seconds(rt.settings))
    rt.redis.zrem(keys.webhooks_open(tenant), event_id)
    return kinds


def strip_receipt(r: redis.Redis, tenant: str, event_id: str, why: str, ttl_seconds: int = 0) -> bool:
    """Replace a stored envelope with a marker of its eventId and type (for `ttl_seconds`, else
    its TTL unchanged), so a redelivery is still refused as a duplicate; False when no receipt
    was stored."""
    key = keys.webhook_receipt(tenant, event_id)
    raw = r.get(key)
    if raw is None:
        return False
    try:
        event_type = json.loads(raw).get("eventType", "")
    except ValueError:
        event_type = ""
    marker = json.dumps({"eventId": event_id, "eventType": event_type, "stripped": why}, sort_keys=True)
    if ttl_seconds > 0:
        return bool(r.set(key, marker, xx=True, ex=ttl_seconds))
    return bool(r.set(key, marker, xx=True, keepttl=True))


def _record_receipt(rt: Runtime, tenant: str, event_id: str, event_type: str) -> OutboxKind:
    """The receipt into the history store's outbox (no contact data: the eventId and its type)."""
    receipt = {"webhook": event_id, "eventType": event_type, "at": now_iso()}
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).append(receipt)
    return OutboxKind.SUBSCRIPTION_HISTORY


def _apply_webhook(rt: Runtime, tenant: str, event_id: str) -> tuple[OutboxKind, ...]:
    raw = rt.redis.get(keys.webhook_receipt(tenant, event_id))
    if raw is None:
        log.warning("webhook %s of tenant %s no longer stored (expired?)", event_id, tenant)
        return ()
    envelope = json.loads(raw)
    if envelope.get("stripped"):  # applied before (a redelivered task), or erased by `forget`
        log.info("webhook %s of tenant %s already %s", event_id, tenant, envelope["stripped"])
        return ()
    kind, details = envelope["eventType"], envelope["eventDetails"]
    if _seen_before(rt, tenant, event_id):  # re-sent after the dedupe window
        log.info("webhook %s of tenant %s processed before (history store)", event_id, tenant)
        rt.redis.hincrby(keys.webhook_counts(tenant), "duplicates", 1)
        return ()
    if kind in SUBSCRIPTION_TYPES:
        attrs = attributes(event_id, details, load_subscription(details))
        process_subscription_event(rt, tenant, event_id, kind, attrs)
        kinds: tuple[OutboxKind, ...] = (OutboxKind.SUBSCRIPTION_ROWS, OutboxKind.SUBSCRIPTION_HISTORY)
    elif kind in EVENT_MOVES:
        target, allowed_from, error = EVENT_MOVES[kind]
        rokt_event_id = details["subscriptionEvent"]["eventId"]
        reason = {"error": error} if error else {}
        moved = update_execution(
            rt, tenant, rokt_event_id, target, allowed_from, unless_pending=ECHO_OF.get(kind, ""), **reason
        )
        # a move may release the contact too (releaseOn=confirmed): flush that soon, not at beat's pass
        kinds = (OutboxKind.STATUS_ROWS, OutboxKind.RELEASES) if moved else ()
    else:
        log.info("webhook %s (%s) needs no action", event_id, kind)
        kinds = ()
    return tuple(dict.fromkeys((*kinds, _record_receipt(rt, tenant, event_id, kind))))


def _seen_before(rt: Runtime, tenant: str, event_id: str) -> bool:
    """Whether the store has this webhook's receipt. A store that is away answers False: Redis's
    marker covers Rokt's retries (the store catches only re-sends hours later), and a
    confirmation must not wait for the store (its execution is in Redis); a subscription event
    that needs the store's record waits for it in its merge instead."""
    try:
        return subscription_records.receipt_seen(rt.history, tenant, event_id)
    except SQLAlchemyError as exc:
        if not retryable(exc):
            raise
        log.warning("webhook %s of tenant %s: receipts unreadable (%s)", event_id, tenant, type(exc).__name__)
        return False


# What each of Rokt's event webhooks does to the execution that sent the event: the state it
# moves to, from which (None: every state the table allows), and the reason its status row shows.
# A change we made ourselves (an event job) is the job's to move (ECHO_OF below): before its
# move, the webhook moves nothing; after it, the execution is in a state the webhook cannot move.
EVENT_MOVES: dict[str, tuple[State, tuple[State, ...] | None, str]] = {
    EVENT_ADDED: (State.CONFIRMED, None, ""),
    EVENT_UPDATED: (State.UPDATED, (State.ACCEPTED, State.CONFIRMED), ""),
    EVENT_REMOVED: (State.REMOVED, None, "removed from the calendar by the subscriber"),
    # from a held state only: a queued execution (Rokt's webhook before our record of its 202)
    # waits, as a confirmation does, instead of ending cancelled unsent
    EVENT_DELETED: (State.CANCELLED, tuple(sorted(HELD_STATES)), "deleted at Rokt (every calendar)"),
}

# The event job whose own change at Rokt each webhook reports back (its echo). While such a job
# is changing the execution (ledger.PENDING_FIELD, set before its Rokt call), the webhook moves
# nothing: the job's move is the one that counts, with the job's meaning (`withdrawn`, not
# `removed` by the subscriber; one `updated` per correction; the cancel's own reason). A
# subscriber's removal landing in that window is taken for the withdrawal's echo: the job removes
# the event from each of the contact's subscriptions anyway, and it ends `withdrawn`.
ECHO_OF: dict[str, JobKind] = {
    EVENT_UPDATED: JobKind.CORRECT,
    EVENT_REMOVED: JobKind.WITHDRAW,
    EVENT_DELETED: JobKind.CANCEL,
}


def update_execution(
    rt: Runtime,
    tenant: str,
    rokt_event_id: str,
    target: State,
    allowed_from: tuple[State, ...] | None = None,
    *,
    unless_pending: str = "",
    **values: str,
) -> bool:
    """Move the execution that sent `rokt_event_id` to `target` (from `allowed_from`, else every
    state that may lead there); False when not ours or done, or (`unless_pending`, a job kind)
    when such a job is changing it at Rokt (the job moves it).

    The status row follows every move; the contact is released here only if it was not
    released before (releaseOn=confirmed, still waiting): emit_outcome releases once."""
    execution = rt.ledger.execution_for_event(tenant, rokt_event_id)
    if execution is None:  # finished, and now only in the history store (or not ours)
        execution = rt.history.execution_for_event(tenant, rokt_event_id)
        if execution is None:
            return False  # an event another system sent to this calendar
    allowed = allowed_from or states_leading_to(target)
    moved, previous = executions.move_whole(
        rt, tenant, execution, target, allowed, unless_pending=unless_pending, **values
    )
    if not previous:
        return False  # past its retention
    if not moved:
        if previous == State.QUEUED:
            raise NotYetAccepted(execution)
        if previous == PENDING:
            log.info(
                "execution %s of %s: the echo of our own %s; the job moves it",
                execution,
                tenant,
                unless_pending,
            )
        return False
    ex = rt.ledger.get(tenant, execution)
    if ex is not None:
        executions.emit_outcome(rt, ex)
    return True


def give_up(rt: Runtime, tenant: str, event_id: str, exc: BaseException, attempts: int) -> None:
    """Retries exhausted or a permanent error: keep the webhook in the dead-letter store; its
    stored envelope stays, so a replay re-enqueues it by eventId."""
    record_exception(
        rt.redis, tenant, f"webhook:{event_id}", Stage.WEBHOOK, exc, {"eventId": event_id}, attempts
    )


def still_waiting(rt: Runtime, tenant: str, event_id: str) -> None:
    """A webhook whose task retries on its own (every minute while SFMC refuses the credentials)
    is marked fresh in the open set, so the reconciler does not start a second loop for it."""
    rt.redis.zadd(keys.webhooks_open(tenant), {event_id: time.time()}, xx=True)
