"""A worker bootstep: consume each active tenant's own queues, tenants added at run time included.

Every `SYNC_SECONDS` the worker compares the tenant registry with the queues it consumes and adds
`render.<t>` / `rokt.<t>` of a new or re-enabled tenant, and cancels those of a disabled one (its
messages wait in their queue, untouched, until it is enabled again). It changes only this worker's
own consumer, so it needs no remote control. A worker started with `-Q` takes per-tenant queues
only of the stages it serves: `render.<t>` when it consumes `render`, `rokt.<t>` when `rokt`; a
tenant's queue named on `-Q` itself (a worker dedicated to one brand) is kept while the tenant is
active, and paused while it is disabled.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from pipeline.queues import RENDER_QUEUE, ROKT_QUEUE, render_queue, rokt_queue
from pipeline.runtime import get_runtime
from pipeline.vocabulary import TenantStatus

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0
# the shared queue whose consumer takes each per-tenant queue, and how to name that queue
_STAGES = ((RENDER_QUEUE, render_queue), (ROKT_QUEUE, rokt_queue))


def wanted_queues(
    statuses: dict[str, TenantStatus], serves: set[str], named: frozenset[str] = frozenset()
) -> set[str]:
    """The per-tenant queues a worker serving the shared queues `serves` should consume, and
    those of the tenant queues it was started with (`named`) whose tenant is active."""
    active = {name for name, status in statuses.items() if status == TenantStatus.ACTIVE}
    wanted = {queue_of(name) for name in active for shared, queue_of in _STAGES if shared in serves}
    return wanted | {queue for queue in named if tenant_of(queue) in active}


def tenant_of(queue: str) -> str:
    return queue.split(".", 1)[1] if is_tenant_queue(queue) else ""


def is_tenant_queue(queue: str) -> bool:
    return any(queue.startswith(shared + ".") for shared, _queue_of in _STAGES)


class TenantQueues(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self.named: frozenset[str] | None = None  # tenant queues of `-Q`, read at the first start

    def start(self, consumer: Any) -> None:
        if self.named is None and consumer.task_consumer is not None:
            self.named = frozenset(q.name for q in consumer.task_consumer.queues if is_tenant_queue(q.name))
        self.sync(consumer)
        self._timer = consumer.timer.call_repeatedly(SYNC_SECONDS, self.sync, (consumer,), priority=10)

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    shutdown = stop

    def sync(self, consumer: Any) -> None:
        try:
            statuses = {name: t.status for name, t in get_runtime().registry.all().items()}
        except Exception:  # Redis away: keep consuming what we have, try again at the next tick
            log.warning("tenant queues: registry unavailable; unchanged", exc_info=True)
            return
        task_consumer = consumer.task_consumer
        if task_consumer is None:
            return
        consuming = {queue.name for queue in task_consumer.queues}
        wanted = wanted_queues(statuses, consuming, getattr(self, "named", None) or frozenset())
        for queue in sorted(wanted - consuming):
            consumer.add_task_queue(queue)
        for queue in sorted(q for q in consuming - wanted if is_tenant_queue(q)):
            consumer.cancel_task_queue(queue)
