"""Event-job tasks: thin adapters from Celery to pipeline.journeys.event_jobs.

They run on worker-rokt's threads (the `event-jobs` queue): each step calls Rokt one execution
after another under the tenant's limiter. acks_late: a step lost with its worker is delivered
again, and does only what it had not recorded.
"""

from __future__ import annotations

import logging

import redis
from celery import Task
from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients.errors import ClientError, CredentialsRejected
from pipeline.clients.tokens import REFUSED_RETRY_SECONDS
from pipeline.delivery.retry_policy import retryable
from pipeline.infra import dispatch, keys
from pipeline.infra.queues import EVENT_JOB_ITEM_TASK, EVENT_JOB_STEP_TASK, JOURNEY_STOPPED_TASK
from pipeline.journeys import event_jobs
from pipeline.stores.ratelimit import RateLimited
from pipeline.tenancy.handles import get_runtime
from tasks.base import hold_while_disabled, pipeline_task, retry_later, schedule_flushes

log = logging.getLogger(__name__)

RETRYABLE = (
    RateLimited,
    ClientError,
    redis.RedisError,
    SQLAlchemyError,
    event_jobs.NotYet,
    event_jobs.ChunkBusy,
)


def _retry(task: Task, exc: BaseException) -> BaseException:
    """Every wait of a job is unbounded: a job is never dropped, it waits (a refusal of the
    credentials until they are fixed, the limiter, Rokt's 429/5xx, the store, queued executions)."""
    if isinstance(exc, CredentialsRejected):
        return retry_later(task, exc, after=REFUSED_RETRY_SECONDS, bounded=False)
    after = getattr(exc, "retry_after", None)
    return retry_later(task, exc, after=min(float(after), 60.0) if after else None, bounded=False)


def _unrecoverable(exc: BaseException) -> bool:
    """Rokt's permanent refusal (its credentials aside: they get fixed) or a store that refuses."""
    if isinstance(exc, CredentialsRejected):
        return False
    return isinstance(exc, ClientError | SQLAlchemyError) and not retryable(exc)


@pipeline_task(EVENT_JOB_STEP_TASK)
def event_job_step_task(self: Task, tenant: str, job_id: str, start: int, end: int = 0) -> None:
    """One step of an event job (a chunk of its executions, or its planning); sends the next."""
    hold_while_disabled(self, tenant)
    try:
        steps = event_jobs.step(get_runtime(), tenant, job_id, start, end)
    except RETRYABLE as exc:
        if _unrecoverable(exc):
            raise
        raise _retry(self, exc) from exc
    schedule_flushes(tenant)
    for next_start, next_end in steps:
        dispatch.enqueue_event_job_step(tenant, job_id, next_start, next_end)


@pipeline_task(EVENT_JOB_ITEM_TASK)
def event_job_item_task(self: Task, tenant: str, job_id: str, execution_id: str) -> None:
    """One execution of a job done again: its dead letter's replay."""
    hold_while_disabled(self, tenant)
    rt = get_runtime()
    try:
        event_jobs.replay_item(rt, tenant, job_id, execution_id)
    except RETRYABLE as exc:
        if not _unrecoverable(exc):
            raise _retry(self, exc) from exc
        job = event_jobs.get_job(rt.redis, tenant, job_id)
        if job is not None:  # refused again: a dead letter again, with Rokt's words
            event_jobs.fail_item(rt, job, execution_id, exc)
    schedule_flushes(tenant)


# Journey Builder may call stop before SFMC reports the version stopped: asked again this often,
# for five minutes; then the stop is dropped (logged), and a later stop call may ask again
STOP_CONFIRM_RETRIES, STOP_CONFIRM_SECONDS = 30, 10


@pipeline_task(JOURNEY_STOPPED_TASK)
def journey_stopped_task(self: Task, tenant: str, activity_id: str, definition_id: str, version: int) -> None:
    """A journey version stopped: cancel the activity's events not yet started, when SFMC
    confirms the stop (and that the activity is in that journey) and the activity opted in."""
    hold_while_disabled(self, tenant)
    rt = get_runtime()
    stops, asked = keys.journey_stops(tenant, activity_id), f"{definition_id}:{int(version)}"
    try:
        job = event_jobs.cancel_on_stop(rt, tenant, activity_id, definition_id, version)
    except event_jobs.StopNotConfirmed as exc:
        if self.request.retries < STOP_CONFIRM_RETRIES:
            raise self.retry(
                exc=exc, countdown=STOP_CONFIRM_SECONDS, max_retries=STOP_CONFIRM_RETRIES
            ) from exc
        log.warning("journey stop of activity %s (%s) dropped: %s", activity_id, tenant, exc)
        rt.redis.hdel(stops, asked)  # a later stop call may ask again
        return
    except event_jobs.NotThisJourney as exc:
        log.warning("journey stop of activity %s (%s) refused: %s", activity_id, tenant, exc)
        rt.redis.hdel(stops, asked)
        return
    except RETRYABLE as exc:
        if _unrecoverable(exc):
            raise
        raise _retry(self, exc) from exc
    rt.redis.hset(stops, asked, "done")
    if job is not None and job.state == event_jobs.JobState.PLANNING:
        dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
