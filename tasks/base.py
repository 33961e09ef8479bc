"""Shared task defaults, checked (Celery silently accepts misspelt task options), and the
one retry idiom every task uses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import Task, signals
from celery.exceptions import Retry

from pipeline import dispatch
from pipeline.flush import FLUSH_DELAY_SECONDS, claim_flush_slot
from pipeline.retry_policy import countdown
from pipeline.runtime import get_runtime
from pipeline.settings import get_settings
from pipeline.vocabulary import OutboxKind, TenantStatus
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


def pipeline_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Task]:
    unknown = set(options) - _ALLOWED_OPTIONS
    if unknown:
        raise TypeError(f"unknown task options for {name}: {sorted(unknown)}")
    return app.task(name=name, **{**_DEFAULTS, **options})


def retry_later(task: Task, exc: BaseException, *, after: float | None = None, bounded: bool = True) -> Retry:
    """Celery's retry of `task` after a retryable error, at the policy's countdown (or `after`).

    `bounded=False` when the domain bounds the retries itself (the ledger's attempts and time
    budget), or when nothing may ever be dropped (SFMC writes). Celery reads `max_retries=None`
    in `retry()` as "the task's default" (20), not as unbounded, so one more is allowed each time.
    """
    wait = countdown(exc, task.request.retries) if after is None else after
    max_retries = None if bounded else task.request.retries + 1
    return task.retry(exc=exc, countdown=wait, max_retries=max_retries)


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
    tenant: str, kinds: Iterable[OutboxKind] = (OutboxKind.STATUS_ROWS, OutboxKind.RELEASES)
) -> None:
    """Let rows gather for a moment, then flush them in batches (one scheduled flush per kind)."""
    rt = get_runtime()
    for kind in kinds:
        if rt.outbox(tenant, kind).backlog() and claim_flush_slot(rt, tenant, kind):
            dispatch.schedule_flush(tenant, kind, countdown=FLUSH_DELAY_SECONDS)


@signals.setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    logging.basicConfig(
        level=get_settings().log_level,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
