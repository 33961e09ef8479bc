"""Keep webhook secrets and email addresses out of every log line, access logs included.

A secret may travel as the last path segment of the webhook URL configured in Rokt
(`/t/<tenant>/webhooks/rokt/<secret>`). Werkzeug's request log and gunicorn's access log
both print the path, so both go through the same redaction.
"""

from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger as GunicornLogger

from pipeline.logsafe import mask_emails

SECRET_IN_PATH = re.compile(r"(/webhooks/rokt/)[^/?\s\"]+")


def redact(text: str) -> str:
    """Secrets in webhook paths out; email addresses (contact keys in URLs) masked."""
    return mask_emails(SECRET_IN_PATH.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_redaction() -> None:
    """Filter the dev server's request log (gunicorn uses RedactingGunicornLogger)."""
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactSecrets) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(RedactSecrets())


class RedactingGunicornLogger(GunicornLogger):
    """`gunicorn --logger-class pipeline.web.logs.RedactingGunicornLogger`."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact(value) if isinstance(value, str) else value for name, value in atoms.items()}
