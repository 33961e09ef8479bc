"""Celery beat's scheduler: RedBeat (schedule and lock in Redis) that also writes beat's heartbeat.

Run beat with `-S tasks.beat:HeartbeatScheduler` (or `beat_scheduler` in celeryconfig). Beat
ticks at least every `beat_max_loop_interval` seconds; each tick, once it has run what was due,
marks beat alive (`pipeline.ops.heartbeats`, kind "beat"), so a silent beat shows on the exporter's
`rsf_beat_last_tick_age_seconds` and in `rokt-sfmc healthcheck beat`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redis.exceptions import AuthorizationError

from pipeline.infra.redis_clients import refused_for_memory
from pipeline.ops import heartbeats
from pipeline.tenancy.handles import get_runtime

log = logging.getLogger(__name__)

BEAT_NAME = "beat"
MIN_WRITE_INTERVAL_SECONDS = 5.0  # ticks come faster when tasks are due: one write is enough
REDIS_AWAY_RETRY_SECONDS = 1.0
AWAY_WARNING_INTERVAL_SECONDS = 30.0


class HeartbeatScheduler(RedBeatScheduler):
    _last_heartbeat = float("-inf")
    _last_away_warning = float("-inf")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            remaining = super().tick(*args, **kwargs)
        except (redis.AuthenticationError, AuthorizationError):
            raise  # a wrong password or ACL does not pass: exit, loudly
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis away or still loading its AOF (BusyLoadingError) for a moment: try again soon
            # instead of exiting (RsfBeatSilent fires if it lasts). A lock lost meanwhile raises
            # LockNotOwnedError at the next extend, which is not caught: another beat may hold it.
            now = time.monotonic()
            if now - self._last_away_warning >= AWAY_WARNING_INTERVAL_SECONDS:
                self._last_away_warning = now
                log.warning(
                    "beat: Redis unavailable (%s); ticking again every %.0f s", exc, REDIS_AWAY_RETRY_SECONDS
                )
            return REDIS_AWAY_RETRY_SECONDS
        except redis.RedisError as exc:
            if not refused_for_memory(exc):
                raise
            # Redis full: RedBeat reads its schedule in MULTI, which a full Redis refuses whole;
            # beat pauses (nothing sent meanwhile would be accepted anyway) instead of exiting
            now = time.monotonic()
            if now - self._last_away_warning >= AWAY_WARNING_INTERVAL_SECONDS:
                self._last_away_warning = now
                log.warning("beat: Redis is full; ticking again every %.0f s", REDIS_AWAY_RETRY_SECONDS)
            return REDIS_AWAY_RETRY_SECONDS
        now = time.monotonic()
        if now - self._last_heartbeat >= MIN_WRITE_INTERVAL_SECONDS:
            try:
                heartbeats.beat(get_runtime().redis, "beat", BEAT_NAME)
                self._last_heartbeat = now
            except Exception:  # Redis away: RedBeat itself fails loudly; the mark ages meanwhile
                log.warning("beat heartbeat not written (Redis unavailable?)", exc_info=True)
        return remaining
