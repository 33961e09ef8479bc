"""Liveness marks in Redis: each worker, beat and the exporter says "still here" every few seconds.

A mark is a key holding the epoch seconds of the last beat, expiring after `ttl` (so a process
gone for good leaves nothing behind), plus the same time in a sorted set per kind, so the
exporter lists every worker seen lately without scanning the keyspace (a stopped worker stays
listed, its age growing, for `FORGET_AFTER_SECONDS`: what the "no heartbeat" alerts watch).
A worker writes its mark from its own event loop (`tasks/heartbeat.py`), so a frozen loop
stops it; `worker_check` compares its age with `STALE_AFTER_SECONDS`.

The health checks (`worker_check`, `beat_check`, and `http_check` for the web tier and the
exporter) each answer (healthy, one line why); `rokt-sfmc healthcheck` prints the line and
turns the answer into its exit code.
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


def http_check(url: str, what: str) -> tuple[bool, str]:
    """`what` (web, exporter) is healthy when `url` (its /healthz) answers 200."""
    import requests

    try:
        answer = requests.get(url, timeout=(2, 5))
    except requests.RequestException as exc:
        return False, f"{what} unreachable at {url}: {type(exc).__name__}"
    if answer.status_code != 200:
        return False, f"{what} answered {answer.status_code} at {url}"
    return True, f"{what} answered 200 at {url}"


def worker_check(r: redis.Redis, hostname: str) -> tuple[bool, str]:
    """A worker named `hostname` (`worker-1@host`) or any worker on host `hostname` (its name
    ends with `@hostname`, as `--hostname worker-<n>@%h` names them) beat recently."""
    marks = seen(r, "worker")
    mine = {name: ago for name, ago in marks.items() if name == hostname or name.endswith(f"@{hostname}")}
    if not mine:
        return False, f"no worker heartbeat for {hostname!r} (seen: {', '.join(sorted(marks)) or 'none'})"
    name, ago = min(mine.items(), key=lambda item: item[1])
    if ago >= STALE_AFTER_SECONDS:
        return False, f"worker {name}: last heartbeat {ago:.0f} s ago (stale after {STALE_AFTER_SECONDS} s)"
    return True, f"worker {name}: heartbeat {ago:.0f} s ago"


def beat_check(r: redis.Redis) -> tuple[bool, str]:
    """Beat is ticking: its scheduler's mark (`tasks/beat.py`) is younger than `STALE_AFTER_SECONDS`."""
    ago = age(r, "beat", "beat")
    if ago is None:
        return False, "no beat heartbeat"
    if ago >= STALE_AFTER_SECONDS:
        return False, f"beat: last tick {ago:.0f} s ago (stale after {STALE_AFTER_SECONDS} s)"
    return True, f"beat: last tick {ago:.0f} s ago"
