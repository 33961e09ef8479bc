"""Sign-in to App Settings from Marketing Cloud: the OAuth 2.0 authorization-code flow of the
package's Web App integration (docs/vendors/sfmc-app.md B.2, B.5).

`GET /app/login` (the Marketing Cloud App component's Login URL) starts the flow: a signed `state`,
10 minutes, single use, bound to this browser by a separate short-lived partitioned cookie holding
a nonce (a login CSRF, where an attacker's callback URL runs in the victim's browser, fails: the
victim has no such cookie), and bounded in Redis per client address and in all (a flood answers
429 with Retry-After: pipeline/web/signin_states.py). The state is never the session id
(Accenture's sample adopts it as one: fixation).
`GET /app/oauth/callback` checks the state before anything else, then that `tssd` is one DNS label
(it becomes a host name we send our client secret to), exchanges the code at the account's own
authorization host, reads `/v2/userinfo` and signs the enterprise (EID) in as a tenant, under a
new session id. `GET /app/logout` (Marketing Cloud's Logout URL, a browser GET) ends the session
on the server.

Every /app answer says who may frame it (`frame-ancestors` from MC_ALLOWED_ORIGINS: on the signed-in
tenant's own stack, which the sign-in's userinfo names; any stack's before sign-in) and is never
cached (`app_response_headers`, installed app-wide so 404s under /app carry it too).
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import redis
from flask import Blueprint, Response, current_app, g, redirect, render_template, request, session

from pipeline.clients.errors import ClientError
from pipeline.clients.sfmc_oauth import SfmcOAuthClient
from pipeline.infra.logsafe import mask
from pipeline.settings import Tenant
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import DNS_LABEL
from pipeline.web.app_session import CSRF_SESSION_KEY, SESSION_ID_BYTES, destroy, rotate
from pipeline.web.auth_failures import client_address
from pipeline.web.origins import frame_origins, page_policy
from pipeline.web.signin_states import (
    STATE_TTL_SECONDS,
    Limited,
    Refusal,
    SigninStates,
    StateProblem,
)

log = logging.getLogger(__name__)
_LIMITED_LOG_LOCK = threading.Lock()
app_auth = Blueprint("app_auth", __name__, url_prefix="/app")

APP_PREFIX = "/app"
CALLBACK_PATH = "/app/oauth/callback"
SIGNIN_COOKIE = "__Host-rokt_sfmc_signin"
STATE_MAX_LENGTH = 256
SIGNIN_UNAVAILABLE_RETRY_SECONDS = 30  # Redis refused or failed: the state could not be kept
LIMITED_LOG_EVERY_SECONDS = 60.0  # a flood's 429s are logged once a minute per process, counted
CODE_MAX_LENGTH = 2048
TSSD = re.compile(DNS_LABEL)  # one DNS label (fullmatch)
# refusals an admin cures by signing in again (the page then offers it and keeps their edits)
SESSION_CODES = frozenset({"session_ended", "signed_in_elsewhere"})


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


def _oauth_client() -> SfmcOAuthClient:
    """One client (one requests session) per app."""
    client = current_app.extensions.get("rsf.sfmc_oauth")
    if client is None:
        settings = _runtime().settings
        client = SfmcOAuthClient(
            settings.sfmc_app_client_id, settings.sfmc_app_client_secret, settings.http_timeout
        )
        current_app.extensions["rsf.sfmc_oauth"] = client
    return client


def _signin_states() -> SigninStates:
    """One per app (its keys are derived once from SECRET_KEY)."""
    states = current_app.extensions.get("rsf.signin_states")
    if states is None:
        settings = _runtime().settings
        states = SigninStates(
            _runtime().redis,
            settings.secret_key,
            max_total=settings.signin_states_max,
            per_address=settings.signin_states_per_address,
        )
        current_app.extensions["rsf.signin_states"] = states
    return states


def wants_json() -> bool:
    """The page's fetch() calls (they send the CSRF header or ask for JSON) get JSON errors."""
    return "X-CSRF-Token" in request.headers or request.accept_mimetypes.best == "application/json"


