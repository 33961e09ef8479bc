"""The web tier (Flask app factory): validates and stores, nothing more (an execute's claim
appends it to the intake stream, which the workers' pumps publish: pipeline/journeys/intake.py).

Production: `gunicorn 'pipeline.web:create_app()'`; development: `rokt-sfmc serve`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from flask import Flask, Response, g, request
from werkzeug.exceptions import LengthRequired, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from pipeline.infra import dispatch, logsetup
from pipeline.settings import get_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web.activity import activity
from pipeline.web.api import api
from pipeline.web.app_auth import app_auth, app_response_headers
from pipeline.web.app_performance import app_performance
from pipeline.web.app_session import SESSION_CONFIG, RedisSessionInterface
from pipeline.web.app_settings import app_settings
from pipeline.web.auth import session_api
from pipeline.web.errors import register_error_handlers
from pipeline.web.execute import execute_endpoint
from pipeline.web.health import health
from pipeline.web.links import links
from pipeline.web.logs import REQUEST_ID_HEADER, install_log_redaction
from pipeline.web.webhooks import webhooks

MAX_BODY_BYTES = 64 * 1024

Enqueue = Callable[[str, str], None]

# an incoming X-Request-ID is kept when it is 1-128 visible ASCII characters; else a new one
SANE_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def request_id_of(header: str | None) -> str:
    return header if header is not None and SANE_REQUEST_ID.fullmatch(header) else uuid.uuid4().hex


def _bind_request_context() -> None:
    """Every line logged while serving this request carries its id (and tenant, if any)."""
    g.request_id = request_id_of(request.headers.get(REQUEST_ID_HEADER))
    tenant = (request.view_args or {}).get("tenant")
    # only this request's fields (nothing of a pooled thread's earlier work); restored after it
    g.log_context_token = logsetup.replace(requestId=g.request_id, tenant=tenant)


def _body_within_cap() -> None:
    """413 for any body over MAX_BODY_BYTES, chunked ones included. Werkzeug stops reading a
    chunked body at MAX_CONTENT_LENGTH without an error (a silent cut: the view would see a
    truncated body), so the stream's limit is one byte more and an over-long body is refused
    here, read once (the views' `get_data` then use the cached bytes). A server that does not
    terminate a chunked body (no `wsgi.input_terminated`) would hand us an empty one: 411."""
    if request.content_length is not None:
        if request.content_length > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()
        return
    if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    if "wsgi.input_terminated" not in request.environ:
        raise LengthRequired("a chunked body cannot be read by this server; send Content-Length")
    if len(request.get_data(cache=True)) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()


def _echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _unbind_request_context(_exc: BaseException | None) -> None:
    token = g.pop("log_context_token", None)
    if token is not None:
        logsetup.unbind(token)


def create_app(runtime: Runtime | None = None, *, enqueue_webhook: Enqueue | None = None) -> Flask:
    """The app; `enqueue_webhook` replaces how a stored webhook is enqueued (tests). Executes are
    enqueued by nobody here: their claim appends them to the intake stream (pipeline/journeys/intake.py)."""
    settings = runtime.settings if runtime is not None else get_settings()
    logsetup.configure_logging(settings, "web")  # once per process (a no-op when already done)
    install_log_redaction()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1  # one more: see _body_within_cap
    app.extensions["rsf.runtime"] = runtime or Runtime(settings)
    # first and last: every line of a request carries its id, every answer echoes it
    app.before_request(_bind_request_context)
    app.before_request(_body_within_cap)
    app.after_request(_echo_request_id)
    app.teardown_request(_unbind_request_context)
    app.extensions["rsf.enqueue_webhook"] = enqueue_webhook or dispatch.enqueue_webhook
    app.extensions["rsf.install_data_extensions"] = dispatch.install_data_extensions
    # App Settings (/app): a server-side session in Redis behind a partitioned __Host- cookie
    app.config.update(SESSION_CONFIG)
    app.session_interface = RedisSessionInterface()
    app.register_blueprint(activity)
    app.register_blueprint(execute_endpoint)
    app.register_blueprint(webhooks)
    app.register_blueprint(links)
    app.register_blueprint(health)
    app.register_blueprint(session_api)
    app.register_blueprint(api)
    app.register_blueprint(app_auth)
    app.register_blueprint(app_settings)
    app.register_blueprint(app_performance)
    app.after_request(app_response_headers)  # app-wide: a 404 under /app is framed the same way
    register_error_handlers(app)  # every error is JSON (App Settings renders its own pages)
    if settings.trusted_proxy_hops > 0:  # remote_addr: the address the nearest trusted proxy saw
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=0)  # type: ignore[method-assign]
    return app
