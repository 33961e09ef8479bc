"""Secrets and email addresses kept out of every log line, access logs included.

Gunicorn's own lines (error log and access log) are written in the process's LOG_FORMAT.

A secret may travel as the last path segment of the webhook URL configured in Rokt
(`/t/<tenant>/webhooks/rokt/<secret>`). Werkzeug's request log and gunicorn's access log
both print the path, so both go through the same redaction (`pipeline.infra.logsafe.redact`, which
pipeline.infra.logsetup applies to every line of every process).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from pipeline.infra import logsetup
from pipeline.infra.logsafe import redact

__all__ = ["RedactSecrets", "RedactingGunicornLogger", "install_log_redaction", "redact"]

REQUEST_ID_HEADER = "X-Request-ID"


class RedactSecrets(logsetup.RedactFilter):
    """The redaction as a logging filter (kept under its old name)."""


def install_log_redaction() -> None:
    """Filter the dev server's request log (gunicorn uses RedactingGunicornLogger)."""
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, logsetup.RedactFilter) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(RedactSecrets())


def _log_format() -> str:
    """LOG_FORMAT as the settings read it; gunicorn's master sets its loggers up before the app
    (and its settings) load, so a broken setting must not stop it here: the app reports it."""
    try:
        from pipeline.settings import get_settings

        return getattr(get_settings(), "log_format", "json")
    except Exception:
        value = os.environ.get("LOG_FORMAT", "").strip().lower()
        return value if value in logsetup.FORMATS else "json"


class RedactingGunicornLogger(GunicornLogger):
    """`gunicorn --access-logfile - --logger-class pipeline.web.logs.RedactingGunicornLogger`:
    gunicorn's error and access lines in LOG_FORMAT (process "web"), redacted; each access line
    carries the request's method, path, status, duration and request id as fields too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        fmt = logsetup.formatter("web", _log_format())
        logsetup.add_redaction(self.error_log, fmt)
        logsetup.add_redaction(self.access_log, fmt)

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact(value) if isinstance(value, str) else value for name, value in atoms.items()}

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        request_id = next(
            (value for name, value in resp.headers if name.lower() == REQUEST_ID_HEADER.lower()), None
        )
        fields = {
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": resp.status_code if hasattr(resp, "status_code") else atoms.get("s"),
            "durationMs": round(request_time.total_seconds() * 1000, 1),
            "bytes": atoms.get("B"),
            "remoteAddr": atoms.get("h"),
            "userAgent": atoms.get("a"),
        }
        if request_id:
            fields["requestId"] = request_id
        try:
            self.access_log.info(self.cfg.access_log_format, self.atoms_wrapper_class(atoms), extra=fields)
        except Exception:
            self.error_log.exception("access log line failed")
