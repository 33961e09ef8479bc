"""Liveness marks in Redis: each worker, beat and the exporter says "still here" every few seconds.

A mark is a key holding the epoch seconds of the last beat, expiring after `ttl` (so a process
gone for good leaves nothing behind), plus the same time in a sorted set per kind, so the
exporter lists every worker seen lately without scanning the keyspace (a stopped worker stays
listed, its age growing, for `FORGET_AFTER_SECONDS`: what the "no heartbeat" alerts watch).
A worker writes its mark from its own event loop (`tasks/heartbeat.py`), so a frozen loop
stops it; `rokt-sfmc healthcheck` compares its age with `STALE_AFTER_SECONDS`.
"""

from __future__ import annotations

import time

import redis

from pipeline.infra import keys

KINDS = ("worker", "beat", "exporter")
STALE_AFTER_SECONDS = 60
# a process silent this long drops out of `seen()` (a worker scaled away, renamed)
FORGET_AFTER_SECONDS = 3600


def beat(r: redis.Redis, kind: str, name: str, ttl: int = 120) -> None:
    """Record that `name` (of `kind`) is alive now: one round trip."""
    now = time.time()
    pipe = r.pipeline(transaction=False)
    pipe.set(keys.heartbeat(kind, name), repr(now), ex=ttl)
    pipe.zadd(keys.heartbeats_seen(kind), {name: now})
    pipe.zremrangebyscore(keys.heartbeats_seen(kind), "-inf", now - FORGET_AFTER_SECONDS)
    pipe.execute()


def age(r: redis.Redis, kind: str, name: str) -> float | None:
    """Seconds since `name` last beat, or None when it never did (or longer ago than its ttl)."""
    raw = r.get(keys.heartbeat(kind, name))
    if raw is None:
        return None
    return max(0.0, time.time() - float(raw))


def seen(r: redis.Redis, kind: str) -> dict[str, float]:
    """Every `kind` process that beat in the last `FORGET_AFTER_SECONDS`: name -> seconds since."""
    now = time.time()
    marks = r.zrangebyscore(keys.heartbeats_seen(kind), now - FORGET_AFTER_SECONDS, "+inf", withscores=True)
    return {name: max(0.0, now - score) for name, score in marks}


def forget(r: redis.Redis, kind: str, name: str) -> None:
    """Drop a process from the list (a worker retired on purpose)."""
    pipe = r.pipeline(transaction=False)
    pipe.delete(keys.heartbeat(kind, name))
    pipe.zrem(keys.heartbeats_seen(kind), name)
    pipe.execute()
