"""The retry policy: one table, used by the tasks and printed in docs/retries.md (`make docs`).

Throttling is a delay, not a failure: it does not count against the attempts, only against
the execution's time budget. Everything else retryable backs off exponentially with jitter
and is counted. Countdowns stay below Celery's visibility timeout (celeryconfig), or a
waiting retry would be re-delivered and run twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import redis
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pipeline.clients.errors import ClientError
from pipeline.clients.tokens import REFUSED_RETRY_SECONDS
from pipeline.infra.redis_clients import refused_for_memory
from pipeline.stores.ratelimit import RateLimited

MAX_FAILED_ATTEMPTS = 8  # retryable vendor errors per execution, then failed + dead letter
TIME_BUDGET_SECONDS = 3600  # an execution may be delayed (throttling included) this long
TASK_RETRY_MAX_COUNTDOWN_SECONDS = 300  # < celeryconfig.VISIBILITY_TIMEOUT - task_time_limit
# a history store back from an outage is written to within this long: an attempt while it is down
# costs one refused connection, and the rows it holds up wait in their outbox meanwhile
STORE_RETRY_MAX_COUNTDOWN_SECONDS = 15
# a task whose Redis write is refused for memory waits in place this long (its message stays
# unacknowledged, nothing is published: a retry could not be), well within task_soft_time_limit
REDIS_FULL_WAIT_SECONDS = 30
BUDGET = f"{TIME_BUDGET_SECONDS // 3600}-hour" if TIME_BUDGET_SECONDS % 3600 == 0 else f"{TIME_BUDGET_SECONDS} s"

# vendor/part, condition, error class, what happens
RETRY_TABLE: list[tuple[str, str, str, str]] = [
    (
        "Rokt",
        "429",
        "throttled",
        f"wait `Retry-After` (default 1 s) and pause the tenant's shared bucket for everyone; not counted; within the {BUDGET} budget",
    ),
    (
        "Rokt",
        "5xx, 408, 425, connect error/timeout",
        "retryable",
        f"exponential backoff with jitter (2^n s, at most {TASK_RETRY_MAX_COUNTDOWN_SECONDS} s); {MAX_FAILED_ATTEMPTS} attempts within the {BUDGET} budget, then `failed` + dead letter",
    ),
    (
        "Rokt",
        "read timeout after the request was sent",
        "unknown_outcome",
        "retried like 5xx with the same `eventId`: Rokt keeps one event per id, or refuses the repeat (below)",
    ),
    (
        "Rokt",
        "401",
        "unauthorized",
        "token refreshed and the call repeated once at once; a second 401 is retried like 5xx",
    ),
    (
        "Rokt",
        "409, or 400 `DuplicateEventId`",
        "(success)",
        "the event exists: our `eventId` is one per execution, so an earlier attempt whose answer was "
        "lost created it; `accepted`, unless what an earlier attempt sent differs (rendered again "
        "since from an edited template or other subscriptions): then `failed` + dead letter, "
        "saying the calendar shows the earlier version. Whether and how Rokt refuses a taken `eventId` is not "
        "documented (docs/vendors/rokt-calendar-api.md §7); the simulator's 400 code and HTTP's 409 are handled, and both "
        "behaviours tested (`lose_next_answers`, `reject_duplicate_events` at the simulator)",
    ),
    (
        "Rokt",
        "other 4xx (400 validation, 404)",
        "permanent",
        "`failed` with Rokt's reason + dead letter; no retry",
    ),
    (
        "SFMC",
        "429 errorcode 50100",
        "throttled",
        "wait `Retry-After` (5 s) and pause the tenant's SFMC bucket; the batch stays pending",
    ),
    (
        "History store",
        "down, unreachable, pool exhausted",
        "retryable",
        "the batch waits in its outbox, retried with backoff (at most "
        f"{STORE_RETRY_MAX_COUNTDOWN_SECONDS} s), unbounded; the records stay whole in Redis meanwhile",
    ),
    (
        "History store",
        "refuses a row (a value it cannot hold)",
        "permanent",
        "the batch is written row by row; the refused row alone ends in the dead-letter store "
        "(`record_history`), its record whole in Redis; a replay writes it as it is then",
    ),
    ("SFMC", "429 errorcode 50200 (temporarily blocked)", "throttled", "wait 60 s; the batch stays pending"),
    (
        "SFMC",
        "5xx, timeouts, 400 errorcode 10006 without additionalErrors",
        "retryable",
        f"backoff with jitter (at most {TASK_RETRY_MAX_COUNTDOWN_SECONDS} s), unbounded: rows and releases are never dropped",
    ),
    ("SFMC", "401", "unauthorized", "token refreshed and the call repeated once at once"),
    (
        "SFMC",
        "token refused (400/401: client secret changed or mistyped, refresh token revoked)",
        "permanent (credentials rejected)",
        'no row\'s fault, nothing is dead-lettered: the tenant shows "credentials rejected" (App Settings, '
        "`tenants check`, `status`, `RsfTenantReconnectNeeded`); rows and releases wait in their outbox, "
        f"webhooks retry every {REFUSED_RETRY_SECONDS:.0f} s, a token is asked for at most once per "
        f"{REFUSED_RETRY_SECONDS:.0f} s; a Save of new credentials or a sign-in sends everything",
    ),
    ("SFMC", "other 4xx", "permanent", "the batch is bisected; only the bad row/member is dead-lettered"),
    (
        "Redis",
        "unreachable, in the web tier",
        "-",
        "503 with `Retry-After: 5`: Journey Builder and Rokt retry; nothing was claimed",
    ),
    (
        "Redis",
        "full (a write refused at `maxmemory`, `noeviction`), in the web tier",
        "-",
        "503 `redis_full` with `Retry-After: 5`: Journey Builder and Rokt retry; nothing was claimed "
        "(the claim is one script, refused before its first write)",
    ),
    (
        "Redis",
        "full, in a task",
        "wait",
        f"the task waits in place (its message unacknowledged) and runs again, for up to {REDIS_FULL_WAIT_SECONDS} s; "
        "then its message is requeued, or, while Redis still refuses that, left to the visibility timeout and "
        "the reconciler; not counted, never `failed`. The worker pauses fetching and stays up",
    ),
    (
        "Redis",
        "unreachable, in a task",
        "retryable",
        "backoff, up to 20 retries; the worker reconnects by itself",
    ),
    (
        "Worker",
        "pool process killed (SIGKILL, OOM)",
        "-",
        "the task is sent again after 2 s (`task_retry_on_worker_lost`), at most 20 times",
    ),
    (
        "Worker",
        "whole worker lost",
        "-",
        "its unacknowledged messages return after the visibility timeout (900 s); the reconciler re-drives stuck executions sooner",
    ),
]


@dataclass(frozen=True)
class Decision:
    retry: bool
    countdown: float = 0.0
    counted: bool = True  # counts as a failed attempt


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter, capped below the visibility timeout."""
    return min(TASK_RETRY_MAX_COUNTDOWN_SECONDS, 2 ** max(0, attempt)) * random.uniform(0.5, 1.0)


