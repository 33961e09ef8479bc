"""Flush tasks: drain the tenant's outboxes into SFMC and the history store in batches."""

from __future__ import annotations

import uuid

import redis
from celery import Task
from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients.errors import ClientError, CredentialsRejected
from pipeline.delivery.flush import FLUSHERS, claim_flush_slot
from pipeline.infra import dispatch
from pipeline.infra.queues import (
    FLUSH_ALL_TASK,
    FLUSH_HISTORY_TASK,
    FLUSH_RELEASES_TASK,
    FLUSH_STATUS_TASK,
    FLUSH_SUBSCRIPTION_HISTORY_TASK,
    FLUSH_SUBSCRIPTIONS_TASK,
)
from pipeline.stores.ratelimit import RateLimited
from pipeline.tenancy.handles import get_runtime
from pipeline.vocabulary import OutboxKind, TenantStatus
from tasks.base import hold_while_disabled, pipeline_task, retry_later

# a parked flush holding a batch looks again as often as beat's outbox pass (celeryconfig): cheap
# while SFMC refuses (the hold answers, no token is asked for), and its batch goes soon after a fix
HOLDING_RETRY_SECONDS = 10.0


def _flush(task: Task, kind: OutboxKind, tenant: str) -> dict[str, int]:
    """The consumer name is the task id, so a redelivery re-reads its own unacked batch.

    Parked (SFMC refuses the tenant's credentials), a flush ends at once and beat's next
    `flush_all` looks again: no task waits in a retry per batch. Only a flush holding a batch it
    took comes back itself (a retry keeps the task id, so it reads that batch again)."""
    hold_while_disabled(task, tenant)
    rt = get_runtime()
    try:
        report = FLUSHERS[kind](rt, tenant, consumer=task.request.id or uuid.uuid4().hex)
    except (RateLimited, ClientError, redis.RedisError, SQLAlchemyError) as exc:
        # entries stay pending for this consumer; nothing is dropped however long SFMC (or the
        # history store) is down
        raise retry_later(task, exc, bounded=False) from exc
    if report.holding:
        exc = CredentialsRejected(f"SFMC refuses the credentials of {tenant}: the batch waits")
        raise retry_later(task, exc, after=HOLDING_RETRY_SECONDS, bounded=False)
    if report.more:
        task.apply_async(args=[tenant])
    elif report.retry_in and claim_flush_slot(rt, tenant, kind, report.retry_in):
        task.apply_async(args=[tenant], countdown=report.retry_in)
    return {
        "items": report.items,
        "calls": report.calls,
        "rejected": report.rejected,
        "parked": int(report.parked),
    }


@pipeline_task(FLUSH_STATUS_TASK)
def flush_status_rows_task(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, OutboxKind.STATUS_ROWS, tenant)


@pipeline_task(FLUSH_SUBSCRIPTIONS_TASK)
def flush_subscription_rows_task(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, OutboxKind.SUBSCRIPTION_ROWS, tenant)


@pipeline_task(FLUSH_RELEASES_TASK)
def flush_releases_task(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, OutboxKind.RELEASES, tenant)


@pipeline_task(FLUSH_HISTORY_TASK)
def flush_history_task(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, OutboxKind.HISTORY, tenant)


@pipeline_task(FLUSH_SUBSCRIPTION_HISTORY_TASK)
def flush_subscription_history_task(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, OutboxKind.SUBSCRIPTION_HISTORY, tenant)


@pipeline_task(FLUSH_ALL_TASK)
def flush_all_task(self: Task) -> None:
    """Beat's safety net: flush every active tenant's outboxes that still hold entries (a
    disabled tenant's rows wait in its outbox)."""
    rt = get_runtime()
    for tenant in rt.registry.names(TenantStatus.ACTIVE):
        for kind in OutboxKind:
            if rt.outbox(tenant, kind).backlog():
                dispatch.schedule_flush(tenant, kind)
