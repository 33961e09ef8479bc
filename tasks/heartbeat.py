"""A worker bootstep: this worker's heartbeat, stamped by its event loop every `INTERVAL_SECONDS`.

The timer is the consumer's own (it fires from the worker's event loop), so a worker whose
loop is frozen stops beating even though its process stays up: `rokt-sfmc healthcheck worker`
and the "no heartbeat" alert see it (`pipeline.ops.heartbeats`). The timer only stamps the
time; `heartbeats.LoopHeartbeat`'s thread writes it to Redis on a short-timeout client, so a
Redis that stops answering never holds the loop (which keeps consuming from the broker and
answering remote control).
"""

from __future__ import annotations

from typing import Any

import redis
from celery import bootsteps

from pipeline.infra.redis_clients import liveness_client
from pipeline.ops import heartbeats
from pipeline.tenancy.handles import get_runtime

INTERVAL_SECONDS = 10.0
# how long a worker leaving on purpose waits for its mark to be removed
FORGET_TIMEOUT_SECONDS = 5.0


def heartbeat_redis() -> redis.Redis:
    return liveness_client(get_runtime().settings.redis_url)


class Heartbeat(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self.heart: heartbeats.LoopHeartbeat | None = None

    def start(self, consumer: Any) -> None:
        if self.heart is None:
            self.heart = heartbeats.LoopHeartbeat(heartbeat_redis, "worker", consumer.hostname)
        self.heart.start()
        self.heart.tick()
        self._timer = consumer.timer.call_repeatedly(INTERVAL_SECONDS, self.heart.tick, priority=10)

    def stop(self, consumer: Any) -> None:
        """A consumer restart (a lost broker connection): no ticks meanwhile, so no marks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, consumer: Any) -> None:
        """The worker is leaving on purpose (not a consumer restart after a lost connection):
        it leaves the list too, so "a worker's heartbeat is stale" does not fire for an hour."""
        self.stop(consumer)
        if self.heart is not None:
            self.heart.close(forget=True, timeout=FORGET_TIMEOUT_SECONDS)
