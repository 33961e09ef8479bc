"""Typed client errors: tasks decide retry or not from the class, never from strings."""

from __future__ import annotations

import email.utils
import time

from pipeline.vocabulary import ErrorClass


class ClientError(Exception):
    """Root of every vendor error. `reason` is safe to store and show (never a secret)."""

    retryable = False
    error_class = ErrorClass.CLIENT_ERROR

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class RetryableError(ClientError):
    """5xx, connection failure, timeout: the same request may succeed later."""

    retryable = True
    error_class = ErrorClass.RETRYABLE


class UnknownOutcome(RetryableError):
    """The request was sent but no answer came back: retry with the same idempotency key."""

    error_class = ErrorClass.UNKNOWN_OUTCOME


class Throttled(RetryableError):
    """429: wait `retry_after` seconds (for the whole account, not just this request)."""

    error_class = ErrorClass.THROTTLED

    def __init__(self, reason: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class Unauthorized(RetryableError):
    """401 even after one token refresh: credentials or token cache problem."""

    error_class = ErrorClass.UNAUTHORIZED


class PermanentError(ClientError):
    """4xx other than 401/429: the request itself is wrong; retrying cannot help."""

    error_class = ErrorClass.PERMANENT


class CredentialsRejected(PermanentError):
    """The vendor refused our client credentials for a token: every call of the tenant fails
    alike, so a loop over many items stops at the first."""


class EventNotFound(PermanentError):
    """Rokt does not hold this eventId (never created, or deleted already). Permanent for the
    call; a job that deletes or removes may count it as done, one that updates may not."""

    def __init__(self, reason: str, *, event_id: str, status: int | None = None) -> None:
        super().__init__(reason, status=status)
        self.event_id = event_id


def retry_after_seconds(value: str | None, default: float) -> float:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return default
