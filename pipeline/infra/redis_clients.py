"""Redis access: one client per URL per process (the keys are named in pipeline/infra/keys.py).

Redis over TLS, with a password: REDIS_URL carries it all, for every process alike (web,
workers, beat, Flower, the exporter, the CLI), e.g.
`rediss://:PASSWORD@redis.internal:6380/0?ssl_ca_certs=/etc/rsf/redis-ca.pem` (the CA that
signed the server's certificate; without it, the system's CAs), plus `ssl_certfile` and
`ssl_keyfile` when Redis asks for a client certificate (`tls-auth-clients yes`). redis-py reads
the URL itself; celeryconfig gives kombu, RedBeat and Flower the same options through
`tls_options`. The query may hold only these `ssl_*` parameters (kombu takes no others).

Redis behind Sentinel (a master, its replicas, and Sentinels that promote a replica when the
master is lost): REDIS_URL names the Sentinels, the master's name and the database, e.g.
`redis+sentinel://:PASSWORD@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/rsf/0`; the
password (optional) is the Redis servers'; `?sentinel_password=...` (the only query it takes) is
the Sentinels' own when they ask for one (`requirepass` in sentinel.conf). The ledger, limiter and
tokens get a redis-py Sentinel master client (`redis_client`): it asks the Sentinels where the
master is on every new connection, and a connection to a demoted master reconnects on its first
refused write. celeryconfig hands kombu (`sentinel://` URLs + `master_name`) and RedBeat
(`redis-sentinel://` + `sentinels`, `service_name`) the same place (`celery_redis_options`).
Sentinel with TLS is not supported (a `rediss+sentinel` URL is refused).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
    "health_check_interval": 25,
    "retry_on_timeout": True,
}


@dataclass(frozen=True)
class SentinelURL:
    """A parsed `redis+sentinel://[[user]:password@]host[:port],.../<master>[/<db>]` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in (SENTINEL_SCHEME, "rediss+sentinel")


