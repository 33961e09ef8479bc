"""The one place the web tier enqueues work: by task name, without importing `tasks`.

A producer-only Celery app reads the same `celeryconfig` as the workers (identical broker
transport options in every process that connects).
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from pipeline.queues import RENDER_TASK, WEBHOOK_TASK, WEBHOOKS_QUEUE, render_queue
from pipeline.settings import get_settings


def producer() -> Celery:
    return _producer(get_settings().redis_url)


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Celery:
    app = Celery("rokt_sfmc", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.broker_url = broker_url  # the settings of this process, read now
    return app


def enqueue_execution(tenant: str, execution_id: str) -> None:
    """Start an execution's chain; the task id is derived from the execution (one id in logs)."""
    producer().send_task(
        RENDER_TASK,
        args=[tenant, execution_id],
        queue=render_queue(tenant),
        task_id=f"{execution_id}:render",
    )


def enqueue_webhook(tenant: str, event_id: str) -> None:
    """Process a stored Rokt webhook; one task id per webhook eventId."""
    producer().send_task(
        WEBHOOK_TASK, args=[tenant, event_id], queue=WEBHOOKS_QUEUE, task_id=f"webhook:{event_id}"
    )
