"""Failed authentications of execute and webhooks: counted, and limited per tenant and address.

After `AUTH_FAILURE_LIMIT` failures within one fixed window of `AUTH_FAILURE_WINDOW_SECONDS` from
one client address for one tenant and route (hash `rsf:<tenant>:authfail:<route>:<window>`, field
the keyed digest of the address: an address is personal data, `keys.personal_digest`), that
address gets 429 with Retry-After for the rest of the window (before any verification is tried).
A window counts at most `AUTH_FAILURE_ADDRESSES_MAX` addresses, so what unauthenticated callers
store has a ceiling whatever number of addresses they use; an address beyond it is not limited.
Failures against a tenant that does not exist count in one hash per route and window
(`rsf:_authfail:<route>:<window>`), so guessing tenant names is limited too and creates no
per-name key. Failures of existing tenants are also
counted for the metrics in the hash `rsf:<tenant>:auth-failures` (field: the route, `execute` or
`webhook`; `<route>:limited` for the 429s, `<route>:uncounted` for failures past the ceiling of
addresses: a spread-out flood shows there). Redis trouble never turns an authentication into a
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
# One hash per tenant, route and fixed window: a field per address (its keyed digest), at most
# ARGV[3] fields, so what failed callers store has a ceiling however many addresses they use; an
# address beyond it is not counted (never a lockout of callers who did not fail: Journey Builder).
# KEYS: the window, the tenant's metrics hash (absent for an unknown tenant).
# ARGV: the address's field, the window's TTL, the ceiling, the route.
_COUNT = """
local n = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if #KEYS > 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  if n == 0 then redis.call('HINCRBY', KEYS[2], ARGV[4] .. ':uncounted', 1) end
end
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


def _window(tenant: str | None, route: str, window_seconds: int) -> tuple[str, str, int]:
    """(this window's hash, this address's field in it, seconds until the window ends). The field
    is the keyed digest of the address (the salt is the process's copy: no round trip, except
    once a minute)."""
    now = time.time()
    number = int(now // window_seconds)
    digest = keys.personal_digest(deployment_salt(_redis()), tenant or "", client_address())[:16]
    left = max(1, int((number + 1) * window_seconds - now + 0.999))
    return keys.auth_failure_window(tenant, route, number), digest, left


def _limits() -> tuple[int, int, int]:
    settings = current_app.extensions["rsf.runtime"].settings
    return (
        int(settings.auth_failure_limit),
        max(int(settings.auth_failure_window_seconds), 1),
        int(settings.auth_failure_addresses_max),
    )


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
    limit, window, _ceiling = _limits()
    if limit <= 0:
        return
    clear = _clear()
    now = time.monotonic()
    try:
        key, field, left = _window(tenant, route, window)
        remembered = f"{key}|{field}"
        if clear.get(remembered, 0.0) > now:
            return
        count = _redis().hget(key, field)
        if count is None or int(count) < limit:
            if len(clear) >= _CLEAR_MAX:
                clear.clear()
            clear[remembered] = now + CLEAR_FOR_SECONDS
            return
        if tenant is not None:
            _redis().hincrby(keys.auth_failures(tenant), f"{route}:limited", 1)
    except (redis.RedisError, ValueError):
        log.warning("auth failure limiter unavailable; %s request let through", route, exc_info=True)
        return
    log.warning(  # the address is personal data: named by its digest's start, as its field is
        "%s: too many failed authentications from address %s...; 429 for %ss", route, field[:8], left
    )
    raise ApiError(
        429,
        "too_many_failures",
        "too many failed authentications; retry later",
        headers={"Retry-After": str(left)},
    )


def record_failure(tenant: str | None, route: str, reason: str) -> ApiError:
    """Count one failed authentication (logged with its reason, never returned) and give the
    answer to raise."""
    log.info("%s authentication failed: %s", route, reason)
    _limit, window, ceiling = _limits()
    try:
        key, field, left = _window(tenant, route, window)
        _clear().pop(f"{key}|{field}", None)  # the next request of this address looks again
        names = [key] if tenant is None else [key, keys.auth_failures(tenant)]
        _redis().eval(_COUNT, len(names), *names, field, left + 1, ceiling, route)
    except redis.RedisError:
        log.warning("auth failure limiter unavailable; %s failure not counted", route, exc_info=True)
    return unauthorized()
