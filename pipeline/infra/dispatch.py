"""The one place work is enqueued by task name, without importing `tasks`: by the web tier,
by the reconciler and replays (re-drives), and by tasks scheduling a flush.

A producer-only Celery app reads the same `celeryconfig` as the workers (identical broker
transport options and queue declarations in every process that connects). Its broker is
BROKER_URL, or REDIS_URL without it; on RabbitMQ every publish waits for the broker's confirm
(celeryconfig's `confirm_publish`), so a send that returns is a message RabbitMQ holds.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from celery import Celery, signals

from pipeline.infra import kombu_redis_close
from pipeline.infra.queues import (
    EVENT_JOB_ITEM_TASK,
    EVENT_JOB_STEP_TASK,
    EVENT_JOBS_QUEUE,
    EXPORT_PERFORMANCE_TASK,
    FLUSH_TASKS,
    INSTALL_DATA_EXTENSIONS_TASK,
    JOURNEY_STOPPED_TASK,
    RENDER_TASK,
    SENT_AT_HEADER,
    WEBHOOK_TASK,
    WEBHOOKS_QUEUE,
    render_queue,
)
from pipeline.infra.redis_clients import celery_redis_options, tls_options
from pipeline.settings import get_settings, is_amqp
from pipeline.vocabulary import OutboxKind


@signals.before_task_publish.connect
def stamp_sent_at(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """Every task message this process publishes (enqueues, re-drives, retries, flushes) carries
    the time it was sent: the age of a queue's oldest message (`pipeline.ops.figures`)."""
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


def producer() -> Celery:
    return _producer(get_settings().broker)


@lru_cache(maxsize=4)
def _producer(broker_url: str) -> Celery:
    kombu_redis_close.apply()  # the same transport fix as the workers' (tasks/__init__.py)
    app = Celery("rokt_sfmc", set_as_current=False)
    app.config_from_object("celeryconfig")
    # the settings of this process, read now, as celeryconfig derives them
    if is_amqp(broker_url):
        app.conf.broker_url = broker_url
        app.conf.broker_use_ssl = None
    else:  # Redis: a Sentinel URL in kombu's form; TLS options of a `rediss://` URL
        app.conf.broker_url = celery_redis_options(broker_url)["broker_url"]
        app.conf.broker_use_ssl = tls_options(broker_url)
    return app


def _send(name: str, args: list[Any], **options: Any) -> None:
    producer().send_task(name, args=args, **options)


def enqueue_execution(tenant: str, execution_id: str) -> None:
    """Start an execution's chain; the task id is derived from the execution (one id in logs)."""
    _send(RENDER_TASK, [tenant, execution_id], queue=render_queue(tenant), task_id=f"{execution_id}:render")


def redrive_execution(tenant: str, execution_id: str) -> None:
    """Run an execution's chain again from its first stage (every stage is idempotent); a task
    id of its own, so monitoring tells the re-drive from the first run."""
    task_id = f"{execution_id}:render:{time.time_ns()}"
    _send(RENDER_TASK, [tenant, execution_id], queue=render_queue(tenant), task_id=task_id)


def enqueue_webhook(tenant: str, event_id: str) -> None:
    """Process a stored Rokt webhook; one task id per webhook eventId."""
    _send(WEBHOOK_TASK, [tenant, event_id], queue=WEBHOOKS_QUEUE, task_id=f"webhook:{event_id}")


def redrive_webhook(tenant: str, event_id: str) -> None:
    """Process a stored webhook again (applying it twice has no second effect)."""
    _send(
        WEBHOOK_TASK, [tenant, event_id], queue=WEBHOOKS_QUEUE, task_id=f"webhook:{event_id}:{time.time_ns()}"
    )


def schedule_flush(tenant: str, kind: OutboxKind, countdown: float = 0.0) -> None:
    """Flush one of the tenant's outboxes (routed to its queue by celeryconfig)."""
    _send(FLUSH_TASKS[kind], [tenant], countdown=countdown)


def install_data_extensions(tenant: str) -> None:
    """Create the tenant's folder and data extensions in SFMC (App Settings' Install button)."""
    _send(
        INSTALL_DATA_EXTENSIONS_TASK, [tenant], task_id=f"install-data-extensions:{tenant}:{time.time_ns()}"
    )


def enqueue_event_job_step(tenant: str, job_id: str, start: int, end: int = 0, countdown: float = 0) -> None:
    """One step of an event job: a chunk [start, end) of its executions, or its planning (start -1)."""
    options: dict[str, Any] = {"countdown": countdown} if countdown else {}
    _send(EVENT_JOB_STEP_TASK, [tenant, job_id, start, end], queue=EVENT_JOBS_QUEUE, **options)


def enqueue_event_job_item(tenant: str, job_id: str, execution_id: str) -> None:
    """One execution of an event job done again (its dead letter's replay)."""
    _send(EVENT_JOB_ITEM_TASK, [tenant, job_id, execution_id], queue=EVENT_JOBS_QUEUE)


def enqueue_journey_stopped(tenant: str, activity_id: str, definition_id: str, version: int) -> None:
    """Journey Builder said a journey version stopped: confirm with SFMC, maybe cancel (event_jobs)."""
    _send(JOURNEY_STOPPED_TASK, [tenant, activity_id, definition_id, version], queue=EVENT_JOBS_QUEUE)


def export_performance(tenant: str, days: list[str] | None = None) -> None:
    """Write the tenant's performance rows to SFMC: `days` (a replay), or what beat's hourly run
    writes (today, and the days ended since the last run after midnight)."""
    _send(EXPORT_PERFORMANCE_TASK, [tenant] if days is None else [tenant, list(days)])
