"""The performance data extension's tasks: thin adapters from Celery to
pipeline.delivery.performance_rows (beat runs `export_performance_all` every hour)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task

from pipeline.clients.errors import ClientError, CredentialsRejected
from pipeline.delivery import performance_rows
from pipeline.infra import dispatch
from pipeline.infra.queues import EXPORT_PERFORMANCE_ALL_TASK, EXPORT_PERFORMANCE_TASK
from pipeline.stores import deadletters
from pipeline.stores.ratelimit import RateLimited
from pipeline.tenancy.handles import get_runtime
from pipeline.vocabulary import Stage, TenantStatus
from tasks.base import pipeline_task, retry_later

log = logging.getLogger(__name__)

# retried with the policy's backoff this often (about an hour in all), then a dead letter per day;
# beat's next hour writes today again, and the ended days until they are in SFMC, in any case
MAX_PERFORMANCE_RETRIES = 8


@pipeline_task(EXPORT_PERFORMANCE_ALL_TASK)
def export_performance_all_task(self: Task) -> list[str]:
    """Beat's hourly run: one export per active tenant (a disabled tenant's rows wait)."""
    tenants = get_runtime().registry.names(TenantStatus.ACTIVE)
    for tenant in tenants:
        dispatch.export_performance(tenant)
    return list(tenants)


@pipeline_task(EXPORT_PERFORMANCE_TASK, max_retries=MAX_PERFORMANCE_RETRIES)
def export_performance_task(self: Task, tenant: str, days: list[str] | None = None) -> dict[str, Any]:
    """Upsert the tenant's performance rows (`days`, or today and the days ended since the last
    run). Throttling, 5xx and timeouts are retried; a refusal, or retries run out, leaves one dead
    letter per day (`record_performance`, replayable). Refused credentials leave none: the tenant
    shows `reconnect needed`, and the next hour writes the days again once they are fixed."""
    rt = get_runtime()
    try:
        return performance_rows.export(rt, tenant, days).as_dict()
    except (ClientError, RateLimited, redis.RedisError) as exc:
        if isinstance(exc, CredentialsRejected):
            log.warning("performance rows of %s wait: %s", tenant, exc)
            return {"days": days or [], "rows": 0, "waiting": True}
        retryable = not isinstance(exc, ClientError) or exc.retryable
        if retryable and self.request.retries < MAX_PERFORMANCE_RETRIES:
            raise retry_later(self, exc) from exc
        written = days or performance_rows.days_to_write(rt, tenant)[0]
        for day in written:
            deadletters.record_exception(
                rt.redis,
                tenant,
                f"performance:{day}",
                Stage.RECORD_PERFORMANCE,
                exc,
                {"day": day},
                attempts=self.request.retries + 1,
            )
        log.warning("performance rows of %s for %s not written: %s", tenant, ", ".join(written), exc)
        return {"days": written, "rows": 0, "deadLettered": len(written)}
