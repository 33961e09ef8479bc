"""Stuck executions and webhooks re-driven, unconfirmed events checked.

Run by beat every 30 s (one leader via RedBeat) or by hand (`rokt-sfmc reconcile`). Each run is
bounded and idempotent; the next one continues.

- Executions still `queued` long after they were received (their task was lost with a
  whole worker, or Redis lost it) are re-driven: the chain is idempotent.
- Webhooks stored but not processed (their task was lost) are enqueued again; applying one
  twice has no second effect.
- Executions `accepted` without Rokt's confirmation are checked against Rokt
  (`GET /v1/subscription/{id}`, `eventsVisibleToSubscription`): confirmed, or sent again
  with the same `eventId`; after a final deadline they end `failed`.
- Executions accepted with `releaseOn=confirmed` whose `releaseAfterSeconds` passed without
  Rokt's confirmation release their contact with the outcome so far (once: a later
  confirmation does not release again).
- Retryable dead letters are replayed once, automatically, after a cool-down.
- Retention (pipeline.upkeep.privacy): dead letters, replayed dead letters and erasure records older
  than their settings allow are removed, a bounded batch per run.
- Upgrade in place (pipeline.upkeep.store_moves): records an older version left whole in Redis
  join the history store's path, a bounded step per run until every mover is done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients import tokens
from pipeline.clients.errors import ClientError, CredentialsRejected, PermanentError
from pipeline.delivery.flush import sfmc_parked
from pipeline.infra import dispatch, keys
from pipeline.journeys import event_jobs, executions, intake
from pipeline.settings import Settings
from pipeline.stores.ledger import Execution
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions import subscription_rows
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep import privacy, store_moves
from pipeline.upkeep.replay import list_dead_letters, replay_one
from pipeline.vocabulary import ErrorClass, Stage, State

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]


@dataclass(frozen=True)
class Thresholds:
    """Seconds; their defaults are the settings' (RECONCILE_*, DLQ_RETRY_AFTER)."""

    queued_after: float  # a queued execution this old is re-driven
    confirm_after: float  # an accepted execution this old is checked at Rokt
    final_after: float  # accepted and never confirmed this long: failed
    dead_letter_cool_down: float  # a retryable dead letter is replayed once after this
    batch: int = 200  # at most this many of each kind per run

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            queued_after=settings.reconcile_queued_after,
            confirm_after=settings.reconcile_confirm_after,
            final_after=settings.reconcile_final_after,
            dead_letter_cool_down=settings.dlq_retry_after,
        )


@dataclass
class ReconcileReport:
    redriven: int = 0
    webhooks_redriven: int = 0
    checked: int = 0
    confirmed: int = 0
    resent: int = 0
    timed_out: int = 0
    released_at_deadline: int = 0
    dead_letters_retried: int = 0
    retention_trimmed: int = 0
    moved_to_store: int = 0
    matches_unparked: int = 0
    event_job_steps_resent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# an intake stream whose oldest entry is older than this is stalled (a flowing one: milliseconds)
INTAKE_STALLED_SECONDS = 30.0


def reconcile(
    rt: Runtime,
    tenant: str,
    enqueue_execution: Enqueue,
    enqueue_webhook: Enqueue,
    thresholds: Thresholds | None = None,
) -> ReconcileReport:
    thresholds = thresholds or Thresholds.from_settings(rt.settings)
    report = ReconcileReport()
    now = time.time()
    ledger = rt.ledger
    # while the intake stream is stalled (the broker down longer than queued_after, say) its
    # executions are published by the pumps once it is back: re-driving them too would run each
    # twice. A stream that flows (entries leave within seconds) does not hold re-drives back.
    stalled = intake.oldest_age_seconds(rt.redis, tenant, now) > INTAKE_STALLED_SECONDS
    if stalled:
        log.info("reconcile: the intake stream of %s is stalled; no re-drive until it flows", tenant)
    stuck_since = now - thresholds.queued_after
    due = [] if stalled else ledger.due(keys.open_executions(tenant), stuck_since, thresholds.batch)
    for execution in due:
        ledger.touch(keys.open_executions(tenant), tenant, execution)
        enqueue_execution(tenant, execution)
        report.redriven += 1
    webhooks = keys.webhooks_open(tenant)
    stale = now - thresholds.queued_after
    for event_id in rt.redis.zrangebyscore(webhooks, "-inf", stale, start=0, num=thresholds.batch):
        rt.redis.zadd(webhooks, {event_id: now}, xx=True)
        enqueue_webhook(tenant, event_id)
        report.webhooks_redriven += 1
    # an event job whose step was lost with a worker's message (a broker outage) goes on
    for job_id, start, end in event_jobs.stalled(rt, tenant, rt.settings.event_job_idle_seconds):
        dispatch.enqueue_event_job_step(tenant, job_id, start, end)
        report.event_job_steps_resent += 1
    for execution in ledger.due(keys.awaiting(tenant), now - thresholds.confirm_after, thresholds.batch):
        try:
            _check_accepted(rt, tenant, execution, now, thresholds, report)
        except (ClientError, RateLimited) as exc:  # Rokt unavailable: look again next run
            log.warning("reconcile: cannot check execution %s now: %s", execution, exc)
            break
    _release_past_deadline(rt, tenant, now, thresholds, report)
    _retry_dead_letters(rt, tenant, now, thresholds, enqueue_execution, enqueue_webhook, report)
    try:  # a refusal no flush looks at again (an idle tenant) is asked about once its hold ends
        if tokens.rejection(rt.redis, tenant, "sfmc") is not None:
            sfmc_parked(rt.sfmc(tenant))
    except ClientError as exc:
        log.warning("reconcile: SFMC's refusal of %s not checked: %s", tenant, type(exc).__name__)
    try:  # contact matches parked while SFMC refused the credentials (free while its hold lives)
        report.matches_unparked = subscription_rows.retry_parked_matches(rt, tenant, thresholds.batch)
    except (ClientError, RateLimited, SQLAlchemyError) as exc:  # SFMC or the store away: next run
        log.warning("reconcile: parked contact matches of %s wait: %s", tenant, type(exc).__name__)
    report.retention_trimmed = sum(privacy.apply_retention(rt, tenant, now, thresholds.batch).values())
    try:
        report.moved_to_store = sum(m.moved for m in store_moves.step(rt, tenant).values())
    except SQLAlchemyError as exc:  # the store is away: the walk resumes from its checkpoint next run
        log.warning("reconcile: records of %s wait to move to the store: %s", tenant, type(exc).__name__)
    if any(asdict(report).values()):
        log.info("reconcile %s: %s", tenant, report.as_dict())
    return report


