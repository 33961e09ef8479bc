"""The web tier (Flask app factory): validates and enqueues, nothing more.

Production: `gunicorn 'pipeline.web:create_app()'`; development: `rokt-sfmc serve`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from pipeline import dispatch
from pipeline.runtime import Runtime
from pipeline.settings import get_settings
from pipeline.web.activity import activity
from pipeline.web.api import api
from pipeline.web.app_auth import app_auth, app_response_headers
from pipeline.web.app_session import SESSION_CONFIG, RedisSessionInterface
from pipeline.web.app_settings import app_settings
from pipeline.web.auth import session_api
from pipeline.web.errors import register_error_handlers
from pipeline.web.health import health
from pipeline.web.logs import install_log_redaction
from pipeline.web.webhooks import webhooks

MAX_BODY_BYTES = 64 * 1024

Enqueue = Callable[[str, str], None]


def create_app(
    runtime: Runtime | None = None, enqueue: Enqueue | None = None, enqueue_webhook: Enqueue | None = None
) -> Flask:
    install_log_redaction()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["rsf.runtime"] = runtime or Runtime(get_settings())
    app.extensions["rsf.enqueue"] = enqueue or dispatch.enqueue_execution
    app.extensions["rsf.enqueue_webhook"] = enqueue_webhook or dispatch.enqueue_webhook
    app.extensions["rsf.install_data_extensions"] = dispatch.install_data_extensions
    # App Settings (/app): a server-side session in Redis behind a partitioned __Host- cookie
    app.config.update(SESSION_CONFIG)
    app.session_interface = RedisSessionInterface()
    app.register_blueprint(activity)
    app.register_blueprint(webhooks)
    app.register_blueprint(health)
    app.register_blueprint(session_api)
    app.register_blueprint(api)
    app.register_blueprint(app_auth)
    app.register_blueprint(app_settings)
    app.after_request(app_response_headers)  # app-wide: a 404 under /app is framed the same way
    register_error_handlers(app)  # every error is JSON (App Settings renders its own pages)
    return app
