"""Dead letters: list, show, and replay them through the same pipeline.

A replay goes through the same tasks, rate limiter and idempotency as the first run:
an execution is reopened only from `failed` (so replaying twice enqueues once) and keeps
its deterministic Rokt `eventId`; rows go back to their outbox (upserts); webhooks are
re-enqueued and their applied-marker keeps them from applying twice.

A replayed letter is done: it leaves Redis for the history store (`deadletters.move_to_replayed`),
where `list_replayed` reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.infra import dispatch, keys
from pipeline.stores import deadletters
from pipeline.subscriptions.subscription_rows import matched_or_failed, merge_backfill
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind, Stage

Enqueue = Callable[[str, str], None]


@dataclass
class DeadLetterFilter:
    stage: Stage | None = None
    error_class: str | None = None
    journey: str | None = None
    since: str | None = None  # ISO 8601, compared with failedAt
    until: str | None = None

    def matches(self, letter: dict[str, Any]) -> bool:
        payload = letter.get("payload") or {}
        return (
            (self.stage is None or letter["stage"] == self.stage)
            and (self.error_class is None or letter["errorClass"] == self.error_class)
            and (self.journey is None or payload.get("journeyId") == self.journey)
            and (self.since is None or letter["failedAt"] >= self.since)
            and (self.until is None or letter["failedAt"] <= self.until)
        )


@dataclass
class ReplayReport:
    selected: int = 0
    replayed: int = 0
    skipped: int = 0
    ids: list[str] = field(default_factory=list)


def list_dead_letters(
    rt: Runtime, tenant: str, where: DeadLetterFilter | None = None
) -> list[dict[str, Any]]:
    where = where or DeadLetterFilter()
    letters = (json.loads(raw) for raw in rt.redis.hvals(keys.dead_letters(tenant)))
    return sorted((d for d in letters if where.matches(d)), key=lambda d: (d["failedAt"], d["id"]))


def show_dead_letter(rt: Runtime, tenant: str, item_id: str) -> dict[str, Any] | None:
    raw = rt.redis.hget(keys.dead_letters(tenant), item_id)
    return json.loads(raw) if raw else None


def list_replayed(rt: Runtime, tenant: str, where: DeadLetterFilter | None = None) -> list[dict[str, Any]]:
    """Replayed letters, for audit: the history store's, and those an older version kept in Redis
    (`dlq-replayed`, emptied by retention); oldest failure first. Letters replayed moments ago
    may still wait in the history outbox."""
    where = where or DeadLetterFilter()
    legacy = (json.loads(raw) for raw in rt.redis.hvals(keys.dead_letters_replayed(tenant)))
    letters = [*rt.history.replayed_dead_letters(tenant), *legacy]
    return sorted((d for d in letters if where.matches(d)), key=lambda d: (d["failedAt"], d["id"]))


@dataclass(frozen=True)
class Enqueuers:
    """How a replay sends work back into the pipeline (the caller's dispatch)."""

    execution: Enqueue
    webhook: Enqueue


# A replayer sends one dead letter's work through the pipeline again; False when the letter
# is stale (its execution no longer failed), so there is nothing to do.
Replayer = Callable[[Runtime, str, dict[str, Any], Enqueuers], bool]


def _replay_execution(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    """Reopen the failed execution (fresh attempts and time budget) and run its chain again:
    the same deterministic `eventId`, so Rokt keeps one event whatever happened before (or
    refuses it as taken: executions.create_step)."""
    execution = letter["payload"]["executionId"]
    if not rt.ledger.reopen(tenant, execution):
        return False  # no longer failed: replayed already, or finished since
    enqueue.execution(tenant, execution)
    return True


def _replay_row(kind: OutboxKind) -> Replayer:
    def replay_row(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
        rt.outbox(tenant, kind).append(letter["payload"]["row"])  # an upsert: safe to repeat
        return True

    return replay_row


def _replay_history(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    """The execution into the history outbox again, to be written as it is now (or the replayed
    letter the store refused, to be written again)."""
    payload = letter["payload"]
    entry = {"deadLetter": payload["deadLetter"]} if "deadLetter" in payload else None
    rt.outbox(tenant, OutboxKind.HISTORY).append(entry or {"executionId": payload["executionId"]})
    return True


def _replay_subscription_history(
    rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers
) -> bool:
    """The subscription into its store outbox again: its working copy (kept while refused) is
    written as it is now."""
    entry = {"subscriptionId": letter["payload"]["subscriptionId"]}
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).append(entry)
    return True


def _replay_release(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    payload = letter["payload"]
    item = {"eventDefinitionKey": payload["eventDefinitionKey"], **payload["member"]}
    rt.outbox(tenant, OutboxKind.RELEASES).append(item)
    return True


def _replay_webhook(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    enqueue.webhook(tenant, letter["payload"]["eventId"])  # applied once, whatever the count
    return True


def _replay_contact_match(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    """Match or create the contact again, then rewrite the subscription row with the result."""
    attrs = letter["payload"]
    row = merge_backfill(rt, tenant, attrs, matched_or_failed(rt, tenant, attrs, again=True))
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_ROWS).append(row)
    return True


def _replay_event_job_item(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    """The job's one execution done again by its task (429/5xx retried there, a refusal a dead
    letter again): an update with the same content, or a delete or removal already done, is
    harmless at Rokt."""
    payload = letter["payload"]
    dispatch.enqueue_event_job_item(tenant, payload["jobId"], payload["executionId"])
    return True


def _replay_performance(rt: Runtime, tenant: str, letter: dict[str, Any], enqueue: Enqueuers) -> bool:
    """The day's performance rows written again, rebuilt from its figures as they are now (an
    upsert); nothing when the figures are gone (past PERFORMANCE_DAYS)."""
    day = letter["payload"]["day"]
    if not rt.redis.exists(keys.performance_day(tenant, day)):
        return False
    dispatch.export_performance(tenant, [day])
    return True


REPLAYERS: dict[Stage, Replayer] = {
    Stage.RENDER: _replay_execution,
    Stage.CREATE_EVENT: _replay_execution,
    Stage.PIPELINE: _replay_execution,
    # Rokt never confirmed the event: reopen and send it again with the same eventId.
    Stage.CONFIRM: _replay_execution,
    Stage.RECORD_STATUS: _replay_row(OutboxKind.STATUS_ROWS),
    Stage.RECORD_SUBSCRIPTION: _replay_row(OutboxKind.SUBSCRIPTION_ROWS),
    Stage.RELEASE: _replay_release,
    Stage.RECORD_HISTORY: _replay_history,
    Stage.RECORD_SUBSCRIPTION_HISTORY: _replay_subscription_history,
    Stage.WEBHOOK: _replay_webhook,
    Stage.MATCH_CONTACT: _replay_contact_match,
    Stage.UPDATE_EVENT: _replay_event_job_item,
    Stage.DELETE_EVENT: _replay_event_job_item,
    Stage.REMOVE_EVENT: _replay_event_job_item,
    Stage.RECORD_PERFORMANCE: _replay_performance,
}


def replay_one(
    rt: Runtime, tenant: str, letter: dict[str, Any], enqueue_execution: Enqueue, enqueue_webhook: Enqueue
) -> bool:
    """Send one dead letter through the pipeline again; False when there is nothing to do.

    A letter of an unknown stage (written by a newer version, say) is left in the store.
    """
    try:
        replayer = REPLAYERS[Stage(letter["stage"])]
    except ValueError:
        return False
    replayed = replayer(rt, tenant, letter, Enqueuers(enqueue_execution, enqueue_webhook))
    # replayed now, or stale (nothing left): done either way, so to the history store
    deadletters.move_to_replayed(rt.outbox(tenant, OutboxKind.HISTORY), letter)
    return replayed


def replay(
    rt: Runtime,
    tenant: str,
    letters: Iterable[dict[str, Any]],
    enqueue_execution: Enqueue,
    enqueue_webhook: Enqueue,
    *,
    dry_run: bool = False,
    on_progress: Callable[[], None] | None = None,
) -> ReplayReport:
    report = ReplayReport()
    for letter in letters:
        report.selected += 1
        report.ids.append(letter["id"])
        if not dry_run:
            if replay_one(rt, tenant, letter, enqueue_execution, enqueue_webhook):
                report.replayed += 1
            else:
                report.skipped += 1
        if on_progress is not None:
            on_progress()
    return report
