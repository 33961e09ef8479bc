"""Journey Builder execute JWT: HS256 only, tenant's signing secret (the current one, then the
previous ones still in their grace period after a change), `exp` when present."""

from __future__ import annotations

import binascii
import json
from typing import Any

import jwt
from jwt.utils import base64url_decode

from pipeline.web.errors import json_depth_exceeds

ALGORITHM = "HS256"
LEEWAY_SECONDS = 30


class InvalidJwt(Exception):
    """The body is not a JWT we accept; `reason` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JwtPayloadTooDeep(Exception):
    """A JWT that verifies, whose payload nests deeper than MAX_JSON_DEPTH: a 400, not a 401."""


def verify_execute_jwt(raw_body: bytes, secrets: str | tuple[str, ...]) -> dict[str, Any]:
    """The claims, when the body is an HS256 JWT signed with one of `secrets`; else InvalidJwt
    (its reason is for the log: the caller is told only "unauthorized")."""
    candidates = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    if not any(candidates):
        raise InvalidJwt("tenant has no JWT signing secret")
    try:
        token = raw_body.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise InvalidJwt("body is not a JWT") from exc
    if token.count(".") != 2:
        raise InvalidJwt("body is not a JWT (expected Content-Type application/jwt, HS256-signed)")
    try:  # the header segment only (PyJWT's own reader would decode the whole token once more)
        header = json.loads(base64url_decode(token.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError) as exc:  # a header nested too deep too
        raise InvalidJwt("malformed JWT header") from exc
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise InvalidJwt(f"JWT algorithm must be {ALGORITHM}")
    problem = "JWT signature does not verify with this tenant's secret"
    for secret in (c for c in candidates if c):
        try:
            claims = jwt.decode(
                token,
                secret.encode("utf-8"),
                algorithms=[ALGORITHM],
                options={"require": [], "verify_aud": False, "verify_iss": False},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.InvalidSignatureError:
            continue  # the next (previous) secret
        except jwt.ExpiredSignatureError as exc:
            raise InvalidJwt("JWT expired") from exc
        except RecursionError as exc:  # the payload is decoded after the signature verified
            raise JwtPayloadTooDeep() from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidJwt(f"invalid JWT: {type(exc).__name__}") from exc
        if not isinstance(claims, dict):
            raise InvalidJwt("JWT payload is not an object")
        if json_depth_exceeds(claims):
            raise JwtPayloadTooDeep()
        return claims
    raise InvalidJwt(problem)
