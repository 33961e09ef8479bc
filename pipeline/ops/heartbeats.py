"""Liveness marks in Redis: each worker, beat and the exporter says "still here" every few seconds.

A mark is a key holding the epoch seconds of the last beat, expiring after `ttl` (so a process
gone for good leaves nothing behind), plus the same time in a sorted set per kind, so the
exporter lists every worker seen lately without scanning the keyspace (a stopped worker stays
listed, its age growing, for `FORGET_AFTER_SECONDS`: what the "no heartbeat" alerts watch).
A worker's mark is the time of its event loop's last tick (`LoopHeartbeat`, installed by
`tasks/heartbeat.py`), so a frozen loop stops it; `worker_check` compares its age with
`STALE_AFTER_SECONDS`. The loop only stamps the time; a thread of its own writes it, so a Redis
that stops answering never holds the loop.

The health checks (`worker_check`, `beat_check`, and `http_check` for the web tier and the
exporter) each answer (healthy, one line why); `rokt-sfmc healthcheck` prints the line and
turns the answer into its exit code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from pipeline.infra import keys

KINDS = ("worker", "beat", "exporter")
STALE_AFTER_SECONDS = 60
# a process silent this long drops out of `seen()` (a worker scaled away, renamed)
FORGET_AFTER_SECONDS = 3600
# while a repeated write keeps failing, one log line this often (and one when it works again)
FAILURE_LOG_EVERY_SECONDS = 60.0

log = logging.getLogger(__name__)


def beat(r: redis.Redis, kind: str, name: str, ttl: int = 120, at: float | None = None) -> None:
    """Record that `name` (of `kind`) was alive at `at` (epoch seconds; default now): one round trip."""
    now = time.time() if at is None else at
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


class FailureLog:
    """The log of an action retried every few seconds (a heartbeat): a warning when it starts
    failing, then at most one line every `every` seconds while it goes on (with the count), and
    one when it works again, instead of a line (and a traceback) per try. A line names the
    error's type and message only (a redis-py error says host and port, never the password)."""

    def __init__(
        self,
        what: str,
        every: float = FAILURE_LOG_EVERY_SECONDS,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.every = every
        self.logger = logger
        self.clock = clock
        self.failures = 0  # since it last worked
        self._unsaid = 0  # failures since the last line
        self._said_at = float("-inf")

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._unsaid += 1
        now = self.clock()
        if self.failures > 1 and now - self._said_at < self.every:
            return
        more = f" ({self._unsaid} failures in {now - self._said_at:.0f} s)" if self.failures > 1 else ""
        self.logger.warning(
            "%s failed%s: %s: %s; trying again, next line in %.0f s unless it works",
            self.what, more, type(exc).__name__, exc, self.every,
        )  # fmt: skip
        self._said_at = now
        self._unsaid = 0

    def succeeded(self) -> None:
        if self.failures:
            self.logger.info("%s works again (%d failed tries)", self.what, self.failures)
        self.failures = 0
        self._unsaid = 0
        self._said_at = float("-inf")


class LoopHeartbeat:
    """A process's heartbeat, stamped by its event loop and written by a thread of its own.

    Why a thread rather than a short timeout on the loop's own call: a Redis that stops
    answering (frozen, or behind a network that drops packets) would still hold the loop for
    the timeout on every tick, and a shorter timeout turns a Redis that is merely slow into
    missed beats. The loop's part, `tick()`, reads the clock and sets an event: it never
    waits. The thread writes the time of the loop's last tick, and nothing when the loop has
    not ticked since its last write, so a frozen loop still stops the mark (the health check
    and the "no heartbeat" alert see it as before). The thread's client (`client()`, e.g.
    `redis_clients.liveness_client`) has a short timeout and no retries: a write that hangs is
    a failed beat (logged by `FailureLog`), the next tick is the retry, and beats resume within
    one tick of Redis answering again.
    """

    def __init__(self, client: Callable[[], redis.Redis], kind: str, name: str) -> None:
        self.client = client
        self.kind = kind
        self.name = name
        self.failures = FailureLog(f"{kind} heartbeat of {name}")
        self._ticked_at: float | None = None
        self._written: float | None = None
        self._wake = threading.Event()
        self._closing = False
        self._forget = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the writer thread (again after a fork or a close); a running one is kept."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._closing = self._forget = False
        self._thread = threading.Thread(target=self.run, name=f"{self.kind}-heartbeat", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        """Called from the event loop: this moment is the mark to write. No I/O."""
        self._ticked_at = time.time()
        self._wake.set()

    def close(self, forget: bool = False, timeout: float = 5.0) -> None:
        """Stop the thread (after the write under way); with `forget`, it removes the mark
        first (a process leaving on purpose). Waits at most `timeout` seconds."""
        self._forget = forget
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        """The thread: write each new tick until closed."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                break
            self.write_pending()
        if self._forget:
            try:
                forget(self.client(), self.kind, self.name)
            except Exception as exc:  # Redis away: the mark ages and drops out after an hour
                log.warning("%s heartbeat of %s not removed: %s", self.kind, self.name, type(exc).__name__)

    def write_pending(self) -> bool:
        """Write the last tick if it is newer than the last mark written; whether one was."""
        at = self._ticked_at
        if at is None or at == self._written:
            return False
        try:
            beat(self.client(), self.kind, self.name, at=at)
        except Exception as exc:  # Redis away or slow: the next tick tries again; the mark ages
            self.failures.failed(exc)
            return False
        self._written = at
        self.failures.succeeded()
        return True
