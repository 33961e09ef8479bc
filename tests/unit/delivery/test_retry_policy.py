"""The retry policy's decisions, over every error class a task can meet."""

from __future__ import annotations

import pytest
import redis

from pipeline.clients.errors import (
    ClientError,
    PermanentError,
    RetryableError,
    Throttled,
    Unauthorized,
    UnknownOutcome,
)
from pipeline.delivery.retry_policy import (
    MAX_FAILED_ATTEMPTS,
    STORE_RETRY_MAX_COUNTDOWN_SECONDS,
    TASK_RETRY_MAX_COUNTDOWN_SECONDS,
    TIME_BUDGET_SECONDS,
    countdown,
    decide,
    retryable,
)
from pipeline.stores.ratelimit import RateLimited

# error, retried at first?, counted as a failed attempt?, countdown range for attempt 1
CASES = [
    ("429 with Retry-After", Throttled("429", retry_after=7), True, False, (7, 8)),
    ("429 without Retry-After (client default)", Throttled("429", retry_after=1), True, False, (1, 2)),
    ("our limiter", RateLimited(2.5), True, False, (2.5, 3.5)),
    ("5xx", RetryableError("503", status=503), True, True, (1, 2)),
    ("timeout", UnknownOutcome("read timeout"), True, True, (1, 2)),
    ("401 after a refresh", Unauthorized("401", status=401), True, True, (1, 2)),
    ("400", PermanentError("400", status=400), False, True, (0, 0)),
    ("3xx", ClientError("302", status=302), False, True, (0, 0)),
]


@pytest.mark.parametrize(("name", "exc", "retry", "counted", "window"), CASES, ids=[c[0] for c in CASES])
def test_decide_for_a_first_failure(name, exc, retry, counted, window):
    decision = decide(exc, attempts=1, age_seconds=5)
    assert decision.retry is retry
    assert decision.counted is counted
    assert window[0] <= decision.countdown <= window[1]


@pytest.mark.parametrize(("name", "exc", "retry", "counted", "window"), CASES, ids=[c[0] for c in CASES])
def test_nothing_retries_past_the_time_budget(name, exc, retry, counted, window):
    assert decide(exc, attempts=1, age_seconds=TIME_BUDGET_SECONDS + 1).retry is False


def test_counted_errors_stop_at_the_last_attempt_and_throttling_never_counts():
    error = RetryableError("503", status=503)
    assert decide(error, MAX_FAILED_ATTEMPTS - 1, 5).retry is True
    assert decide(error, MAX_FAILED_ATTEMPTS, 5).retry is False
    assert decide(Throttled("429", retry_after=1), MAX_FAILED_ATTEMPTS * 3, 5).retry is True


def test_countdowns_stay_below_the_visibility_timeout():
    import celeryconfig

    longest = max(
        countdown(RetryableError("x"), 30),
        countdown(Throttled("x", retry_after=10**6), 0),
        decide(RetryableError("x"), MAX_FAILED_ATTEMPTS - 1, 0).countdown,
    )
    assert longest <= TASK_RETRY_MAX_COUNTDOWN_SECONDS + 1
    longest_wait = TASK_RETRY_MAX_COUNTDOWN_SECONDS + 1 + celeryconfig.task_time_limit
    assert longest_wait < celeryconfig.VISIBILITY_TIMEOUT


def test_backoff_grows_with_the_attempt():
    assert 0.5 <= countdown(RetryableError("x"), 0) <= 1
    assert 4 <= countdown(RetryableError("x"), 3) <= 8
    assert countdown(redis.ConnectionError("down"), 10) <= TASK_RETRY_MAX_COUNTDOWN_SECONDS


def test_a_history_store_back_from_an_outage_is_tried_again_within_its_own_cap():
    from sqlalchemy.exc import OperationalError

    down = OperationalError("INSERT", {}, Exception("connection refused"))
    assert STORE_RETRY_MAX_COUNTDOWN_SECONDS / 2 <= countdown(down, 10) <= STORE_RETRY_MAX_COUNTDOWN_SECONDS
    assert countdown(RetryableError("x"), 10) > STORE_RETRY_MAX_COUNTDOWN_SECONDS  # vendors back off longer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (Throttled("429", retry_after=1), True),
        (RetryableError("503"), True),
        (UnknownOutcome("timeout"), True),
        (Unauthorized("401"), True),
        (RateLimited(1.0), True),
        (redis.ConnectionError("down"), True),
        (redis.TimeoutError("slow"), True),
        (PermanentError("400"), False),
        (ClientError("302"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retryable(exc, expected):
    assert retryable(exc) is expected


# -- a full Redis (maxmemory, noeviction) ---------------------------------------------------------

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def _wrapped_by_kombu() -> Exception:
    """A publish Redis refused, as kombu raises it (its OperationalError, the OOM as its cause)."""
    from kombu.exceptions import OperationalError as KombuOperationalError

    try:
        try:
            raise redis.exceptions.OutOfMemoryError(OOM)
        except redis.RedisError as exc:
            raise KombuOperationalError(f"Command # 1 (LLEN q) of pipeline caused error: {exc}") from exc
    except KombuOperationalError as wrapped:
        return wrapped


def _rejected_by_celery() -> Exception:
    """Celery's `retry()` whose publish Redis refused: `Reject(exc, requeue=False)`."""
    from celery.exceptions import Reject

    return Reject(_wrapped_by_kombu(), requeue=False)


@pytest.mark.parametrize(
    "exc",
    [
        redis.exceptions.OutOfMemoryError(OOM),
        redis.ResponseError("command not allowed when used memory > 'maxmemory'."),  # queued in MULTI
        _wrapped_by_kombu(),
        _rejected_by_celery(),
    ],
    ids=["oom", "refused-in-multi", "kombu-wrapped", "celery-reject"],
)
def test_a_write_refused_for_memory_means_wait_in_place(exc):
    from pipeline.delivery.retry_policy import waits_for_memory

    assert waits_for_memory(exc) and retryable(exc)


@pytest.mark.parametrize(
    "exc",
    [redis.ConnectionError("down"), redis.ResponseError("WRONGTYPE"), PermanentError("400"), ValueError("x")],
)
def test_other_errors_do_not_wait_for_memory(exc):
    from pipeline.delivery.retry_policy import waits_for_memory

    assert not waits_for_memory(exc)
