"""Provisioning tasks: the tenant's data extensions in SFMC (App Settings' Install button, the CLI)."""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from pipeline.clients.errors import ClientError
from pipeline.infra.queues import INSTALL_DATA_EXTENSIONS_TASK
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions import dataextensions
from pipeline.tenancy.handles import get_runtime
from tasks.base import pipeline_task, retry_later

MAX_INSTALL_RETRIES = 10  # then the page shows `failed` with the last reason


@pipeline_task(INSTALL_DATA_EXTENSIONS_TASK, max_retries=MAX_INSTALL_RETRIES)
def install_data_extensions_task(self: Task, tenant: str) -> dict[str, Any]:
    """Retry what SFMC may accept later (throttling, 5xx, timeouts), a bounded number of times;
    a refusal (an Error result, bad credentials) ends the install `failed` at once."""
    rt = get_runtime()
    try:
        return dataextensions.install(rt, tenant)
    except (ClientError, RateLimited, redis.RedisError) as exc:
        retryable = not isinstance(exc, ClientError) or exc.retryable
        if retryable and self.request.retries < MAX_INSTALL_RETRIES:
            raise retry_later(self, exc) from exc
        dataextensions.record_failure(rt.redis, tenant, getattr(exc, "reason", None) or str(exc))
    except LookupError:  # the tenant is gone (UnknownTenant)
        dataextensions.record_failure(rt.redis, tenant, f"unknown tenant {tenant}")
    except Exception as exc:  # a bug or an answer we do not understand: shown, never stuck "running"
        dataextensions.record_failure(rt.redis, tenant, f"unexpected error ({type(exc).__name__})")
        raise
    return dataextensions.install_progress(rt.redis, tenant)
