"""The App Settings session: kept in Redis, the browser holds only a random id.

Marketing Cloud frames App Settings from another site, so the cookie is third-party there: it is
`__Host-rokt_sfmc; Secure; HttpOnly; SameSite=None; Partitioned; Path=/` (CHIPS: the browser keeps
it per top-level site, and it still works when third-party cookies are blocked). The cookie holds
256 random bits and nothing else; Redis holds the data under the id's SHA-256 (a Redis dump alone
cannot be replayed as a cookie) and forgets it after `SESSION_IDLE_SECONDS` without a request.

`rotate(session)` gives the session a new id (called at sign-in: the id an attacker may have
planted before sign-in is worthless after it); `destroy(session)` deletes it on the server at once
(logout). SameSite=None gives no CSRF protection, so every POST of /app carries the session's CSRF
token (`csrf_token` form field, or `X-CSRF-Token` for the page's fetch calls): `csrf_ok()`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import Any

import redis
from flask import Flask, Request, Response, current_app, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from pipeline.infra import keys

SESSION_COOKIE_NAME = "__Host-rokt_sfmc"
SESSION_IDLE_SECONDS = 8 * 3600
SESSION_ID_BYTES = 32  # 256 bits
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_SESSION_KEY = "csrf"
# what token_urlsafe(32) gives; anything else in the cookie is not one of ours
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")

# Flask's own cookie settings, read by SessionInterface.get_cookie_* (Flask >= 3.1 for PARTITIONED)
SESSION_CONFIG: dict[str, Any] = {
    "SESSION_COOKIE_NAME": SESSION_COOKIE_NAME,
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "None",
    "SESSION_COOKIE_PARTITIONED": True,
    "SESSION_COOKIE_PATH": "/",
    "SESSION_COOKIE_DOMAIN": None,  # __Host- forbids a Domain attribute
    "SESSION_REFRESH_EACH_REQUEST": False,  # the idle TTL is refreshed in Redis, not in the cookie
}


def hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ServerSession(CallbackDict, SessionMixin):
    """The session's data; `sid` is "" until something is stored."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str = "") -> None:
        def on_update(_self: CallbackDict) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.modified = False
        self.rotate_requested = False
        self.destroyed = False


def rotate(session: SessionMixin) -> None:
    """A new session id when this answer is sent (the old id's record is deleted)."""
    if isinstance(session, ServerSession):
        session.rotate_requested = True
        session.modified = True


def destroy(session: SessionMixin) -> None:
    """End the session on the server now; the answer also clears the cookie."""
    if isinstance(session, ServerSession):
        if session.sid:
            _redis().delete(keys.app_session(hashed(session.sid)))
        session.clear()
        session.destroyed = True


def csrf_token(session: SessionMixin) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get(CSRF_SESSION_KEY)
    if not token:
        token = session[CSRF_SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: SessionMixin) -> bool:
    """The request carries the session's CSRF token (form field or header), compared in constant time."""
    expected = session.get(CSRF_SESSION_KEY)
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), str(expected).encode())


def csrf_refusal(session: SessionMixin, signed_in: bool) -> str:
    """Why `csrf_ok` refused, in terms the page can explain (the request is refused either way):
    `csrf_missing` (no token: not sent by our page), `session_ended` (no live session: expired,
    signed out), `signed_in_elsewhere` (a live session whose token is not this one: a sign-in in
    another tab or window gave the session a new id and token)."""
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not given:
        return "csrf_missing"
    if not signed_in or not session.get(CSRF_SESSION_KEY):
        return "session_ended"
    return "signed_in_elsewhere"


def _redis() -> redis.Redis:
    return current_app.extensions["rsf.runtime"].redis


class RedisSessionInterface(SessionInterface):
    """Flask's session in Redis (`rt.redis`), one JSON record per session id."""

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app), "")
        if not _SESSION_ID.match(sid):
            return ServerSession()
        raw = _redis().get(keys.app_session(hashed(sid)))
        if raw is None:
            return ServerSession()  # expired, destroyed, or never ours: a fresh one
        try:
            data = json.loads(raw)
        except ValueError:
            return ServerSession()
        return ServerSession(data if isinstance(data, dict) else {}, sid=sid)

    def _cookie_options(self, app: Flask) -> dict[str, Any]:
        return {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "partitioned": self.get_cookie_partitioned(app),
            "samesite": self.get_cookie_samesite(app),
            "httponly": self.get_cookie_httponly(app),
        }

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, ServerSession):
            return
        name = self.get_cookie_name(app)
        r = _redis()
        if session.destroyed or (not session and session.modified):
            if session.sid:
                r.delete(keys.app_session(hashed(session.sid)))
            response.delete_cookie(name, **self._cookie_options(app))
            response.vary.add("Cookie")
            return
        if not session:
            return  # nothing stored: no cookie, no Redis record
        if session.rotate_requested and session.sid:
            r.delete(keys.app_session(hashed(session.sid)))
            session.sid = ""
        if not session.sid:
            session.sid = secrets.token_urlsafe(SESSION_ID_BYTES)
            session.modified = True
        key = keys.app_session(hashed(session.sid))
        if session.modified:
            r.set(key, json.dumps(dict(session), sort_keys=True), ex=SESSION_IDLE_SECONDS)
            response.set_cookie(name, session.sid, **self._cookie_options(app))
            response.vary.add("Cookie")
        else:
            r.expire(key, SESSION_IDLE_SECONDS)  # idle timeout: each request extends it