def requested_wait(exc: BaseException) -> float | None:
    """Seconds the vendor (429 Retry-After) or our own limiter asked us to wait, if any."""
    return getattr(exc, "retry_after", None)


def countdown(exc: BaseException, attempt: int) -> float:
    """When to retry after any retryable error: the requested wait plus jitter (so the
    waiting workers do not return at one instant), else exponential backoff."""
    wait = requested_wait(exc)
    if wait is not None:
        return min(wait, TASK_RETRY_MAX_COUNTDOWN_SECONDS) + random.uniform(0, 1)
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return min(STORE_RETRY_MAX_COUNTDOWN_SECONDS, backoff(attempt))
    return backoff(attempt)


def retryable(exc: BaseException) -> bool:
    """Whether the same work may succeed later: a retryable vendor error, our own limiter's
    wait, Redis unavailable or full (also when the broker's client wraps it), or the history store
    unavailable (the worker reconnects by itself)."""
    if isinstance(exc, ClientError):
        return exc.retryable
    if refused_for_memory(exc):
        return True
    return isinstance(exc, (RateLimited, redis.RedisError, OperationalError, InterfaceError, PoolTimeout))


def waits_for_memory(exc: BaseException) -> bool:
    """Whether `exc` means "Redis is full": wait in place and run again, neither publish a retry
    (Redis would refuse it, and Celery drops a message whose retry could not be sent) nor give up."""
    return refused_for_memory(exc)


def decide(exc: Exception, attempts: int, age_seconds: float) -> Decision:
    """For an execution's Rokt call: `attempts` failed attempts so far (this one included)."""
    if isinstance(exc, ClientError) and not exc.retryable:
        return Decision(retry=False)
    if age_seconds > TIME_BUDGET_SECONDS:
        return Decision(retry=False)
    if requested_wait(exc) is not None:
        return Decision(retry=True, countdown=countdown(exc, attempts), counted=False)
    if attempts >= MAX_FAILED_ATTEMPTS:
        return Decision(retry=False)
    return Decision(retry=True, countdown=backoff(attempts))
