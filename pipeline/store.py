"""Redis access: one client per URL per process, and every key scoped by tenant.

Redis over TLS, with a password: REDIS_URL carries it all, for every process alike (web,
workers, beat, Flower, the exporter, the CLI), e.g.
`rediss://:PASSWORD@redis.internal:6380/0?ssl_ca_certs=/etc/rsf/redis-ca.pem` (the CA that
signed the server's certificate; without it, the system's CAs), plus `ssl_certfile` and
`ssl_keyfile` when Redis asks for a client certificate (`tls-auth-clients yes`). redis-py reads
the URL itself; celeryconfig gives kombu, RedBeat and Flower the same options through
`tls_options`. The query may hold only these `ssl_*` parameters (kombu takes no others).
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import parse_url

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


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_options(url: str) -> dict[str, Any] | None:
    """The TLS options of a `rediss://` URL as Celery's `broker_use_ssl` takes them (kombu, RedBeat
    and Flower read that), the server's certificate verified unless the URL says
    `ssl_cert_reqs=none`; None for a plain `redis://` URL. kombu alone would not verify a
    `rediss://` server whose URL names no `ssl_*` option."""
    if urlsplit(url).scheme != "rediss":
        return None
    options = {key: value for key, value in parse_url(url).items() if key.startswith("ssl_")}
    reqs = str(options.get("ssl_cert_reqs", "required")).lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise ValueError(f"REDIS_URL: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    return {**options, "ssl_cert_reqs": _CERT_REQS[reqs]}


def redis_location(url: str) -> str:
    """Where a Redis URL points, for a log line or a message: scheme, host, port and database,
    never the password (nor the query)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


def tenant_key(tenant: str, *parts: str) -> str:
    """`rsf:<tenant>:<part>:...`: nothing of one tenant can collide with another's."""
    return ":".join((PREFIX, tenant, *parts))
