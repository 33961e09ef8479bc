"""Per-execution tasks: thin adapters from Celery to pipeline.executions."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from pipeline import executions
from pipeline.clients.errors import ClientError
from pipeline.queues import CREATE_EVENT_TASK, RENDER_TASK, rokt_queue
from pipeline.ratelimit import RateLimited
from pipeline.runtime import get_runtime
from pipeline.vocabulary import Stage
from tasks.base import hold_while_disabled, pipeline_task, retry_later, schedule_flushes


class ExecutionTask(Task):
    """A task whose args are (tenant, execution_id); an unexpected failure ends it `failed`."""

    stage = Stage.PIPELINE

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        tenant, execution_id = args[0], args[1]
        executions.give_up(get_runtime(), tenant, execution_id, self.stage, exc, self.request.retries + 1)
        schedule_flushes(tenant)


class RenderTask(ExecutionTask):
    stage = Stage.RENDER


class CreateEventTask(ExecutionTask):
    stage = Stage.CREATE_EVENT


@pipeline_task(RENDER_TASK, base=RenderTask)
def render_event(self: Task, tenant: str, execution_id: str) -> None:
    """Render the contact's event from its template; hands over to create_rokt_event."""
    hold_while_disabled(self, tenant)
    try:
        must_send = executions.render_step(get_runtime(), tenant, execution_id)
    except redis.RedisError as exc:
        raise retry_later(self, exc) from exc
    if must_send:
        create_rokt_event.apply_async(
            args=[tenant, execution_id], queue=rokt_queue(tenant), task_id=f"{execution_id}:create"
        )
    else:
        schedule_flushes(tenant)


@pipeline_task(CREATE_EVENT_TASK, base=CreateEventTask)
def create_rokt_event(self: Task, tenant: str, execution_id: str) -> None:
    """Create the event at Rokt under the global limiter; the policy is executions.after_failed_call."""
    hold_while_disabled(self, tenant)
    rt = get_runtime()
    try:
        executions.create_step(rt, tenant, execution_id)
    except (RateLimited, ClientError) as exc:
        decision = executions.after_failed_call(rt, tenant, execution_id, exc)
        if decision.retry:
            raise retry_later(self, exc, after=decision.countdown, bounded=False) from exc
    except redis.RedisError as exc:
        raise retry_later(self, exc) from exc
    schedule_flushes(tenant)
