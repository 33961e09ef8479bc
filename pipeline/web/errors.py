"""Every error the web tier answers is JSON, built here and nowhere else.

Views ``raise ApiError(status, error, message, **extra)``; ``register_error_handlers`` turns it,
werkzeug's HTTP errors (404, 405, 413, ...) and any unexpected exception into
``{"error": ..., "message": ..., **extra}``. Every 503 carries ``Retry-After`` so that Journey
Builder and Rokt retry later rather than give up; an ApiError may add headers of its own (a 429's
Retry-After).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from pipeline.infra.redis_clients import refused_for_memory

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# deeper JSON is refused before anything walks it recursively (json, marshmallow, logging)
MAX_JSON_DEPTH = 32


class ApiError(Exception):
    """A deliberate error answer: `status` with `{"error", "message", **extra}` as its body."""

    def __init__(
        self, status: int, error: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def unavailable(exc: BaseException, what: str) -> ApiError:
    """The 503 for a Redis (or broker) error at `what`: `redis_full` when Redis refused the write for
    memory (logged as a warning, once a request, no traceback: a full Redis refuses thousands a
    second), else `unavailable` (logged with its traceback)."""
    if refused_for_memory(exc):
        log.warning("Redis is full (writes refused for memory): %s refused with 503", what)
        return ApiError(503, "redis_full", "Redis is full; retry later")
    log.error("%s unavailable: %s refused with 503", what, what, exc_info=exc)
    return ApiError(503, "unavailable", "store unavailable; retry")


def json_response(status: int, /, **body: Any) -> Response:
    """A JSON answer with `status`; a 503 also tells the caller when to retry."""
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when arrays/objects nest deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or a 400: not JSON, or nested deeper than MAX_JSON_DEPTH (never a
    RecursionError, which would be a 503 and a retry storm)."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ApiError(400, "invalid_json", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", "body is not JSON") from exc
    if json_depth_exceeds(value):
        raise ApiError(400, "invalid_json", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _api_error(exc: ApiError) -> Response:
    response = json_response(exc.status, error=exc.error, message=exc.message, **exc.extra)
    response.headers.update(exc.headers)
    return response


def _http_error(exc: HTTPException) -> Response:
    """404, 405, 413, ... as JSON, never werkzeug's HTML page; its headers (e.g. Allow) kept."""
    error = exc.name.lower().replace(" ", "_")
    response = json_response(exc.code or 500, error=error, message=exc.description)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected(_exc: Exception) -> Response:
    log.exception("unhandled error")
    return json_response(503, error="internal_error", message="unexpected error; retry later")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
