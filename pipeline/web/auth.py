"""Who may call `/t/<tenant>/api/...`: a short-lived session (the activity UI) or an API key.

The activity UI runs in Journey Builder's iframe and JB gives it no signed identity. We use the
community pattern: the UI asks JB for its tokens (Postmonger `requestTokens`) and sends the
`fuel2token` once to `POST /t/<tenant>/api/session`; we call `GET /platform/v1/tokenContext` with
it at the tenant's OWN REST base (the `rest_instance_url` of the tenant's own client-credentials
token, never a host the browser names) and accept it only when its `organization.id` or
`enterprise.id` equals the tenant's `sfmc_account_id`. The answer is a session token (itsdangerous,
signed with a key derived from the tenant's `jb_jwt_secret`, 15 minutes) sent as a bearer header.
After the JWT secret changes, a session signed with the previous one stays valid while that
secret is in its grace period (`JWT_SECRET_GRACE_HOURS`); new sessions use the current one.

Salesforce does not document this handshake for enhanced packages (fuel2token and tokenContext
come from legacy-package samples; see docs/vendors/sfmc-app.md A.7). Verify it in a
real account before relying on it: open the activity in a journey, and in the iframe's devtools
console check that `requestedTokens` carries a `fuel2token`, then
`curl -H "Authorization: Bearer <fuel2token>" https://<tssd>.rest.marketingcloudapis.com/platform/v1/tokenContext`
must answer 200 with `organization.id` (the MID) or `enterprise.id` equal to SFMC_ACCOUNT_ID;
our `POST /t/<tenant>/api/session` then answers 200 (401 means refused or other account, 503
means SFMC could not be reached). Everything about this handshake lives in this module.

Operators and scripts use per-tenant API keys instead (`pipeline/tenancy/apikeys.py`). Neither the
fuel2token, nor a session token, nor an API key is ever logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from pipeline.clients.errors import ClientError, RetryableError
from pipeline.clients.sfmc import TokenRefused
from pipeline.settings import Tenant
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.web.errors import ApiError, json_response

log = logging.getLogger(__name__)
session_api = Blueprint("session_api", __name__, url_prefix="/t/<tenant>/api")

SESSION_MAX_AGE = 900  # seconds
SESSION_KEY_MESSAGE = b"rokt-sfmc api session"
SESSION_SALT = "rokt-sfmc.api-session"
FUEL2TOKEN_MAX = 4096
# what can travel in an Authorization header: visible ASCII, no spaces
TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True)
class ApiIdentity:
    """Who the current `/api/` request is (in `flask.g.api_identity`): never the secret itself."""

    tenant: str
    kind: str  # "session" | "api_key"
    key_id: str = ""
    user: str = ""  # a session's Marketing Cloud user id, when its tokenContext named one

    def describe(self) -> str:
        """Who, as an event job records it: the Marketing Cloud user (by id) or the API key (by id)."""
        if self.kind == "api_key":
            return f"API key {self.key_id}"
        return f"Marketing Cloud user {self.user}" if self.user else "Marketing Cloud user (unnamed)"


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


def _tenant(name: str) -> Tenant | None:
    """The tenant when it exists and can sign sessions; None otherwise (answered like a bad token)."""
    tenant = _runtime().registry.get(name)
    if tenant is None:
        return None
    if not tenant.jb_jwt_secret:
        log.warning("tenant %s has no JB_JWT_SECRET: API sessions are disabled", name)
        return None
    return tenant


def _serializer(tenant: Tenant) -> URLSafeTimedSerializer:
    """Signs with the current secret's key; verifies with it and the previous ones in grace."""
    keys = [
        hmac.new(secret.encode("utf-8"), SESSION_KEY_MESSAGE, hashlib.sha256).hexdigest()
        for secret in tenant.jwt_secrets(time.time())
    ]
    return URLSafeTimedSerializer(keys[::-1], salt=SESSION_SALT)  # itsdangerous signs with the last


def issue_session(tenant: Tenant, user: str = "") -> str:
    """A session of the tenant; `user` is the Marketing Cloud user's id (tokenContext's), what
    an event job records as who started it (an id, not a name or an address)."""
    payload = {"tenant": tenant.name, **({"user": user} if user else {})}
    return _serializer(tenant).dumps(payload)


def session_payload(tenant: Tenant, token: str, max_age: int = SESSION_MAX_AGE) -> dict[str, Any] | None:
    """The payload of a session of THIS tenant, signed with its key, at most `max_age` seconds
    old; None otherwise. The payload's tenant is checked too: two tenants may share a JWT secret
    (the sandbox does)."""
    try:
        payload = _serializer(tenant).loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    return payload if isinstance(payload, dict) and payload.get("tenant") == tenant.name else None


