"""A worker bootstep: write this worker's heartbeat to Redis every `INTERVAL_SECONDS`.

The timer is the consumer's own (it fires from the worker's event loop), so a worker whose
loop is frozen stops beating even though its process stays up: `rokt-sfmc healthcheck worker`
and the "no worker heartbeat" alert see it (`pipeline.ops.heartbeats`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from pipeline.ops import heartbeats
from pipeline.tenancy.handles import get_runtime

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 10.0


class Heartbeat(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, consumer: Any) -> None:
        self.beat(consumer)
        self._timer = consumer.timer.call_repeatedly(INTERVAL_SECONDS, self.beat, (consumer,), priority=10)

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, consumer: Any) -> None:
        """The worker is leaving on purpose (not a consumer restart after a lost connection):
        it leaves the list too, so "a worker's heartbeat is stale" does not fire for an hour."""
        self.stop(consumer)
        try:
            heartbeats.forget(get_runtime().redis, "worker", consumer.hostname)
        except Exception:
            log.warning("heartbeat not removed (Redis unavailable?)", exc_info=True)

    def beat(self, consumer: Any) -> None:
        try:
            heartbeats.beat(get_runtime().redis, "worker", consumer.hostname)
        except Exception:  # Redis away: the next tick tries again; the mark ages meanwhile
            log.warning("heartbeat not written (Redis unavailable?)", exc_info=True)
