"""The deployment's salt: the secret that keys `keys.personal_digest` and the erasure audit's hashes.

It is a random value Redis holds (`keys.privacy_salt`), created on first use with SET NX and
never changed, so it lives, persists and is backed up with the names it keys: a restored Redis
brings the salt its names were made with. A setting would not do: SECRET_KEY rotates, and a
rotated key would orphan every name made with the old one.

Read once per process and Redis connection pool, then looked at again every `RECHECK_SECONDS`
(one round trip a minute, never one per key name): should Redis have lost it with its data (a
failover to an empty replica), the process sets the salt it holds again (SET NX), or takes the
one another process set first, so every process names a person alike again within that time.
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from typing import Any

import redis

from pipeline.infra import keys

RECHECK_SECONDS = 60.0

_held: weakref.WeakKeyDictionary[Any, tuple[str, float]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def deployment_salt(r: redis.Redis | redis.client.Pipeline) -> str:
    """The salt, from this process's copy while fresh, else from Redis (created when absent). A
    pipeline is looked up through its client's pool (its own queued commands are not run)."""
    pool = r.connection_pool
    now = time.monotonic()
    held = _held.get(pool)
    if held is not None and now - held[1] < RECHECK_SECONDS:
        return held[0]
    client = redis.Redis(connection_pool=pool) if isinstance(r, redis.client.Pipeline) else r
    try:
        salt = _read_or_create(client, held[0] if held else secrets.token_hex(32))
    except redis.RedisError:
        if held is None:
            raise
        return held[0]  # a recheck only: the command this name is for meets the same Redis
    with _lock:
        _held[pool] = (salt, now)
    return salt


def _read_or_create(client: redis.Redis, candidate: str) -> str:
    """A read when it exists (a full Redis refuses every SET, even one that would change
    nothing); else SET NX `candidate` and read again, so that the first process's one wins."""
    salt = client.get(keys.privacy_salt())
    if salt is None:
        client.set(keys.privacy_salt(), candidate, nx=True)
        salt = client.get(keys.privacy_salt())
    return salt.decode() if isinstance(salt, bytes) else str(salt)


def forget_held() -> None:
    """Drop this process's copies (tests that swap Redis's content under one client)."""
    with _lock:
        _held.clear()