def session_valid(tenant: Tenant, token: str, max_age: int = SESSION_MAX_AGE) -> bool:
    """A session of THIS tenant, signed with its key, at most `max_age` seconds old."""
    return session_payload(tenant, token, max_age) is not None


def _bearer() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _unauthorized() -> Response:
    response = json_response(
        401, error="unauthorized", message="a valid session or API key of this tenant is required"
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="rokt-sfmc api"'
    return response


def identify(tenant_name: str) -> ApiIdentity | None:
    """The caller of this request when its bearer token is a session or API key of the tenant."""
    token = _bearer()
    tenant = _tenant(tenant_name)
    if not token or tenant is None:
        return None
    if token.startswith(apikeys.PREFIX):
        if apikeys.verify_key(_runtime().redis, tenant.name, token):
            return ApiIdentity(tenant.name, "api_key", token[len(apikeys.PREFIX) :][: apikeys.ID_LENGTH])
        return None
    payload = session_payload(tenant, token)
    if payload is not None:
        return ApiIdentity(tenant.name, "session", user=str(payload.get("user") or ""))
    return None


def require_api_auth(view: Callable[..., Any]) -> Callable[..., Any]:
    """Let the view run only for a session or API key of the URL's `tenant`; else 401.

    An unknown tenant answers exactly like a wrong token (nothing tells the two apart).
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        identity = identify(str(kwargs.get("tenant", "")))
        if identity is None:
            return _unauthorized()
        g.api_identity = identity
        return view(*args, **kwargs)

    return wrapper


def json_body() -> Any:
    """The request's JSON body, or None when it is not JSON (too deeply nested included: the
    parser's RecursionError is not a ValueError, so `silent=True` alone lets it through as a 5xx)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _fuel2token() -> str:
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_payload",
            "body must be a JSON object",
            fields={"fuel2token": ["Missing data for required field."]},
        )
    value = body.get("fuel2token")
    problem = ""
    if value is None:
        problem = "Missing data for required field."
    elif not isinstance(value, str) or not value.strip():
        problem = "Must be a non-empty string."
    elif len(value.strip()) > FUEL2TOKEN_MAX:
        problem = f"Longer than maximum length {FUEL2TOKEN_MAX}."
    elif not TOKEN_CHARS.match(value.strip()):
        problem = "Not a valid token."
    if problem:
        raise ApiError(400, "invalid_payload", "fuel2token rejected", fields={"fuel2token": [problem]})
    return value.strip()


@session_api.post("/session")
def create_session(tenant: str):
    """Exchange Journey Builder's fuel2token for a session token of this tenant."""
    fuel2token = _fuel2token()  # same answer for every tenant: says nothing about which exist
    found = _tenant(tenant)
    if found is None:
        raise ApiError(401, "unauthorized", "token refused")
    try:
        context = _runtime().sfmc(tenant).token_context(fuel2token)
    except TokenRefused as exc:
        log.info("api session refused for tenant %s: SFMC tokenContext HTTP %s", tenant, exc.status)
        raise ApiError(401, "unauthorized", "token refused") from exc
    except RetryableError as exc:
        log.warning("api session for tenant %s: SFMC unavailable: %s", tenant, exc.reason)
        raise ApiError(503, "sfmc_unavailable", "SFMC could not verify the token; retry later") from exc
    except ClientError as exc:  # our own SFMC credentials refused, or a 4xx we do not expect
        log.error("api session for tenant %s: SFMC tokenContext failed: %s", tenant, exc.reason)
        raise ApiError(503, "sfmc_unavailable", "SFMC could not verify the token; retry later") from exc
    ids = {_id(context.get("organization")), _id(context.get("enterprise"))} - {""}
    if not found.sfmc_account_id or str(found.sfmc_account_id) not in ids:
        log.warning(
            "api session refused for tenant %s: token of account(s) %s, tenant is %s",
            tenant,
            sorted(ids),
            found.sfmc_account_id or "(unset)",
        )
        raise ApiError(401, "unauthorized", "token refused")
    log.info("api session issued for tenant %s", tenant)
    user = context.get("user") if isinstance(context.get("user"), dict) else {}
    return {"token": issue_session(found, _id(user)), "expiresIn": SESSION_MAX_AGE}


def _id(part: Any) -> str:
    if not isinstance(part, dict):
        return ""
    value = part.get("id")
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()
