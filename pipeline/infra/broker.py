"""The Celery broker: Redis (the default, `REDIS_URL`) or RabbitMQ (`BROKER_URL=amqp://...`, what
production runs).

On RabbitMQ every task queue is a durable quorum queue (replicated on a cluster, survives a
broker restart) with a topic exchange of its own name: Celery's native delayed delivery (a
countdown retry waits in RabbitMQ's `celery_delayed_*` queues, not in a worker's memory) routes
only through topic exchanges. Every process declares a queue with the same arguments (`queue`),
or RabbitMQ refuses the second declaration (PRECONDITION_FAILED): the shared queues here, the
per-tenant ones wherever they are first used (celeryconfig's create-missing settings, the
TenantQueues bootstep).

Native delayed delivery counts whole seconds: Celery truncates a countdown to an int and raises
(and a retry() then rejects its message, dropping it) for one under a second. `apply` makes
every process round a countdown or ETA on RabbitMQ up to the next whole second, at least 1:
never earlier than asked, and the limiter's sub-second waits (pipeline/stores/ratelimit.py) work.

Queue depth on RabbitMQ: a passive declare answers the number of messages ready (not those
delivered and unacknowledged, nor the age of the oldest: RabbitMQ's management API has the
former, nothing has the latter without consuming).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue

from pipeline.settings import is_amqp

QUORUM = {"x-queue-type": "quorum"}


def queue(name: str, amqp: bool) -> Queue:
    """The declaration of task queue `name` on the broker kind (`amqp`: RabbitMQ)."""
    if not amqp:
        return Queue(name)  # Redis: a list of that name, as before
    return Queue(name, Exchange(name, type="topic"), routing_key=name, queue_arguments=dict(QUORUM))


def bind_delayed_delivery(connection: Connection, q: Queue) -> None:
    """Route `q`'s delayed messages (countdown retries) back to it from the native delayed
    delivery exchange (a worker binds its start-up queues itself; this is for tenant queues
    added while it runs). Declares the queue too (quorum, as everywhere)."""
    from kombu.transport.native_delayed_delivery import bind_queue_to_native_delayed_delivery_exchange

    with connection.channel() as channel:
        q.bind(channel).declare()
    bind_queue_to_native_delayed_delivery_exchange(connection, q)


def ready_counts(url: str, names: Iterable[str], timeout: float = 5.0) -> dict[str, int | None]:
    """Messages ready in each queue, by a passive declare each (None: the queue does not exist
    yet, nothing was ever sent to it). Raises kombu/amqp errors when RabbitMQ is unreachable."""
    if not is_amqp(url):
        raise ValueError("ready_counts: a RabbitMQ (amqp://) URL")
    counts: dict[str, int | None] = {}
    with Connection(url, connect_timeout=timeout) as conn:
        channel: Any = conn.channel()
        for name in dict.fromkeys(names):
            try:
                _name, ready, _consumers = channel.queue_declare(name, passive=True)
                counts[name] = int(ready)
            except conn.channel_errors:  # 404 NOT_FOUND closes the channel: open another
                counts[name] = None
                channel = conn.channel()
        channel.close()
    return counts


_ORIGINAL = "_rsf_original_send_task"  # kept on the class: applying twice must not wrap twice
_COUNTDOWN_POSITION = 3  # send_task(name, args, kwargs, countdown, eta, ...)


def _send_task(self: Celery, *args: Any, **kwargs: Any) -> Any:
    if is_amqp(str(self.conf.broker_url or "")):
        args, kwargs = whole_seconds(args, kwargs)
    return getattr(Celery, _ORIGINAL)(self, *args, **kwargs)


def whole_seconds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """send_task's arguments with a countdown or ETA as a countdown of whole seconds, rounded
    up (at least 1); a countdown of 0 or less, or none, as it was."""
    args, kwargs = tuple(args), dict(kwargs)
    if len(args) > _COUNTDOWN_POSITION:  # positional countdown (and perhaps eta): make them keywords
        extra = args[_COUNTDOWN_POSITION : _COUNTDOWN_POSITION + 2]
        kwargs.update(zip(("countdown", "eta"), extra, strict=False))
        args = args[:_COUNTDOWN_POSITION] + args[_COUNTDOWN_POSITION + 2 :]
        if len(args) > _COUNTDOWN_POSITION:
            raise TypeError("send_task: pass the arguments after eta by keyword")
    countdown, eta = kwargs.get("countdown"), kwargs.get("eta")
    if eta is not None:
        when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        now = datetime.now(when.tzinfo) if when.tzinfo else datetime.now(UTC).replace(tzinfo=None)
        countdown, kwargs["eta"] = (when - now).total_seconds(), None
    if countdown is not None and countdown > 0:
        kwargs["countdown"] = max(1, math.ceil(countdown))
    elif eta is not None:
        kwargs["countdown"] = None  # an ETA already past: now
    return args, kwargs


def apply() -> None:
    """Idempotent: every Celery app of this process rounds countdowns up on RabbitMQ."""
    if not hasattr(Celery, _ORIGINAL):
        setattr(Celery, _ORIGINAL, Celery.send_task)
        Celery.send_task = _send_task  # type: ignore[method-assign]
