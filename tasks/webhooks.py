"""Webhook task: a thin adapter from Celery to pipeline.subscriptions.webhooks."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task
from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients.errors import ClientError, CredentialsRejected
from pipeline.clients.tokens import REFUSED_RETRY_SECONDS
from pipeline.delivery.retry_policy import retryable
from pipeline.infra.queues import WEBHOOK_TASK
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions import webhooks
from pipeline.tenancy.handles import get_runtime
from tasks.base import hold_while_disabled, pipeline_task, retry_later, schedule_flushes

CONFIRMATION_RETRY_SECONDS = 2  # our record of Rokt's 202 lands within moments
CONFIRMATION_MAX_RETRIES = 30


class WebhookTask(Task):
    """Retries exhausted or a permanent error: the webhook goes to the dead-letter store."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        tenant, event_id = args[0], args[1]
        webhooks.give_up(get_runtime(), tenant, event_id, exc, self.request.retries + 1)


@pipeline_task(WEBHOOK_TASK, base=WebhookTask)
def process_webhook_task(self: Task, tenant: str, event_id: str) -> None:
    """Apply one Rokt webhook (subscription row, contact match, or execution confirmation)."""
    hold_while_disabled(self, tenant)
    try:
        kinds = webhooks.process_webhook(get_runtime(), tenant, event_id)
    except webhooks.NotYetAccepted as exc:  # Rokt's confirmation beat our own record of its 202
        after, most = CONFIRMATION_RETRY_SECONDS, CONFIRMATION_MAX_RETRIES
        raise self.retry(exc=exc, countdown=after, max_retries=most) from exc
    except CredentialsRejected as exc:  # SFMC refuses the tenant's credentials: wait for a fix
        webhooks.still_waiting(get_runtime(), tenant, event_id)  # this retry, not the reconciler, drives it
        raise retry_later(self, exc, after=REFUSED_RETRY_SECONDS, bounded=False) from exc
    except (RateLimited, ClientError, redis.RedisError, SQLAlchemyError) as exc:
        if not retryable(exc):
            raise  # on_failure dead-letters it
        # a history store away (a failover, maintenance) is waited out however long it takes: its
        # retries come every 15 s at most, so 20 of them would dead-letter every webhook after ~3 min
        raise retry_later(self, exc, bounded=not isinstance(exc, SQLAlchemyError)) from exc
    schedule_flushes(tenant, kinds)
