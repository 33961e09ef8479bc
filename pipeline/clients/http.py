"""What both vendor clients share: a session without hidden retries and error mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from pipeline.clients.errors import (
    ClientError,
    PermanentError,
    RetryableError,
    Throttled,
    UnknownOutcome,
    retry_after_seconds,
)


def new_session(user_agent: str = "rokt-sfmc/0.1") -> requests.Session:
    """One session per client; the adapter never retries (the Celery task owns retries)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """Perform one request; network failures become typed, retryable errors."""
    try:
        return session.request(method, url, **kwargs)
    except requests.ConnectTimeout as exc:
        raise RetryableError(f"connect timeout: {method} {_path(url)}") from exc
    except requests.ReadTimeout as exc:
        raise UnknownOutcome(f"read timeout: {method} {_path(url)}") from exc
    except requests.ConnectionError as exc:
        raise RetryableError(f"connection failed: {method} {_path(url)}") from exc
    except requests.RequestException as exc:
        raise RetryableError(f"request failed: {method} {_path(url)}: {type(exc).__name__}") from exc


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


def body_excerpt(response: requests.Response, limit: int = 300) -> str:
    return (response.text or "").strip().replace("\n", " ")[:limit]


def raise_for_status(
    response: requests.Response,
    what: str,
    *,
    default_retry_after: float,
    describe: Callable[[requests.Response], str] = body_excerpt,
) -> None:
    """Map a non-2xx answer to the error class the task acts on (401 is the caller's job)."""
    status = response.status_code
    if status < 300:
        return
    detail = f"{what}: HTTP {status}: {describe(response)}"
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"), default_retry_after)
        raise Throttled(detail, retry_after=wait)
    if status >= 500 or status in (408, 425):
        raise RetryableError(detail, status=status)
    if 400 <= status < 500:
        raise PermanentError(detail, status=status)
    raise ClientError(detail, status=status)
