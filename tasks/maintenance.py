"""Beat's reconciliation task: a thin adapter from Celery to pipeline.reconcile."""

from __future__ import annotations

import time

from celery import Task

from pipeline.queues import RECONCILE_TASK, render_queue
from pipeline.reconcile import reconcile
from pipeline.runtime import get_runtime
from tasks.base import pipeline_task, schedule_flushes


def enqueue_execution(tenant: str, execution_id: str) -> None:
    """Re-drive an execution from its first stage (every stage is idempotent)."""
    from tasks.execution import render_event

    render_event.apply_async(
        args=[tenant, execution_id],
        queue=render_queue(tenant),
        task_id=f"{execution_id}:render:{time.time_ns()}",
    )


def enqueue_webhook(tenant: str, event_id: str) -> None:
    from tasks.webhooks import process_rokt_webhook

    process_rokt_webhook.apply_async(args=[tenant, event_id], task_id=f"webhook:{event_id}:{time.time_ns()}")


@pipeline_task(RECONCILE_TASK)
def reconcile_all(self: Task) -> dict[str, dict[str, int]]:
    """Every tenant: re-drive stuck executions, check unconfirmed ones, retry dead letters once."""
    rt = get_runtime()
    reports = {}
    for tenant in rt.settings.tenants:
        reports[tenant] = reconcile(rt, tenant, enqueue_execution, enqueue_webhook).as_dict()
        schedule_flushes(tenant)
    return reports
