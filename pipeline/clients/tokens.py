"""OAuth access tokens shared by every worker through Redis, refreshed before they expire.

One token per tenant and vendor (SFMC asks for one token request per 20 minutes, Rokt tokens
live 5 minutes): the first process to find the cache empty takes a short lock and fetches;
the others wait for it instead of stampeding the token endpoint.

Sealed at rest like the tenant secrets (`pipeline.infra.crypto`, SECRET_KEY): a Redis dump or a
replica's copy holds no usable bearer token. The record is `{"sealed": ..., "digest": ...}`
(without a SECRET_KEY, which only a deployment of pinned TENANTS_FILE tenants may lack,
`{"response": ..., "digest": ...}`); the digest (SHA-1 of the access token) lets a worker drop
exactly the token a 401 refused without opening it in Lua. Each process keeps the last record it
opened, so a task does not pay a decryption per call. A record no key opens (SECRET_KEY rotated)
or of the old, unsealed shape is a miss: a new token is fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from pipeline.clients.errors import RetryableError
from pipeline.infra import keys
from pipeline.infra.crypto import SecretBox, SecretUnreadable

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_INVALIDATE = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['digest'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# longer than a token request can take (connect + read timeouts), so no second fetch starts
LOCK_SECONDS = 30.0
# fetch() returns the vendor's token response: access_token, expires_in and anything else
Fetch = Callable[[], dict[str, Any]]


def refresh_margin(expires_in: float) -> float:
    return min(60.0, expires_in * 0.1)


def token_digest(access_token: str) -> str:
    """Names a token in its cached record without revealing it (`invalidate` compares it)."""
    return hashlib.sha1(access_token.encode(), usedforsecurity=False).hexdigest()


class SharedToken:
    def __init__(
        self, r: redis.Redis, tenant: str, vendor: str, fetch: Fetch, box: SecretBox | None = None
    ) -> None:
        self.r = r
        self.box = box
        self._opened: tuple[bytes | str, dict[str, Any]] | None = None  # the last record opened
        self.key = keys.token(tenant, vendor)
        self.calls_key = keys.calls(tenant)
        self.vendor = vendor
        self.lock_key = keys.token_lock(tenant, vendor)
        self.fetch = fetch
        self._release = r.register_script(_RELEASE)
        self._invalidate = r.register_script(_INVALIDATE)
        # the threads of one process (a threads-pool worker) queue here for a refresh, so one
        # fetches and the others find its token instead of each polling the Redis lock
        self._refreshing = threading.Lock()

    def get(self, wait_seconds: float = 10.0) -> dict[str, Any]:
        return self._locked(lambda: self.r.get(self.key), wait_seconds)

    def renew(self, wait_seconds: float = 10.0) -> dict[str, Any]:
        """Fetch a token now, whatever the cache holds, and cache it: proves the credentials
        work (App Settings' Test connection, `tenants check`). Under the same lock as a refresh
        (a refresh token is single use: two fetches at once would spend it twice)."""
        return self._locked(lambda: None, wait_seconds)

    def _open(self, raw: bytes | str | None) -> dict[str, Any] | None:
        """The token response a cached record holds; None for a miss (see the module's doc)."""
        if not raw:
            return None
        opened = self._opened
        if opened is not None and opened[0] == raw:
            return opened[1]
        try:
            record = json.loads(raw)
            box = self.box
            response = record["response"] if box is None else json.loads(box.open(record["sealed"]))
        except (ValueError, KeyError, TypeError, SecretUnreadable):
            return None
        self._opened = (raw, response)
        return response

    def _locked(self, cached: Callable[[], str | None], wait_seconds: float) -> dict[str, Any]:
        """The cached token when `cached()` finds one, else one fetched by this process alone."""
        deadline = time.monotonic() + wait_seconds
        token = self._open(cached())
        if token is not None:
            return token
        if not self._refreshing.acquire(timeout=wait_seconds):
            raise RetryableError("token refresh by another thread did not finish in time")
        try:
            return self._locked_in_redis(cached, deadline)
        finally:
            self._refreshing.release()

    def _locked_in_redis(self, cached: Callable[[], str | None], deadline: float) -> dict[str, Any]:
        while True:
            token = self._open(cached())
            if token is not None:
                return token
            owner = uuid.uuid4().hex
            if self.r.set(self.lock_key, owner, nx=True, px=int(LOCK_SECONDS * 1000)):
                try:
                    token = self._open(cached())  # another worker may have refreshed meanwhile
                    return token if token is not None else self._refresh()
                finally:
                    self._release(keys=[self.lock_key], args=[owner])
            if time.monotonic() > deadline:
                raise RetryableError("token refresh by another worker did not finish in time")
            time.sleep(0.05)

    def _refresh(self) -> dict[str, Any]:
        response = self.fetch()
        expires_in = float(response.get("expires_in") or 300)
        ttl = max(1, int(expires_in - refresh_margin(expires_in)))
        pipe = self.r.pipeline(transaction=False)  # the count rides on the write: no extra round trip
        record: dict[str, Any] = {"digest": token_digest(response["access_token"])}
        if self.box is None:
            record["response"] = response
        else:
            record["sealed"] = self.box.seal(json.dumps(response))
        value = json.dumps(record)
        pipe.set(self.key, value, ex=ttl)
        pipe.hincrby(self.calls_key, f"{self.vendor}:token", 1)
        pipe.execute()
        self._opened = (value, response)  # this process read it already
        return response

    def invalidate(self, access_token: str) -> None:
        """Drop the cached token after a 401, unless another worker already replaced it."""
        self._invalidate(keys=[self.key], args=[token_digest(access_token)])


# after a vendor refused a tenant's credentials, a token is asked for again at most this often
REFUSED_RETRY_SECONDS = 60.0


class Refusals:
    """A vendor's refusal of a tenant's credentials, kept in Redis for every process.

    Why: a wrong client secret (or a revoked refresh token) fails every call of the tenant alike;
    asking for a token per row or per task would turn an admin's typo into a flood of token
    requests. The refusal is remembered twice: its reason (shown by App Settings, `tenants check`,
    `status` and the exporter's reconnect alert until a token is granted or the credentials
    change) and a hold of REFUSED_RETRY_SECONDS during which no token is asked for at all.
    """

    def __init__(self, r: redis.Redis, tenant: str, vendor: str, credentials: str) -> None:
        """`credentials` names the credentials this process asks with (a digest, never them): a
        hold applies only to the credentials refused, so a process that already reads the fixed
        ones is not held back by a refusal another process, still on the old ones, just met."""
        self.r = r
        self.credentials = credentials
        self.mark_key = keys.credentials_rejected(tenant, vendor)
        self.hold_key = keys.credentials_hold(tenant, vendor)

    def held(self) -> str | None:
        """The refusal's reason while its hold lives for these credentials, else None."""
        raw = self.r.get(self.hold_key)
        try:
            hold = json.loads(raw) if raw else None
            return str(hold["reason"]) if hold and hold["credentials"] == self.credentials else None
        except (ValueError, KeyError, TypeError):
            return None

    def marked(self) -> bool:
        return bool(self.r.exists(self.mark_key))

    def refused(self, reason: str) -> None:
        """Remember a refusal: the reason (its first time kept as `since`) and a fresh hold."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.mark_key)
        since = _since(pipe.execute()[0]) or time.time()
        pipe.set(self.mark_key, json.dumps({"reason": reason[:300], "since": since}))
        hold = json.dumps({"reason": reason[:300], "credentials": self.credentials})
        pipe.set(self.hold_key, hold, px=int(REFUSED_RETRY_SECONDS * 1000))
        pipe.execute()

    def granted(self) -> None:
        """A token was granted: the credentials work, whatever was refused before."""
        self.r.delete(self.mark_key, self.hold_key)

    def lift_hold(self) -> None:
        """Let the next token request through now (a person asked: Test connection, `tenants check`)."""
        self.r.delete(self.hold_key)


def _since(raw: str | None) -> float:
    try:
        return float(json.loads(raw)["since"]) if raw else 0.0
    except (ValueError, KeyError, TypeError):
        return 0.0


def rejection(r: redis.Redis, tenant: str, vendor: str) -> dict[str, Any] | None:
    """`{"reason", "since"}` while the vendor refuses the tenant's credentials, else None."""
    return rejection_of(r.get(keys.credentials_rejected(tenant, vendor)))


def rejection_of(raw: str | None) -> dict[str, Any] | None:
    """`rejection` of the key's value, for a caller that read it in a pipeline of its own."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
        return {"reason": str(record["reason"]), "since": float(record["since"])}
    except (ValueError, KeyError, TypeError):
        return {"reason": "credentials rejected", "since": 0.0}