def error_page(status: int, title: str, message: str, *, code: str = "", field: str = "") -> Response:
    """An error an admin reads (HTML), or JSON for the page's own fetch() calls. `code` says what
    happened to the page's script (`session_ended`, ...); `field` names the input at fault; a
    session problem also says where to sign in again (`signIn`)."""
    sign_in = f"{APP_PREFIX}/login" if code in SESSION_CODES else ""
    if wants_json():
        body = {"error": title, "message": message}
        body.update({k: v for k, v in (("code", code), ("field", field), ("signIn", sign_in)) if v})
        response = current_app.json.response(body)
    else:
        response = Response(
            render_template("app/error.html", title=title, message=message, code=code, sign_in=sign_in)
        )
    response.status_code = status
    return response


def app_response_headers(response: Response) -> Response:
    """Every /app answer: framed by Marketing Cloud only, never cached (it holds a tenant's settings).
    A page of a signed-in tenant (`require_app_session`): by its own stack's Marketing Cloud only;
    the sign-in's own pages (no tenant known yet, or another account's browser): by any stack's."""
    if request.path == APP_PREFIX or request.path.startswith(APP_PREFIX + "/"):
        origins = frame_origins(_runtime().settings.mc_allowed_origins, g.get("app_tenant"))
        response.headers["Content-Security-Policy"] = page_policy(origins)
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("X-Frame-Options", None)
    return response


def _redirect_uri() -> str:
    return _runtime().settings.public_base_url + CALLBACK_PATH


def session_tenant() -> Tenant | None:
    """The tenant of this browser's session: from the session only, never from the URL or a form.
    A session whose tenant vanished or changed enterprise is ended."""
    name, eid = session.get("tenant"), session.get("eid")
    if not name or not eid:
        return None
    tenant = _runtime().registry.get(str(name))
    if tenant is None or tenant.sfmc_eid != eid:
        destroy(session)
        return None
    return tenant


def require_app_session(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed in, else: a page GET starts the sign-in, anything else answers 401.
    The tenant is in `flask.g.app_tenant`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tenant = session_tenant()
        if tenant is None:
            if request.method == "GET" and not wants_json():
                return redirect(f"{APP_PREFIX}/login")
            return error_page(
                401,
                "Your session ended",
                "Not done: your session ended (you signed out, or the page was left idle). "
                "Your changes in the form are kept: sign in again, then try again.",
                code="session_ended",
            )
        g.app_tenant = tenant
        return view(*args, **kwargs)

    return wrapper


@app_auth.get("/login")
def login():
    """Every opening of the app signs in again, even with a session: the partitioned cookie is
    keyed by Marketing Cloud's site, which every account shares, so a session alone cannot tell
    that the user now opened the app from another enterprise. The round trip is silent (the user
    is signed in to Marketing Cloud) and ends in a new session for the account it names."""
    settings = _runtime().settings
    if not settings.sfmc_app_client_id or not settings.sfmc_app_auth_base_url or not settings.secret_key:
        return error_page(
            503,
            "Sign-in not configured",
            "SFMC_APP_CLIENT_ID, SFMC_APP_AUTH_BASE_URL and SECRET_KEY must all be set.",
        )
    nonce = secrets.token_urlsafe(SESSION_ID_BYTES)
    try:
        state = _signin_states().issue(client_address(), nonce)
    except redis.RedisError:
        log.warning("app sign-in: the sign-in state could not be kept in Redis", exc_info=True)
        response = error_page(
            503,
            "Sign-in unavailable",
            "The sign-in could not be started. Open the app again in a minute.",
            code="signin_unavailable",
        )
        response.headers["Retry-After"] = str(SIGNIN_UNAVAILABLE_RETRY_SECONDS)
        return response
    if isinstance(state, Limited):
        return _too_many_signins(state)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.sfmc_app_client_id,
            "redirect_uri": _redirect_uri(),
            "state": state,
            "scope": settings.sfmc_app_scopes,
        }
    )
    response = redirect(f"{settings.sfmc_app_auth_base_url}/v2/authorize?{query}")
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=STATE_TTL_SECONDS, **_signin_cookie_options())
    return response


