"""Masking for log lines: contact keys and emails are personal data, secrets never print.

`redact` is what every log line of every process goes through (pipeline.infra.logsetup installs it):
known secret values (`remember_secrets`), bearer tokens, JWTs, `secret=...` pairs and the
webhook secret in a webhook URL out; email addresses masked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

EMAIL = re.compile(r"([\w.+-]{1,64})@([\w-]+(?:\.[\w-]+)+)")
REDACTED = "[redacted]"
# A secret may travel as the last path segment of the webhook URL configured in Rokt
# (`/t/<tenant>/webhooks/rokt/<secret>`): request and access logs print the path.
SECRET_IN_PATH = re.compile(r"(/webhooks/rokt/)[^/?\s\"']+")
BEARER = re.compile(r"\bBearer\s+[\w.~+/=-]+", re.IGNORECASE)
JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
SECRET_PAIR = re.compile(
    r"(?i)\b((?:client_secret|clientsecret|refresh_token|access_token|password|api_key|secret_key)"
    r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,;}]+"
)
# Text none of the patterns below can match lacks all of these (each pattern needs one of them):
# one scan instead of five for the usual log line
MAY_MATCH = re.compile(r"(?i)@|/webhooks/rokt/|bearer|eyJ|secret|token|password|api_key")
MIN_SECRET_LENGTH = 8  # shorter values would blank out ordinary words

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def mask_emails(text: str) -> str:
    """Mask every email address inside free text (vendor error messages quote them)."""
    return EMAIL.sub(lambda m: mask(m.group(0)), text)


def mask(value: object) -> str:
    """`jane.doe@example.com` -> `ja***@ex***`; `0031X00000abcDE` -> `00***DE`."""
    text = "" if value is None else str(value)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:2]}***@{domain[:2]}***"
    if len(text) <= 4:
        return "***"
    return f"{text[:2]}***{text[-2:]}"


def remember_secrets(values: Iterable[str | None]) -> None:
    """Values `redact` removes wherever they appear (tenant secrets, the sealing keys)."""
    global _secrets
    new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH} - set(_secrets)
    if new:
        with _lock:
            # longest first: a secret that contains another is removed whole
            _secrets = tuple(sorted({*_secrets, *new}, key=len, reverse=True))


def redact(text: str) -> str:
    """Secrets out (known values, bearer tokens, JWTs, `secret=` pairs, webhook URL secrets);
    email addresses masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if not MAY_MATCH.search(text):
        return text
    text = SECRET_IN_PATH.sub(r"\1" + REDACTED, text)
    text = BEARER.sub(REDACTED, text)
    text = JWT.sub(REDACTED, text)
    text = SECRET_PAIR.sub(r"\1" + REDACTED, text)
    return mask_emails(text)
