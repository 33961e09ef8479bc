"""The intake pump (pipeline/journeys/intake.py) as a worker bootstep: a thread in the main process of
every worker that serves the render stage (`render` or a `render.<tenant>` queue), one consumer
of the intake group named after the worker (`worker-1@host`), so a restarted worker takes up
what it held. `python -m pipeline.journeys.intake` runs one on its own (benchmarks, or to run the pump
apart from the workers).

Why a worker thread, not a service of its own: nothing more to deploy, supervise or scale (each
render worker adds a pump, and a lost one's entries are taken over by the others); the pump
waits on Redis and on the broker, so it costs the worker's main process little CPU. It starts
after the pool (the first prefork children are forked before the thread exists; a child forked
later inherits the pump's Redis pool, which redis-py rebuilds in a new process).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from pipeline.infra.queues import RENDER_QUEUE
from pipeline.journeys import intake

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0


def serves_render(queue_names: set[str]) -> bool:
    return any(name == RENDER_QUEUE or name.startswith(RENDER_QUEUE + ".") for name in queue_names)


class IntakePump(bootsteps.StartStopStep):
    """Runs the pump while the worker runs; stops it (within STOP_TIMEOUT) at shutdown."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        queues = {q.name for q in worker.app.amqp.queues.consume_from.values()}
        if not serves_render(queues):
            log.info("intake pump: off (this worker serves no render queue)")
            return
        pump = intake.default_pump(worker.hostname)
        self._stop.clear()
        self._thread = threading.Thread(target=pump.run, args=(self._stop,), name="intake-pump", daemon=True)
        self._thread.start()
        log.info("intake pump %s started", worker.hostname)

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None

    shutdown = stop
