"""Beat's reconciliation task: a thin adapter from Celery to pipeline.upkeep.reconcile."""

from __future__ import annotations

from celery import Task

from pipeline.infra import dispatch
from pipeline.infra.queues import RECONCILE_TASK
from pipeline.tenancy.handles import get_runtime
from pipeline.upkeep import reconcile
from pipeline.vocabulary import TenantStatus
from tasks.base import pipeline_task, schedule_flushes


@pipeline_task(RECONCILE_TASK)
def reconcile_task(self: Task) -> dict[str, dict[str, int]]:
    """Every active tenant: re-drive stuck executions, check unconfirmed ones, retry dead
    letters once (a disabled tenant's work waits where it is)."""
    rt = get_runtime()
    reports = {}
    for tenant in rt.registry.names(TenantStatus.ACTIVE):
        report = reconcile.reconcile(rt, tenant, dispatch.redrive_execution, dispatch.redrive_webhook)
        reports[tenant] = report.as_dict()
        schedule_flushes(tenant)
    return reports
