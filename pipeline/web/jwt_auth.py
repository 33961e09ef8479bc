"""Journey Builder execute JWT: HS256 only, tenant's signing secret, `exp` when present."""

from __future__ import annotations

from typing import Any

import jwt

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


class InvalidJwt(Exception):
    """The body is not a JWT we accept; `reason` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_execute_jwt(raw_body: bytes, secret: str) -> dict[str, Any]:
    try:
        token = raw_body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise InvalidJwt("body is not a JWT") from exc
    if token.count(".") != 2:
        raise InvalidJwt("body is not a JWT (expected Content-Type application/jwt, HS256-signed)")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidJwt("malformed JWT header") from exc
    if header.get("alg") != ALGORITHM:
        raise InvalidJwt(f"JWT algorithm must be {ALGORITHM}")
    try:
        claims = jwt.decode(
            token,
            secret.encode("utf-8"),
            algorithms=[ALGORITHM],
            options={"require": [], "verify_aud": False, "verify_iss": False},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidJwt("JWT expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidJwt("JWT signature does not verify with this tenant's secret") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidJwt(f"invalid JWT: {type(exc).__name__}") from exc
    if not isinstance(claims, dict):
        raise InvalidJwt("JWT payload is not an object")
    return claims