def _check_accepted(
    rt: Runtime, tenant: str, execution: str, now: float, thresholds: Thresholds, report: ReconcileReport
) -> None:
    ex = rt.ledger.get(tenant, execution)
    if ex is None or ex.status != State.ACCEPTED:
        rt.redis.zrem(keys.awaiting(tenant), keys.execution(tenant, execution))
        return
    report.checked += 1
    accepted_at = _accepted_at(rt, tenant, ex, now)
    ids = json.loads(ex.fields.get("subscriptionIds") or "[]")
    client = rt.rokt(tenant)
    for sub_id in ids:
        try:
            subscription = client.subscription(sub_id) or {}
        except CredentialsRejected:
            raise  # the tenant's every call fails alike: the run stops
        except PermanentError as exc:  # this subscription's look-up refused: as if not visible
            log.warning("reconcile: Rokt refuses to show subscription of execution %s: %s", execution, exc)
            continue
        visible = subscription.get("eventsVisibleToSubscription") or []
        if any(item.get("subscriptionEventId") == ex.event_id for item in visible):
            moved, _ = rt.ledger.transition(tenant, execution, State.CONFIRMED, (State.ACCEPTED,))
            if moved:
                executions.emit_outcome(rt, rt.ledger.get(tenant, execution))
                report.confirmed += 1
            return
    if now - float(accepted_at) > thresholds.final_after:
        reason = f"not confirmed by Rokt within {thresholds.final_after:.0f} s"
        executions.fail(
            rt,
            tenant,
            execution,
            Stage.CONFIRM,
            ErrorClass.UNCONFIRMED,
            reason,
            allowed_from=(State.ACCEPTED,),
        )
        report.timed_out += 1
        return
    event = json.loads(ex.fields.get("event") or "{}")
    # same eventId: Rokt keeps one event per id (or refuses the second, DuplicateEventId), so
    # this cannot duplicate
    if event and ids:
        try:
            if client.create_subscription_event(event, ids):
                report.resent += 1
        except CredentialsRejected:
            raise
        except PermanentError as exc:
            # refused (a subscription gone inactive, ...): looked at again after the others, and
            # failed at the final deadline; stopping here would hold every later one until then
            log.warning("reconcile: Rokt refuses to re-send execution %s: %s", execution, exc)
    rt.ledger.touch(keys.awaiting(tenant), tenant, execution)


def _accepted_at(rt: Runtime, tenant: str, ex: Execution, now: float) -> float:
    """When the execution moved to accepted: the final deadline counts from there (the awaiting
    set's score moves with each look). A record accepted before `acceptedAt` was stored: its
    `updatedAt` (set by that move, not changed while accepted), else the score."""
    if ex.fields.get("acceptedAt"):
        return float(ex.fields["acceptedAt"])
    with contextlib.suppress(KeyError, ValueError):
        return datetime.fromisoformat(ex.fields["updatedAt"]).timestamp()
    score = rt.redis.zscore(keys.awaiting(tenant), keys.execution(tenant, ex.execution_id))
    return float(score or now)


def _release_past_deadline(
    rt: Runtime, tenant: str, now: float, thresholds: Thresholds, report: ReconcileReport
) -> None:
    """releaseOn=confirmed and no confirmation by the deadline: release the outcome so far.
    release_once drops the entry, and releases nothing when the contact was released already."""
    due = rt.redis.zrangebyscore(keys.release_due(tenant), "-inf", now, start=0, num=thresholds.batch)
    for execution in due:
        if executions.release_once(rt, tenant, execution):
            report.released_at_deadline += 1


def _retry_dead_letters(
    rt: Runtime,
    tenant: str,
    now: float,
    thresholds: Thresholds,
    enqueue_execution: Enqueue,
    enqueue_webhook: Enqueue,
    report: ReconcileReport,
) -> None:
    retried_key = keys.dead_letters_auto_retried(tenant)
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - thresholds.dead_letter_cool_down))
    for letter in list_dead_letters(rt, tenant)[: thresholds.batch]:
        if letter["errorClass"] == ErrorClass.PERMANENT or letter["failedAt"][:19] > cutoff:
            continue
        if not rt.redis.sadd(retried_key, letter["id"]):
            continue  # retried automatically once already: an operator decides now
        if replay_one(rt, tenant, letter, enqueue_execution, enqueue_webhook):
            report.dead_letters_retried += 1
