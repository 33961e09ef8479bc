"""Redis access: one client per URL per process, and every key scoped by tenant."""

from __future__ import annotations

from functools import lru_cache

import redis

PREFIX = "rsf"


@lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis:
    """A pooled client; redis-py re-creates its connections after a fork."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=25,
        retry_on_timeout=True,
    )


def tenant_key(tenant: str, *parts: str) -> str:
    """`rsf:<tenant>:<part>:...`: nothing of one tenant can collide with another's."""
    return ":".join((PREFIX, tenant, *parts))
