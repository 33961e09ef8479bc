"""Flush tasks: drain the tenant's outboxes into SFMC in batches."""

from __future__ import annotations

import random
import uuid

from celery import Task

from pipeline.clients.errors import ClientError
from pipeline.flush import FLUSHERS, claim_flush_slot
from pipeline.outbox import RELEASES, STATUS_ROWS, SUBSCRIPTION_ROWS
from pipeline.queues import FLUSH_ALL_TASK, FLUSH_RELEASES_TASK, FLUSH_STATUS_TASK, FLUSH_SUBSCRIPTIONS_TASK
from pipeline.ratelimit import RateLimited
from pipeline.retry_policy import backoff
from pipeline.runtime import get_runtime
from tasks.base import pipeline_task


def _flush(task: Task, kind: str, tenant: str) -> dict[str, int]:
    """The consumer name is the task id, so a redelivery re-reads its own unacked batch."""
    try:
        report = FLUSHERS[kind](get_runtime(), tenant, consumer=task.request.id or uuid.uuid4().hex)
    except (RateLimited, ClientError) as exc:
        wait = getattr(exc, "wait", None) or getattr(exc, "retry_after", None)
        countdown = (wait + random.uniform(0, 1)) if wait else backoff(task.request.retries)
        # entries stay pending for this consumer; nothing is dropped however long SFMC is down
        raise task.retry(exc=exc, countdown=countdown, max_retries=None) from exc
    if report.more:
        task.apply_async(args=[tenant])
    elif report.retry_in and claim_flush_slot(get_runtime(), tenant, kind, report.retry_in):
        task.apply_async(args=[tenant], countdown=report.retry_in)
    return {"items": report.items, "calls": report.calls, "rejected": report.rejected}


@pipeline_task(FLUSH_STATUS_TASK)
def flush_status_rows(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, STATUS_ROWS, tenant)


@pipeline_task(FLUSH_SUBSCRIPTIONS_TASK)
def flush_subscription_rows(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, SUBSCRIPTION_ROWS, tenant)


@pipeline_task(FLUSH_RELEASES_TASK)
def flush_releases(self: Task, tenant: str) -> dict[str, int]:
    return _flush(self, RELEASES, tenant)


FLUSH_TASKS = {
    STATUS_ROWS: flush_status_rows,
    SUBSCRIPTION_ROWS: flush_subscription_rows,
    RELEASES: flush_releases,
}


@pipeline_task(FLUSH_ALL_TASK)
def flush_all(self: Task) -> None:
    """Beat's safety net: flush every tenant outbox that still holds entries."""
    rt = get_runtime()
    for tenant in rt.settings.tenants:
        for kind, task in FLUSH_TASKS.items():
            if rt.outbox(tenant, kind).backlog():
                task.apply_async(args=[tenant])
