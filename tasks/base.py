"""Shared task defaults, checked, and the one retry idiom every task uses.

Checked because Celery silently accepts misspelt task options."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import Task, signals
from celery.exceptions import Reject, Retry

from pipeline.delivery.flush import FLUSH_DELAY_SECONDS, claim_flush_slots
from pipeline.delivery.retry_policy import REDIS_FULL_WAIT_SECONDS, countdown, waits_for_memory
from pipeline.infra import dispatch, logsetup, queues
from pipeline.settings import get_settings
from pipeline.tenancy.handles import get_runtime
from pipeline.vocabulary import OutboxKind, Stage, TenantStatus
from tasks import app

_ALLOWED_OPTIONS = {
    "bind",
    "max_retries",
    "default_retry_delay",
    "base",
    "acks_late",
    "soft_time_limit",
    "time_limit",
}
# default_retry_delay is also the delay of task_retry_on_worker_lost (Celery's default: 180 s);
# max_retries bounds how often a task whose pool process keeps dying is sent again.
_DEFAULTS: dict[str, Any] = {"bind": True, "max_retries": 20, "default_retry_delay": 2, "acks_late": True}


log = logging.getLogger(__name__)


def pipeline_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Task]:
    unknown = set(options) - _ALLOWED_OPTIONS
    if unknown:
        raise TypeError(f"unknown task options for {name}: {sorted(unknown)}")
    register = app.task(name=name, **{**_DEFAULTS, **options})
    return lambda run: register(waiting_for_memory(run))


# the pauses of a task waiting for Redis to accept writes again: short first (a spike), then 2 s
REDIS_FULL_PAUSES = (0.25, 0.5, 1.0, 2.0)


def waiting_for_memory(
    run: Callable[..., Any],
    *,
    limit: float = REDIS_FULL_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[..., Any]:
    """`run` (a bound task's function), run again in place while Redis refuses its writes for memory.

    Why in place: a full Redis refuses the retry's publish too, and Celery drops a message whose
    retry could not be sent (`Reject(requeue=False)`); waiting here keeps the message unacknowledged,
    so a worker lost meanwhile loses nothing. A refused write did nothing (a script is refused
    before its first write), and every step is idempotent, so running again is safe. After `limit`
    seconds the message is requeued (pipeline/infra/kombu_redis_full.py keeps it unacknowledged while
    Redis still refuses that too): never `failed`, never dropped."""

    @functools.wraps(run)
    def waiting(task: Task, *args: Any, **kwargs: Any) -> Any:
        # the runs count too, not only the pauses: a flush run again for 30 s each time would
        # reach task_soft_time_limit and be acknowledged as failed instead of requeued
        started, pauses = clock(), 0
        while True:
            try:
                return run(task, *args, **kwargs)
            except Retry:
                raise
            except Exception as exc:
                if not waits_for_memory(exc):
                    raise
                waited = clock() - started
                if waited >= limit:
                    log.warning("Redis still full after %.0f s: message requeued", waited)
                    raise Reject(exc, requeue=True) from exc
                pause = REDIS_FULL_PAUSES[min(pauses, len(REDIS_FULL_PAUSES) - 1)]
                if pauses == 0:
                    log.warning("Redis is full (writes refused for memory): waiting in place to run again")
                sleep(pause)
                pauses += 1

    return waiting


def retry_later(task: Task, exc: BaseException, *, after: float | None = None, bounded: bool = True) -> Retry:
    """Celery's retry of `task` after a retryable error, at the policy's countdown (or `after`).

    `bounded=False` when the domain bounds the retries itself (the ledger's attempts and time
    budget), or when nothing may ever be dropped (SFMC writes). Celery reads `max_retries=None`
    in `retry()` as "the task's default" (20), not as unbounded, so one more is allowed each time.
    """
    if waits_for_memory(exc):  # Redis would refuse the retry's message too: wait in place (above)
        raise exc
    wait = countdown(exc, task.request.retries) if after is None else after
    max_retries = None if bounded else task.request.retries + 1
    # a limiter ticket (create_rokt_event_task's) is a place in line for one moment: a retry for any
    # other reason comes back later and joins the line afresh, never ahead of those in it
    sent_with = getattr(task.request, "kwargs", None) or {}
    kwargs = {name: value for name, value in sent_with.items() if name != "ticket"}
    return task.retry(exc=exc, countdown=wait, max_retries=max_retries, kwargs=kwargs)


# how long the work of a disabled tenant waits before it looks again
DISABLED_TENANT_HOLD_SECONDS = 30.0


class TenantDisabled(Exception):
    """The tenant was disabled after this task was queued: it waits, it is not dropped."""


def hold_while_disabled(task: Task, tenant: str) -> None:
    """Send the task back to wait (unbounded) while its tenant is disabled. An unknown tenant
    goes on and fails where its settings are needed, as before."""
    config = get_runtime().registry.get(tenant)
    if config is not None and config.status == TenantStatus.DISABLED:
        exc = TenantDisabled(f"tenant {tenant} is disabled")
        raise retry_later(task, exc, after=DISABLED_TENANT_HOLD_SECONDS, bounded=False)


def schedule_flushes(
    tenant: str,
    kinds: Iterable[OutboxKind] = (OutboxKind.STATUS_ROWS, OutboxKind.RELEASES, OutboxKind.HISTORY),
) -> None:
    """Let rows gather for a moment, then flush them in batches (one scheduled flush per kind;
    one round trip to find which kinds need one)."""
    for kind in claim_flush_slots(get_runtime(), tenant, kinds):
        dispatch.schedule_flush(tenant, kind, countdown=FLUSH_DELAY_SECONDS)


def celery_process(argv: list[str] | None = None) -> str:
    """ "beat" for `celery ... beat`, else "worker" (the setup_logging signal does not say)."""
    return "beat" if "beat" in (sys.argv if argv is None else argv)[1:] else "worker"


@signals.setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    """Connected, so Celery configures nothing itself (nor redirects stdout): LOG_FORMAT lines
    at LOG_LEVEL, redacted, with each task's context (below)."""
    logsetup.configure_logging(get_settings(), celery_process())


# the stage a task works at (as dead letters name it), and the id its second argument is
TASK_STAGES: dict[str, Stage] = {
    queues.RENDER_TASK: Stage.RENDER,
    queues.CREATE_EVENT_TASK: Stage.CREATE_EVENT,
    queues.WEBHOOK_TASK: Stage.WEBHOOK,
    queues.FLUSH_STATUS_TASK: Stage.RECORD_STATUS,
    queues.FLUSH_SUBSCRIPTIONS_TASK: Stage.RECORD_SUBSCRIPTION,
    queues.FLUSH_RELEASES_TASK: Stage.RELEASE,
    queues.RECONCILE_TASK: Stage.CONFIRM,
}
TASK_IDS: dict[str, tuple[str, str]] = {  # task -> (its argument's name, the log field)
    queues.RENDER_TASK: ("execution_id", "executionId"),
    queues.CREATE_EVENT_TASK: ("execution_id", "executionId"),
    queues.WEBHOOK_TASK: ("event_id", "eventId"),
}
# the log context token of each running task, per thread: a threads-pool worker (the Rokt stage)
# runs tasks side by side, and a redelivered task may run beside its own id; the prerun and
# postrun signals of a task are sent from the thread that runs it
_task_contexts = threading.local()


def _contexts() -> dict[str, contextvars.Token]:
    if not hasattr(_task_contexts, "tokens"):
        _task_contexts.tokens = {}
    return _task_contexts.tokens


def task_log_context(name: str, task_id: str | None, args: Any, kwargs: Any) -> dict[str, str | None]:
    """The log context of one run: task name and id, tenant, executionId or eventId, stage."""
    args = list(args or ())
    kwargs = dict(kwargs or {})
    tenant = kwargs.get("tenant", args[0] if args else None)
    fields: dict[str, str | None] = {
        "taskId": task_id,
        "task": name,
        "tenant": tenant if isinstance(tenant, str) else None,
        "stage": TASK_STAGES.get(name),
    }
    if name in TASK_IDS:
        arg_name, field_name = TASK_IDS[name]
        value = kwargs.get(arg_name, args[1] if len(args) > 1 else None)
        fields[field_name] = value if isinstance(value, str) else None
    return fields


@signals.task_prerun.connect
def _bind_task_context(
    task_id: str | None = None, task: Task | None = None, args=None, kwargs=None, **_: Any
):
    fields = task_log_context(getattr(task, "name", "") or "", task_id, args, kwargs)
    _contexts()[task_id or ""] = logsetup.replace(**fields)
    if fields["tenant"]:
        # its secrets stay out of every line this task logs (the registry caches it); with no
        # runtime or no Redis the task itself will say so
        with contextlib.suppress(Exception):
            logsetup.remember_tenant_secrets(get_runtime().registry.get(fields["tenant"]))


@signals.task_postrun.connect
def _unbind_task_context(task_id: str | None = None, **_: Any) -> None:
    token = _contexts().pop(task_id or "", None)
    if token is not None:
        logsetup.unbind(token)