def _too_many_signins(limited: Limited) -> Response:
    """429 with Retry-After: too many sign-ins started and not finished (from this address, or in
    all). Logged once a minute per process with the count, so a flood does not flood the logs."""
    counts = current_app.extensions.setdefault("rsf.signins_limited", {"since": float("-inf"), "count": 0})
    with _LIMITED_LOG_LOCK:  # gunicorn's threads share the app
        counts["count"] += 1
        now = time.monotonic()
        if now - counts["since"] >= LIMITED_LOG_EVERY_SECONDS:
            elapsed = "" if counts["since"] == float("-inf") else f" in {now - counts['since']:.0f} s"
            log.warning(
                "app sign-in: %s sign-in(s) refused%s, the last: %s", counts["count"], elapsed, limited.reason
            )
            counts.update(since=now, count=0)
    where = "from your network" if limited.reason == Refusal.ADDRESS else "at once"
    response = error_page(
        429,
        "Too many sign-ins",
        f"Too many sign-ins were started {where} and not finished. "
        f"Open the app again in {limited.retry_after} seconds.",
        code=limited.reason,
    )
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


def _signin_cookie_options() -> dict[str, Any]:
    return {"path": "/", "secure": True, "httponly": True, "samesite": "None", "partitioned": True}


_STATE_MESSAGES = {
    StateProblem.INVALID: "The sign-in answer carries no valid state.",
    StateProblem.EXPIRED: "This sign-in took more than 10 minutes. Open the app again.",
    StateProblem.USED: "This sign-in link is unknown, expired or already used. Open the app again.",
    StateProblem.OTHER_BROWSER: "This sign-in was started in another browser. Open the app again.",
}


def _state_problem() -> str | None:
    """None when `state` is one we issued, unused, to this browser; else why not. Used up either way."""
    state = request.args.get("state", "")
    if not state or len(state) > STATE_MAX_LENGTH or not _runtime().settings.secret_key:
        return _STATE_MESSAGES[StateProblem.INVALID]
    problem = _signin_states().consume(state, request.cookies.get(SIGNIN_COOKIE, ""))
    return None if problem is None else _STATE_MESSAGES[problem]


@app_auth.get("/oauth/callback")
def oauth_callback():
    response = _callback()
    response.delete_cookie(SIGNIN_COOKIE, **_signin_cookie_options())
    return response


def _callback() -> Response:
    problem = _state_problem()
    if problem is not None:
        log.warning("app sign-in refused: bad state")
        return error_page(400, "Sign-in failed", problem)
    refused = request.args.get("error", "")
    if refused:  # e.g. access_denied; nothing is sent anywhere
        reason = re.sub(r"[^a-z_]", "", refused.lower())[:64] or "error"
        return error_page(403, "Sign-in refused", f"Marketing Cloud refused the sign-in ({reason}).")
    tssd = request.args.get("tssd", "")
    if not TSSD.fullmatch(tssd):
        log.warning("app sign-in refused: tssd is not one DNS label")
        return error_page(
            400, "Sign-in failed", "The sign-in answer names no valid Marketing Cloud account (tssd)."
        )
    code = request.args.get("code", "")
    if not code or len(code) > CODE_MAX_LENGTH:
        return error_page(400, "Sign-in failed", "The sign-in answer carries no authorization code.")
    rt = _runtime()
    auth_url = rt.settings.tssd_auth_url(tssd)
    client = _oauth_client()
    try:
        token = client.exchange_code(auth_url, code, _redirect_uri())
        user = client.userinfo(auth_url, token.access_token)
    except ClientError as exc:
        log.warning("app sign-in: SFMC refused or failed: %s", exc.reason)
        return error_page(502, "Marketing Cloud sign-in failed", exc.reason)
    try:
        tenant = rt.registry.sign_in(
            eid=user.eid, mid=user.mid, tssd=tssd, refresh_token=token.refresh_token, stack=user.stack
        )
    except ValueError as exc:
        log.warning("app sign-in: enterprise %s not accepted: %s", user.eid, exc)
        return error_page(502, "Marketing Cloud sign-in failed", "The account's enterprise id is not usable.")
    session.clear()
    rotate(session)  # a new id: one planted before sign-in is worthless now
    session.update(
        tenant=tenant.name,
        eid=user.eid,
        user=user.name,
        signedInAt=time.time(),
        **{CSRF_SESSION_KEY: secrets.token_urlsafe(32)},
    )
    log.info("app sign-in: tenant %s, enterprise %s, user %s", tenant.name, user.eid, mask(user.name))
    return redirect(f"{APP_PREFIX}/settings")


@app_auth.get("/logout")
def logout():
    """Marketing Cloud's Logout URL: a browser GET when the user logs out of Marketing Cloud."""
    if session.get("tenant"):
        log.info("app sign-out: tenant %s", session.get("tenant"))
    destroy(session)
    return render_template("app/signed_out.html")
