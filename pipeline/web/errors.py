"""Every error the web tier answers is JSON, built here and nowhere else.

Views ``raise ApiError(status, error, message, **extra)``; ``register_error_handlers`` turns it,
werkzeug's HTTP errors (404, 405, 413, ...) and any unexpected exception into
``{"error": ..., "message": ..., **extra}``. Every 503 carries ``Retry-After`` so that Journey
Builder and Rokt retry later rather than give up.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """A deliberate error answer: `status` with `{"error", "message", **extra}` as its body."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


def json_response(status: int, /, **body: Any) -> Response:
    """A JSON answer with `status`; a 503 also tells the caller when to retry."""
    response = jsonify(body)
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _api_error(exc: ApiError) -> Response:
    return json_response(exc.status, error=exc.error, message=exc.message, **exc.extra)


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