def parse_sentinel_url(url: str) -> SentinelURL:
    """The Sentinels, master name and database of a Sentinel REDIS_URL; a ValueError naming the
    problem otherwise (REDIS_URL is read by every process at start: it fails there)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() == "rediss+sentinel":
        raise ValueError("REDIS_URL: Sentinel with TLS (rediss+sentinel://) is not supported")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"REDIS_URL: not a {SENTINEL_SCHEME}:// URL")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    sentinels = []
    for host in hosts.split(","):
        name, port = _host_port(host.strip())
        sentinels.append((name, port))
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise ValueError(f"REDIS_URL: name the Sentinel master: {SENTINEL_SCHEME}://host:26379/<master>/<db>")
    if len(parts) > 2:
        raise ValueError(f"REDIS_URL: the path is /<master>/<db>, not /{'/'.join(parts)}")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"REDIS_URL: the database must be a number, not {db!r}")
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        message = f"REDIS_URL: a Sentinel URL takes only ?sentinel_password=, not {', '.join(unknown)}"
        raise ValueError(message)
    sentinel_password = options.get("sentinel_password", [""])[-1] or None
    return SentinelURL(tuple(sentinels), unquote(parts[0]), int(db), username, password, sentinel_password)


def _host_port(text: str) -> tuple[str, int]:
    if not text:
        raise ValueError("REDIS_URL: a Sentinel URL needs at least one host[:port], comma-separated")
    if text.startswith("["):  # [IPv6]:port
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port and not port.isdigit()) or not 0 < int(port or SENTINEL_PORT) < 65536:
        raise ValueError(f"REDIS_URL: bad Sentinel address {text!r} (host[:port])")
    return host, int(port or SENTINEL_PORT)


def make_client(url: str, **options: Any) -> redis.Redis:
    """A new client of `url` (`options` over the service's socket options); with a Sentinel URL,
    a master client that finds the master through the Sentinels."""
    options = {**_CLIENT_OPTIONS, **options}
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    where = parse_sentinel_url(url)
    sentinel_kwargs = {
        "socket_timeout": options.get("socket_timeout"),
        "socket_connect_timeout": options.get("socket_connect_timeout"),
        "password": where.sentinel_password,
    }
    sentinel = Sentinel(list(where.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        where.master, db=where.db, username=where.username, password=where.password, **options
    )


@lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis:
    """A pooled client; redis-py re-creates its connections after a fork."""
    return make_client(url)


# A liveness mark that took longer than this did not make it: the next beat is the retry.
LIVENESS_TIMEOUT_SECONDS = 2.0


@lru_cache(maxsize=8)
def liveness_client(url: str) -> redis.Redis:
    """A client for liveness marks (a worker's heartbeat): a short socket and connect timeout
    and no retries, so a Redis that stops answering costs a beat `LIVENESS_TIMEOUT_SECONDS`,
    not the default client's retries (about a minute). Not a setting: beats come every 10 s
    and count as stale after 60 s, whatever the deployment."""
    return make_client(
        url,
        socket_timeout=LIVENESS_TIMEOUT_SECONDS,
        socket_connect_timeout=LIVENESS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def celery_redis_options(url: str) -> dict[str, Any]:
    """What Celery's settings need for a Redis REDIS_URL: `broker_url`, the extra
    `broker_transport_options`, `redbeat_redis_url` and `redbeat_redis_options`. A plain
    `redis://` / `rediss://` URL is taken as it is; a Sentinel URL becomes kombu's
    `sentinel://h1:p;sentinel://h2:p/<db>` with `master_name`, and RedBeat's `redis-sentinel://`
    with its `sentinels` and `service_name`."""
    if not is_sentinel_url(url):
        return {"broker_url": url, "transport_options": {}, "redbeat_url": url, "redbeat_options": {}}
    where = parse_sentinel_url(url)
    credentials = ""
    if where.password:
        credentials = f"{quote(where.username or '', safe='')}:{quote(where.password, safe='')}@"
    hosts = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in where.sentinels]
    broker = ";".join(f"sentinel://{credentials}{host}/{where.db}" for host in hosts)
    sentinel_kwargs = {"password": where.sentinel_password} if where.sentinel_password else {}
    transport: dict[str, Any] = {"master_name": where.master}
    if sentinel_kwargs:
        transport["sentinel_kwargs"] = sentinel_kwargs
    redbeat = {
        "sentinels": list(where.sentinels),
        "service_name": where.master,
        "db": where.db,
        "password": where.password,
        "socket_timeout": _CLIENT_OPTIONS["socket_timeout"],
        **({"username": where.username} if where.username else {}),
        **({"sentinel_kwargs": sentinel_kwargs} if sentinel_kwargs else {}),
    }
    first = hosts[0]
    return {
        "broker_url": broker,
        "transport_options": transport,
        "redbeat_url": f"redis-sentinel://{credentials}{first}/{where.db}",
        "redbeat_options": redbeat,
    }


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
    if is_sentinel_url(url):
        where = parse_sentinel_url(url)
        hosts = ",".join(f"{h}:{p}" for h, p in where.sentinels)
        return f"{SENTINEL_SCHEME}://{hosts}/{where.master}/{where.db}"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


# what Redis answers a write it refuses at `maxmemory` under `noeviction`: "OOM command not allowed
# when used memory > 'maxmemory'" (a command), "command not allowed when used memory > ..." (one
# queued in MULTI, where Redis refuses even reads and deletes once full)
_MEMORY_REFUSED = "used memory > 'maxmemory'"


def refused_for_memory(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it wraps (kombu's OperationalError, Celery's Reject), is Redis
    refusing a write because it is full. Such a write did nothing: it is to be done again once
    memory is freed, never given up (docs/operations.md, "Redis is full")."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or _MEMORY_REFUSED in str(exc):
            return True
        wrapped = getattr(exc, "reason", None)  # celery.exceptions.Reject keeps its cause there
        exc = wrapped if isinstance(wrapped, BaseException) else (exc.__cause__ or exc.__context__)
    return False
