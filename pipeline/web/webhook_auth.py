"""Webhook authentication. Rokt documents no signature, so we require our own shared secret:
an `X-Rokt-Signature: t=<unix>,v1=<hex>` HMAC-SHA256 over "<t>.<raw body>" (5-minute replay
window), or the secret as the last path segment of the URL configured in Rokt. Both compare
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Rokt-Signature"
REPLAY_WINDOW_SECONDS = 300


def signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    message = str(timestamp).encode() + b"." + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, raw_body: bytes, timestamp: int | None = None) -> str:
    """What a sender puts in X-Rokt-Signature (used by the sandbox and by tests)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},v1={signature(secret, stamp, raw_body)}"


def verify_header(header: str | None, raw_body: bytes, secret: str, now: float | None = None) -> str | None:
    """None when the header authenticates the body, else the reason (safe to return)."""
    if not header:
        return "missing X-Rokt-Signature"
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        stamp = int(parts.get("t", [""])[0])
    except ValueError:
        return "X-Rokt-Signature has no valid t="
    if abs((time.time() if now is None else now) - stamp) > REPLAY_WINDOW_SECONDS:
        return "X-Rokt-Signature timestamp outside the 5-minute window"
    expected = signature(secret, stamp, raw_body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", [])):
        return "X-Rokt-Signature does not match"
    return None


def verify_path_secret(candidate: str, secret: str) -> bool:
    return hmac.compare_digest(candidate.encode(), secret.encode())
