"""Shared task defaults, checked: Celery silently accepts misspelt task options."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task, signals

from pipeline.flush import FLUSH_DELAY_SECONDS, claim_flush_slot
from pipeline.outbox import RELEASES, STATUS_ROWS
from pipeline.runtime import get_runtime
from pipeline.settings import get_settings
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


def schedule_flushes(tenant: str, kinds: tuple[str, ...] = (STATUS_ROWS, RELEASES)) -> None:
    """Let rows gather for a moment, then flush them in batches (one scheduled flush per kind)."""
    from tasks.flushing import FLUSH_TASKS

    rt = get_runtime()
    for kind in kinds:
        if rt.outbox(tenant, kind).backlog() and claim_flush_slot(rt, tenant, kind):
            FLUSH_TASKS[kind].apply_async(args=[tenant], countdown=FLUSH_DELAY_SECONDS)


@signals.setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    logging.basicConfig(
        level=get_settings().log_level,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
