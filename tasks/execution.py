"""Per-execution tasks: thin adapters from Celery to pipeline.executions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task

from pipeline import executions
from pipeline.clients.errors import ClientError
from pipeline.queues import CREATE_EVENT_TASK, RENDER_TASK, rokt_queue
from pipeline.ratelimit import RateLimited
from pipeline.retry_policy import backoff, decide
from pipeline.runtime import get_runtime
from tasks.base import pipeline_task, schedule_flushes


class ExecutionTask(Task):
    """A task whose args are (tenant, execution_id); an unexpected failure ends it `failed`."""

    stage = "pipeline"

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        tenant, execution_id = args[0], args[1]
        executions.give_up(get_runtime(), tenant, execution_id, self.stage, exc, self.request.retries + 1)
        schedule_flushes(tenant)


class RenderTask(ExecutionTask):
    stage = "render"


class CreateEventTask(ExecutionTask):
    stage = "create_event"


@pipeline_task(RENDER_TASK, base=RenderTask)
def render_event(self: Task, tenant: str, execution_id: str) -> None:
    """Render the contact's event from its template; hands over to create_rokt_event."""
    try:
        step = executions.render_step(get_runtime(), tenant, execution_id)
    except redis.RedisError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    if step == executions.CREATE:
        create_rokt_event.apply_async(
            args=[tenant, execution_id], queue=rokt_queue(tenant), task_id=f"{execution_id}:create"
        )
    else:
        schedule_flushes(tenant)


@pipeline_task(CREATE_EVENT_TASK, base=CreateEventTask)
def create_rokt_event(self: Task, tenant: str, execution_id: str) -> None:
    """Create the event at Rokt under the global limiter; see pipeline.retry_policy."""
    rt = get_runtime()
    try:
        executions.create_step(rt, tenant, execution_id)
    except (RateLimited, ClientError) as exc:
        ex = rt.ledger.get(tenant, execution_id)
        age = _age_seconds(ex.fields.get("budgetStart") or ex.fields.get("createdAt", "")) if ex else 0.0
        attempts = int(ex.fields.get("attempts", 0)) if ex else 0
        decision = decide(exc, attempts + 1, age)
        if decision.counted:
            attempts = rt.ledger.add_attempt(tenant, execution_id)
        if not decision.retry:
            executions.give_up(rt, tenant, execution_id, CreateEventTask.stage, exc, max(attempts, 1))
        else:
            raise self.retry(exc=exc, countdown=decision.countdown, max_retries=None) from exc
    except redis.RedisError as exc:
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    schedule_flushes(tenant)


def _age_seconds(created_at: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds()
    except ValueError:
        return 0.0
