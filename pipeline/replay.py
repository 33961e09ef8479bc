"""Dead letters: list, show, and replay them through the same pipeline.

A replay goes through the same tasks, rate limiter and idempotency as the first run:
an execution is reopened only from `failed` (so replaying twice enqueues once) and keeps
its deterministic Rokt `eventId`; rows go back to their outbox (upserts); webhooks are
re-enqueued and their applied-marker keeps them from applying twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.ledger import now_iso
from pipeline.outbox import RELEASES, STATUS_ROWS, SUBSCRIPTION_ROWS
from pipeline.runtime import Runtime
from pipeline.store import tenant_key
from pipeline.subscriptions import matched_or_failed, merge_backfill

EXECUTION_STAGES = ("render", "create_event", "pipeline")
ROW_STAGES = {"record_status": STATUS_ROWS, "record_subscription": SUBSCRIPTION_ROWS, "release": RELEASES}
PERMANENT = "permanent"

Enqueue = Callable[[str, str], None]


@dataclass
class DeadLetterFilter:
    stage: str | None = None
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


def _dlq(tenant: str) -> str:
    return tenant_key(tenant, "dlq")


def list_dead_letters(
    rt: Runtime, tenant: str, where: DeadLetterFilter | None = None
) -> list[dict[str, Any]]:
    where = where or DeadLetterFilter()
    letters = (json.loads(raw) for raw in rt.redis.hvals(_dlq(tenant)))
    return sorted((d for d in letters if where.matches(d)), key=lambda d: (d["failedAt"], d["id"]))


def show_dead_letter(rt: Runtime, tenant: str, item_id: str) -> dict[str, Any] | None:
    raw = rt.redis.hget(_dlq(tenant), item_id)
    return json.loads(raw) if raw else None


def replay_one(
    rt: Runtime, tenant: str, letter: dict[str, Any], enqueue_execution: Enqueue, enqueue_webhook: Enqueue
) -> bool:
    """Send one dead letter through the pipeline again; False when there is nothing to do."""
    stage, payload = letter["stage"], letter.get("payload") or {}
    if stage in EXECUTION_STAGES:
        execution = payload["executionId"]
        if not rt.ledger.reopen(tenant, execution):
            _forget(rt, tenant, letter)  # no longer failed: replayed already, or finished since
            return False
        enqueue_execution(tenant, execution)
    elif stage in ROW_STAGES:
        item = payload.get("row") or payload.get("member")
        if stage == "release":
            item = {"eventDefinitionKey": payload["eventDefinitionKey"], **payload["member"]}
        rt.outbox(tenant, ROW_STAGES[stage]).append(item)
    elif stage == "webhook":
        enqueue_webhook(tenant, payload["eventId"])
    elif stage == "match_contact":
        rt.redis.hdel(tenant_key(tenant, "sub", payload["CalendarSubscriptionId"]), "contactMatch")
        row = merge_backfill(rt, tenant, payload, matched_or_failed(rt, tenant, payload))
        rt.outbox(tenant, SUBSCRIPTION_ROWS).append(row)
    else:
        return False
    _forget(rt, tenant, letter)
    return True


def _forget(rt: Runtime, tenant: str, letter: dict[str, Any]) -> None:
    """Move a dead letter to the replayed log (kept for audit)."""
    pipe = rt.redis.pipeline()
    pipe.hdel(_dlq(tenant), letter["id"])
    pipe.hset(
        tenant_key(tenant, "dlq-replayed"), letter["id"], json.dumps({**letter, "replayedAt": now_iso()})
    )
    pipe.execute()


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
