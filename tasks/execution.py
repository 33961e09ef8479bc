"""Per-execution tasks: thin adapters from Celery to pipeline.journeys.executions.

create_rokt_event_task runs on the threads pool of worker-rokt (many Rokt calls in flight per
process; render and the rest stay on prefork). Celery's threads pool enforces no time limit
(task_time_limit / soft_time_limit are prefork signals): what bounds a Rokt call there is the
client's own timeouts (HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT), the limiter's sleep budget
(ROKT_LIMIT_SLEEP_MS) and the token lock's wait (10 s).
"""

from __future__ import annotations

import random
from typing import Any

import redis
from celery import Task

from pipeline.clients.errors import ClientError
from pipeline.delivery.retry_policy import TASK_RETRY_MAX_COUNTDOWN_SECONDS
from pipeline.infra.queues import CREATE_EVENT_TASK, RENDER_TASK, ROKT_WAIT_QUEUE, rokt_queue
from pipeline.journeys import executions
from pipeline.stores.ratelimit import RateLimited, holding_ticket
from pipeline.tenancy.handles import get_runtime
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
def render_event_task(self: Task, tenant: str, execution_id: str) -> None:
    """Render the contact's event from its template; hands over to create_rokt_event_task."""
    hold_while_disabled(self, tenant)
    try:
        must_send = executions.render_step(get_runtime(), tenant, execution_id)
    except redis.RedisError as exc:
        raise retry_later(self, exc) from exc
    if must_send:
        create_rokt_event_task.apply_async(
            args=[tenant, execution_id], queue=rokt_queue(tenant), task_id=f"{execution_id}:create"
        )
    else:
        schedule_flushes(tenant)


# spread of the returns of tasks sent back to their limiter tickets (the tickets themselves are
# one emission interval apart, so this only keeps equal countdowns from landing in one instant)
TICKET_JITTER_SECONDS = 0.005


@pipeline_task(CREATE_EVENT_TASK, base=CreateEventTask)
def create_rokt_event_task(self: Task, tenant: str, execution_id: str, ticket: float = 0.0) -> None:
    """Create the event at Rokt under the global limiter; the policy is executions.after_failed_call.

    A slot the limiter cannot give within ROKT_LIMIT_SLEEP_MS comes as a ticket (a place in the
    account's line): the task is sent back to run at it, carrying the ticket (pipeline.stores.ratelimit),
    through the `rokt-wait` queue: sent back to its own queue, it would reach a worker only after
    that queue's backlog, long after its slot.
    """
    hold_while_disabled(self, tenant)
    rt = get_runtime()
    try:
        with holding_ticket(ticket):
            executions.create_step(rt, tenant, execution_id)
    except (RateLimited, ClientError) as exc:
        decision = executions.after_failed_call(rt, tenant, execution_id, exc)
        if decision.retry and isinstance(exc, RateLimited) and exc.ticket:
            # back early when the line is longer than a countdown may be: it keeps its place
            longest = min(exc.retry_after, TASK_RETRY_MAX_COUNTDOWN_SECONDS)
            wait = longest + random.uniform(0, TICKET_JITTER_SECONDS)
            retry = self.retry(
                exc=exc,
                countdown=wait,
                max_retries=self.request.retries + 1,
                kwargs={"ticket": exc.ticket},
                queue=ROKT_WAIT_QUEUE,  # not behind the backlog it came from
            )
            raise retry from exc
        if decision.retry:
            raise retry_later(self, exc, after=decision.countdown, bounded=False) from exc
    except redis.RedisError as exc:
        raise retry_later(self, exc) from exc
    schedule_flushes(tenant)
