"""A worker bootstep: consume each active tenant's own queues, tenants added at run time included.

Every `SYNC_SECONDS` the worker compares the tenant registry with the queues it consumes and adds
`render.<t>` / `rokt.<t>` of a new or re-enabled tenant, and cancels those of a disabled one (its
messages wait in their queue, untouched, until it is enabled again). A thread of the step reads
the registry from Redis (`refresh`); the event loop only compares what it read last (`sync`,
every `APPLY_SECONDS`), so a Redis that stops answering never holds the loop: the worker keeps
the queues it has until the registry answers again. It changes only this worker's
own consumer, so it needs no remote control. A worker started with `-Q` takes per-tenant queues
only of the stages it serves: `render.<t>` when it consumes `render`, `rokt.<t>` when `rokt`; a
tenant's queue named on `-Q` itself (a worker dedicated to one brand) is kept while the tenant is
active, and paused while it is disabled.

On RabbitMQ a queue it adds is declared as every process declares it (a quorum queue with its
topic exchange, pipeline/infra/broker.py) and bound to the native delayed-delivery exchange, so a
countdown retry of that tenant's tasks comes back to it. Celery's own DelayedDelivery step binds
every queue the app knows, consumed or not, and a queue nobody declared yet makes it fail (a
worker of `-Q rokt` on a new vhost: `render` has no exchange yet), and with it every binding
after it on that channel: a delayed retry would then be dropped. So every worker declares all
the app's queues before its consumer starts (`declare_queues`), and binds them again once that
step has run (at each consumer start, reconnections included).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps, signals

from pipeline.infra import broker
from pipeline.infra.queues import RENDER_QUEUE, ROKT_QUEUE, render_queue, rokt_queue
from pipeline.ops.heartbeats import FailureLog
from pipeline.settings import is_amqp
from pipeline.tenancy.handles import get_runtime
from pipeline.vocabulary import TenantStatus

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0  # how often the registry is read
APPLY_SECONDS = 1.0  # how often the loop looks for a new read (a dictionary compare, no I/O)
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


@signals.celeryd_after_setup.connect
def declare_queues(sender: Any = None, instance: Any = None, **_kwargs: Any) -> None:
    """On RabbitMQ, before the consumer starts: every queue of the app declared (exchange, queue,
    binding), so Celery's DelayedDelivery step finds each one it binds."""
    app = getattr(instance, "app", None)
    if app is None or not is_amqp(str(app.conf.broker_url)):
        return
    try:
        with app.connection_for_write() as connection, connection.channel() as channel:
            for queue in list(app.amqp.queues.values()):
                queue.bind(channel).declare()
    except Exception:  # RabbitMQ away: the consumer's start retries, TenantQueues binds then
        log.warning("tenant queues: the app's queues not declared before start", exc_info=True)


class TenantQueues(bootsteps.StartStopStep):
    # after Celery's DelayedDelivery (on RabbitMQ): `start` binds the app's queues again
    requires = {
        "celery.worker.consumer.tasks:Tasks",
        "celery.worker.consumer.delayed_delivery:DelayedDelivery",
    }

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None
        self.named: frozenset[str] | None = None  # tenant queues of `-Q`, read at the first start
        self.statuses: dict[str, TenantStatus] | None = None  # the registry's last read (None: none yet)
        self._applied: dict[str, TenantStatus] | None = None  # the read `sync` last acted on
        self.failures = FailureLog("tenant queues: reading the tenant registry", logger=log)
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self, consumer: Any) -> None:
        if self.named is None and consumer.task_consumer is not None:
            self.named = frozenset(q.name for q in consumer.task_consumer.queues if is_tenant_queue(q.name))
        if self._reader is None or not self._reader.is_alive():
            self._stop.clear()
            self._reader = threading.Thread(target=self.read_forever, name="tenant-queues", daemon=True)
            self._reader.start()
        self._applied = None  # a restarted consumer has the queues it started with: compare again
        if is_amqp(str(consumer.app.conf.broker_url)):
            try:
                declare_amqp_queues(consumer.app, list(consumer.app.amqp.queues))
            except Exception:  # RabbitMQ away: the consumer restarts once it is back, and so does this
                log.warning("tenant queues: delayed-delivery bindings not made", exc_info=True)
            # not now: on RabbitMQ a message delivered while basic_consume waits for its answer
            # reaches the task consumer before the event loop has given it a callback (the worker
            # dies: "Consumer does not have any callbacks"); from the event loop it is safe
            consumer.timer.call_after(0.0, self.sync, (consumer,), priority=10)
        else:
            self.sync(consumer)
        self._timer = consumer.timer.call_repeatedly(APPLY_SECONDS, self.sync, (consumer,), priority=10)

    def stop(self, consumer: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)
        self._stop.set()  # the reader ends after the read under way (a daemon: never waited for)

    def read_forever(self) -> None:
        """The reader thread: the registry every `SYNC_SECONDS` until the worker shuts down."""
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(SYNC_SECONDS)

    def refresh(self) -> None:
        """Read every tenant's status (Redis, cached for `tenant_refresh_seconds`), for `sync`."""
        try:
            statuses = {name: t.status for name, t in get_runtime().registry.all().items()}
        except Exception as exc:  # Redis away: keep consuming what we have, try again at the next read
            self.failures.failed(exc)
            return
        self.failures.succeeded()
        self.statuses = statuses

    def sync(self, consumer: Any) -> None:
        """From the event loop: follow the registry's last read, once per read. No Redis."""
        statuses = self.statuses
        if statuses is None or statuses is self._applied:
            return
        task_consumer = consumer.task_consumer
        if task_consumer is None:
            return
        self._applied = statuses
        consuming = {queue.name for queue in task_consumer.queues}
        wanted = wanted_queues(statuses, consuming, getattr(self, "named", None) or frozenset())
        for queue in sorted(wanted - consuming):
            if is_amqp(str(consumer.app.conf.broker_url)):
                try:
                    declare_amqp_queues(consumer.app, [queue])
                except Exception:  # RabbitMQ away: the next read tries again
                    log.warning("tenant queues: %s not declared; next time", queue, exc_info=True)
                    continue
            consumer.add_task_queue(queue)
        for queue in sorted(q for q in consuming - wanted if is_tenant_queue(q)):
            consumer.cancel_task_queue(queue)


def declare_amqp_queues(app: Any, names: list[str]) -> None:
    """These queues in the worker's queue table as every process declares them on RabbitMQ,
    declared, and bound to the native delayed-delivery exchange (which the worker declared at
    start)."""
    queues = app.amqp.queues
    with app.connection_for_write() as connection:
        for name in names:
            q = queues[name] if name in queues else queues.add(broker.queue(name, amqp=True))
            broker.bind_delayed_delivery(connection, q)
