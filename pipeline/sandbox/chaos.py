"""Fault injection for `rokt-sfmc demo --chaos ...` (and the chaos tests that run it).

- kill-workers: SIGKILL a whole Celery worker (main process and pool) every few seconds and
  start a new one; on Redis its unacknowledged messages only come back after the visibility
  timeout, so the reconciler's re-drive is what saves them; on RabbitMQ (BROKER_URL) the broker
  hands them to another worker at once.
- restart-redis: stop Redis once mid-run (a clean shutdown: AOF is fsynced) and start it again;
  then every worker must answer `inspect ping` again: the worst wait is reported as
  `ping_after_redis_restart_s` (remote control survives a Redis restart, celeryconfig.py).
- crash-redis: SIGKILL the Redis process once mid-run (no shutdown, no fsync) and start it again
  from its AOF: every write Redis had answered had reached the kernel (`appendfsync everysec`
  writes the AOF before it answers), so nothing is lost (`lost: 0`); what a lost *machine*
  costs is another matter (docs/architecture.md, Durability). Workers must answer a ping again as above.
- redis-full: cap Redis' `maxmemory` just above what it uses for REDIS_FULL_SECONDS mid-run, then
  restore it (Redis runs `noeviction`): writes are refused with OOM meanwhile; execute answers 503
  (JB retries), workers wait and retry, nothing is dropped (docs/operations.md, "Redis is full").
- kill-postgres: SIGKILL the history store's PostgreSQL once mid-run and start it again
  `POSTGRES_DOWN_SECONDS` later (it recovers from its WAL); meanwhile finished executions wait in
  the history outbox (execute and the chain never touch the store), so the demo still reports
  `lost: 0` and, once the flush caught up, every execution in the store. The demo starts a
  PostgreSQL of its own for it (pipeline/sandbox/postgres.py).
- rokt-faults: 20% 5xx, bursts of 429, 2 s latency spikes.
- sfmc-faults: 30 s tokens, 429 (50100) bursts, occasional 500.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import requests

SCENARIOS = (
    "kill-workers",
    "restart-redis",
    "crash-redis",
    "redis-full",
    "kill-postgres",
    "rokt-faults",
    "sfmc-faults",
)
PING_AFTER_REDIS_RESTART = "ping_after_redis_restart_s"
REDIS_FULL_AFTER_SECONDS = 2.0  # while executes still arrive, so the web tier meets it too
REDIS_FULL_SECONDS = 5.0  # below jbsim's retry window under chaos (6 retries, 1 s apart)
# the cap: what Redis uses at that moment, so the next writes are refused (64 KiB above it, a run
# whose workers were freeing memory then (acks, tombstones) saw no refusal at all)
REDIS_FULL_MARGIN_BYTES = 0
POSTGRES_DOWN_SECONDS = 5.0  # how long the killed PostgreSQL stays down (kill-postgres)
POSTGRES_KILL_AFTER = 3.0  # seconds into the run: executions are finishing by then


def parse_scenarios(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown chaos scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    return names


@dataclass
class ChaosHooks:
    """What the chaos needs from the stack that runs it."""

    rokt_url: str
    sfmc_url: str
    rokt_rate_limit: float
    kill_and_replace_worker: Callable[[], None]
    # restarts Redis; returns the seconds until every worker answered a ping again (or None)
    restart_redis: Callable[[], float | None] | None = None
    # the same after a SIGKILL of the Redis process (restarted from its AOF)
    crash_redis: Callable[[], float | None] | None = None
    # the stack's Redis, for redis-full (CONFIG SET maxmemory)
    redis: redis.Redis | None = None
    # SIGKILLs the history store's PostgreSQL, waits the given seconds, starts it again
    kill_postgres: Callable[[float], None] | None = None


@dataclass
class Chaos:
    scenarios: tuple[str, ...]
    hooks: ChaosHooks
    counts: Counter = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _postgres_thread: threading.Thread | None = None

    def start(self) -> Chaos:
        if "kill-postgres" in self.scenarios:  # its own thread: down for seconds, nothing else waits
            self._postgres_thread = threading.Thread(target=self._kill_postgres, daemon=True, name="chaos-pg")
            self._postgres_thread.start()
        if "rokt-faults" in self.scenarios:
            self._faults("rokt", error_rate=0.2)
        if "sfmc-faults" in self.scenarios:
            self._faults("sfmc", token_lifetime=30, error_rate=0.05)
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop injecting and restore healthy simulators; returns what was injected."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._postgres_thread is not None:  # PostgreSQL is back before the demo goes on
            self._postgres_thread.join(120)
        if "rokt-faults" in self.scenarios:
            self._faults("rokt", error_rate=0, latency_ms=0, rate_limit=self.hooks.rokt_rate_limit)
        if "sfmc-faults" in self.scenarios:
            self._faults("sfmc", error_rate=0, rate_limit=0, token_lifetime=0)
        return dict(self.counts)

    def _faults(self, simulator: str, **values: float) -> None:
        url = self.hooks.rokt_url if simulator == "rokt" else self.hooks.sfmc_url
        requests.post(f"{url}/__sandbox__/faults", json=values, timeout=5).raise_for_status()

    def _run(self) -> None:
        started = time.monotonic()
        next_kill, redis_done, redis_crashed, redis_filled = started + 3, False, False, False
        next_rokt_burst, next_sfmc_burst, next_spike = started + 2, started + 3, started + 5
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if "kill-workers" in self.scenarios and now >= next_kill:
                self.hooks.kill_and_replace_worker()
                self.counts["worker_kills"] += 1
                next_kill = now + random.uniform(3, 5)
            if "restart-redis" in self.scenarios and not redis_done and now - started > 4:
                self._redis_down(self.hooks.restart_redis, "redis_restarts")
                redis_done = True
            if "crash-redis" in self.scenarios and not redis_crashed and now - started > 5:
                self._redis_down(self.hooks.crash_redis, "redis_crashes")
                redis_crashed = True
            redis_full_due = now - started > REDIS_FULL_AFTER_SECONDS
            if "redis-full" in self.scenarios and not redis_filled and redis_full_due:
                self._redis_full()
                redis_filled = True
            if "rokt-faults" in self.scenarios:
                if now >= next_rokt_burst:  # a 429 burst: the account briefly allows 3/s
                    self._burst("rokt", {"rate_limit": 3}, {"rate_limit": self.hooks.rokt_rate_limit}, 1.5)
                    self.counts["rokt_429_bursts"] += 1
                    next_rokt_burst = now + 6
                if now >= next_spike:
                    self._burst("rokt", {"latency_ms": 2000}, {"latency_ms": 0}, 2.0)
                    self.counts["rokt_latency_spikes"] += 1
                    next_spike = now + 8
            if "sfmc-faults" in self.scenarios and now >= next_sfmc_burst:
                self._burst("sfmc", {"rate_limit": 2}, {"rate_limit": 0}, 1.5)
                self.counts["sfmc_429_bursts"] += 1
                next_sfmc_burst = now + 7

    def _kill_postgres(self) -> None:
        """kill-postgres: once, `POSTGRES_KILL_AFTER` seconds in (unless stopped before)."""
        if self.hooks.kill_postgres is None or self._stop.wait(POSTGRES_KILL_AFTER):
            return
        self.hooks.kill_postgres(POSTGRES_DOWN_SECONDS)
        self.counts["postgres_kills"] += 1

    def _redis_down(self, hook: Callable[[], float | None] | None, count: str) -> None:
        """Take Redis down once through `hook`; the worst wait until every worker answered a ping
        again is the report's `ping_after_redis_restart_s`."""
        if hook is None:
            return
        took = hook()
        self.counts[count] += 1
        if took is not None:  # at least 0.1: the report's figures are all > 0
            worst = max(self.counts.get(PING_AFTER_REDIS_RESTART, 0), round(took, 1), 0.1)
            self.counts[PING_AFTER_REDIS_RESTART] = worst

    def _redis_full(self) -> None:
        """Cap maxmemory just above used memory for REDIS_FULL_SECONDS, then restore it. The cap is
        restored even if the stop comes first; the report counts the writes Redis refused."""
        r = self.hooks.redis
        if r is None:
            return
        before = r.config_get("maxmemory")["maxmemory"]
        refused_before = _oom_refusals(r)
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + REDIS_FULL_MARGIN_BYTES)
        try:
            self._stop.wait(REDIS_FULL_SECONDS)
        finally:
            r.config_set("maxmemory", before)
        self.counts["redis_full_periods"] += 1
        self.counts["redis_full_seconds"] += REDIS_FULL_SECONDS
        self.counts["redis_oom_refusals"] += _oom_refusals(r) - refused_before

    def _burst(self, simulator: str, during: dict, after: dict, seconds: float) -> None:
        self._faults(simulator, **during)
        self._stop.wait(seconds)
        self._faults(simulator, **after)


def _oom_refusals(r: redis.Redis) -> int:
    """Commands Redis refused for memory so far (INFO errorstats, Redis >= 6.2)."""
    return int(r.info("errorstats").get("errorstat_OOM", {}).get("count", 0))
