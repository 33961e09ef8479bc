"""Webhook task: a thin adapter from Celery to pipeline.webhooks."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from pipeline.clients.errors import ClientError
from pipeline.deadletters import record_dead_letter
from pipeline.queues import WEBHOOK_TASK
from pipeline.ratelimit import RateLimited
from pipeline.retry_policy import backoff
from pipeline.runtime import get_runtime
from pipeline.webhooks import NotYetAccepted, process_webhook
from tasks.base import pipeline_task, schedule_flushes


class WebhookTask(Task):
    """Retries exhausted or a permanent error: keep the webhook in the dead-letter store."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        tenant, event_id = args[0], args[1]
        rt = get_runtime()
        record_dead_letter(
            rt.redis,
            tenant,
            f"webhook:{event_id}",
            stage="webhook",
            error_class=getattr(exc, "error_class", type(exc).__name__),
            reason=getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}",
            attempts=self.request.retries + 1,
            payload={"eventId": event_id},
        )


@pipeline_task(WEBHOOK_TASK, base=WebhookTask)
def process_rokt_webhook(self: Task, tenant: str, event_id: str) -> None:
    """Apply one Rokt webhook (subscription row, contact match, or execution confirmation)."""
    try:
        kinds = process_webhook(get_runtime(), tenant, event_id)
    except NotYetAccepted as exc:  # Rokt's confirmation beat our own record of its 202
        raise self.retry(exc=exc, countdown=2, max_retries=30) from exc
    except (RateLimited, ClientError, redis.RedisError) as exc:
        if isinstance(exc, ClientError) and not exc.retryable:
            raise
        wait = getattr(exc, "wait", None) or getattr(exc, "retry_after", None)
        raise self.retry(exc=exc, countdown=wait or backoff(self.request.retries)) from exc
    schedule_flushes(tenant, kinds)
