"""Failed authentications of execute and webhooks: counted, and limited per tenant and address.

After `AUTH_FAILURE_LIMIT` failures within `AUTH_FAILURE_WINDOW_SECONDS` from one client address
for one tenant and route (`rsf:<tenant>:authfail:<route>:<keyed digest of the address>`: an
address is personal data, `keys.personal_digest`), that address gets 429 with Retry-After for the
rest of the window (before any verification is tried). Failures against a tenant that does not
exist count in one bucket per route and address (`rsf:_authfail:<route>:<digest>`), so guessing
tenant names is limited too and creates no per-name key. Failures of existing tenants are also
counted for the metrics in the hash `rsf:<tenant>:auth-failures` (field: the route, `execute` or
`webhook`; `<route>:limited` for the 429s). Redis trouble never turns an authentication into a
5xx: the limiter then lets the request through (logged).

An address found under its limit is not looked up again for `CLEAR_FOR_SECONDS` by the same app
(one Redis round trip fewer on every execute); a failure it counts forgets that at once, so one
process enforces the limit exactly and the others (gunicorn's workers) within that second.

Behind a proxy the client address is the proxy's unless TRUSTED_PROXY_HOPS says how many proxies
append to X-Forwarded-For (`client_address`); without it the limit applies to all callers of a
tenant together.
"""

from __future__ import annotations

import ipaddress
import logging
import time

import redis
from flask import current_app, request

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.web.errors import ApiError

log = logging.getLogger(__name__)

CLEAR_FOR_SECONDS = 1.0
_CLEAR_MAX = 10_000  # addresses remembered per app; beyond, the memory starts afresh
# INCR, and the window starts at the first failure (EXPIRE only then): one round trip, atomic
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return n
"""
_COUNT_UNKNOWN = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def client_address() -> str:
    """The caller as the per-address limits count it: the socket's address, or with
    TRUSTED_PROXY_HOPS the one the nearest trusted proxy saw (never a header a client alone can
    forge); an IPv6 caller by its /64, the block one subscriber line gets (one address each would
    let a single line take every slot); "unknown" when it is not an IP address."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return f"{ipaddress.IPv6Network((address, 64), strict=False).network_address}/64"
    return str(address)


def _window_key(tenant: str | None, route: str) -> str:
    """This address's failure count on the route, named by the keyed digest of the address (the
    salt is the process's copy: no round trip, except once a minute)."""
    digest = keys.personal_digest(deployment_salt(_redis()), tenant or "", client_address())
    return keys.auth_failure_window(tenant, route, digest)


def _limits() -> tuple[int, int]:
    settings = current_app.extensions["rsf.runtime"].settings
    return int(settings.auth_failure_limit), int(settings.auth_failure_window_seconds)


def _redis() -> redis.Redis:
    return current_app.extensions["rsf.runtime"].redis


def _clear() -> dict[str, float]:
    """Limiter key -> until when (monotonic) it is known to be under the limit, per app."""
    return current_app.extensions.setdefault("rsf.authfail_clear", {})


def unauthorized() -> ApiError:
    """The one answer to every failed authentication of execute and webhooks: unknown tenant,
    tenant without the secret, and a wrong credential look the same."""
    return ApiError(401, "unauthorized", "authentication failed")


def refuse_if_limited(tenant: str | None, route: str) -> None:
    """429 with Retry-After when this address failed too often for this tenant (None: a tenant
    that does not exist) within the window."""
    limit, window = _limits()
    if limit <= 0:
        return
    clear = _clear()
    now = time.monotonic()
    try:
        key = _window_key(tenant, route)
        if clear.get(key, 0.0) > now:
            return
        count = _redis().get(key)
        if count is None or int(count) < limit:
            if len(clear) >= _CLEAR_MAX:
                clear.clear()
            clear[key] = now + CLEAR_FOR_SECONDS
            return
        ttl = _redis().ttl(key)
        if tenant is not None:
            _redis().hincrby(keys.auth_failures(tenant), f"{route}:limited", 1)
    except (redis.RedisError, ValueError):
        log.warning("auth failure limiter unavailable; %s request let through", route, exc_info=True)
        return
    retry_after = ttl if isinstance(ttl, int) and ttl > 0 else window
    log.warning(  # the address is personal data: named by its digest's start, as its key is
        "%s: too many failed authentications from address %s...; 429 for %ss",
        route,
        key.rsplit(":", 1)[-1][:8],
        retry_after,
    )
    raise ApiError(
        429,
        "too_many_failures",
        "too many failed authentications; retry later",
        headers={"Retry-After": str(retry_after)},
    )


def record_failure(tenant: str | None, route: str, reason: str) -> ApiError:
    """Count one failed authentication (logged with its reason, never returned) and give the
    answer to raise."""
    log.info("%s authentication failed: %s", route, reason)
    _limit, window = _limits()
    try:
        key = _window_key(tenant, route)
        _clear().pop(key, None)  # the next request of this address looks again
        if tenant is None:
            _redis().eval(_COUNT_UNKNOWN, 1, key, max(window, 1))
        else:
            _redis().eval(_COUNT, 2, key, keys.auth_failures(tenant), max(window, 1), route)
    except redis.RedisError:
        log.warning("auth failure limiter unavailable; %s failure not counted", route, exc_info=True)
    return unauthorized()
