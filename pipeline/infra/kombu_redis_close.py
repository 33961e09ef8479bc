"""A local fix to kombu's Redis transport (kombu 5.7.0): a channel closes cleanly when Redis restarts.

Applied by the Celery app (`tasks`: workers, beat, Flower) and by the producer
(`pipeline.infra.dispatch`).

What it fixes: with remote control on, a worker has two sockets to Redis, BRPOP (tasks) and a
pub/sub one (the pidbox, i.e. `inspect`, `control`, Flower). When Redis restarts and the pub/sub
socket reports the lost connection first, the BRPOP sent just before is still pending, and
`Channel.close()` first reads that pending reply (added by celery/kombu#1733, so that a message
popped during the close is not lost). On a dead connection that read raises, `close()` stops half
way, Celery's clean-up (`Consumer.on_connection_error_after_connected`: `collect()`, then `close()`)
clears the transport's client and closes the channel again, which now fails with
`AttributeError: 'NoneType' object has no attribute 'hostname'` (not a connection error), so the
worker logs "Unrecoverable error" and shuts down, or hangs in the attempt: the "frozen worker after
a Redis restart". Without remote control the error always comes from the BRPOP read itself, which
clears the pending state first, hence the old workaround of turning remote control off.

The fix: a connection error from that pending read means the reply will never come (the message,
if any, is still in Redis' unacked bookkeeping or was never popped), so `close()` goes on and
completes; the second close is then a no-op. Reproduced with two workers under load and a Redis
stopped for a few seconds (tests/integration/test_flower.py restarts Redis the same way).

A second fix, for a worker whose main thread froze for good after a Redis *crash* (SIGKILL, then
restarted at once from its AOF: `demo --chaos crash-redis`). The pub/sub socket sees the crash
first; kombu reads it with `PubSub.parse_response()`, a blocking read without timeout (redis-py
lifts `socket_timeout` for it). With `retry_on_timeout` (celeryconfig.py) redis-py retries a
failed read once (`Retry(NoBackoff(), 1)`), and before retrying it reconnects the same connection
object. Redis was already back, so the reconnect worked, but nothing subscribed again: redis-py's
resubscribe callback is registered only when `PubSub` takes a connection itself, and kombu sets
`PubSub.connection` itself (`MultiChannelPoller._client_registered`). The retried read then waited
on a connection subscribed to nothing, for ever (py-spy: `Channel._receive_one` ->
`PubSub.parse_response` -> `read_response`; Redis' CLIENT LIST: that connection had only run the
handshake, psub=0). After a clean stop Redis is still down at the reconnect, the error reaches
Celery, which reconnects everything: hence only crashes.

The fix: the connection kombu gives the `PubSub` gets no read retry (`Retry(NoBackoff(), 0)`),
so the crash's error reaches kombu at once, as after a clean stop, and the consumer reconnects
everything: a worker's Celery consumer ("Connection to broker lost"), and consumers without an
event loop too (Flower's event receiver, `celery events`), which a resubscribe inside redis-py
would have left reading a socket their poller never registered. Broadcasts published while the
connection was down are lost, as with any pub/sub reconnect (`inspect`/`control` callers ask
again). tests/unit/infra/test_kombu_redis_close.py replays the crash on fakeredis; before the fix the
crash-redis demo froze in 4 of 7 runs, each time the render worker took this path.

A third fix, for task messages dropped after a Redis crash (`demo --chaos crash-redis`: the render
worker logged "reject requeue=False: 'NoneType' object has no attribute 'client'"). A task that met
LOADING (Redis back from its AOF) retries (`tasks/base.retry_later` -> `Task.retry` ->
`apply_async`) with a producer from the app's pool, whose channel is its pooled connection's
default channel. The publish declares the target queue first (on Redis: its binding, `SADD`) when
that connection has not declared it yet, with kombu's own retry (`maybe_declare(retry=True)` ->
`Connection.ensure(queue, ...)`). That declaration met LOADING too (a connection error): its
`ensure` closed the connection's default channel (`collect()`: `Channel.close()` sets
`connection = None`), reconnected and declared on a new channel, and revived only the queue. The
producer kept the closed channel, and `Producer._publish` had taken it before the declaration, so
the message went to `_put` on it -> `_connparams` -> `self.connection.client`: AttributeError. Not a
connection error, so the publish's own `ensure` (task_publish_retry_policy) did not retry it, and
Celery's `retry()` turns any publish failure into `Reject(requeue=False)`: the message was dropped,
the work waited for beat's reconciler (minutes).

The fix: a publish on a closed channel raises a connection error (the one kombu's `maybe_declare`
raises for a declaration on a closed channel), so the publish's `ensure` does what it does for
any lost connection: reconnects, revives the producer on the new default channel and publishes
again (declaring the queue there). tests/unit/infra/test_kombu_redis_close.py replays it on fakeredis.
"""

from __future__ import annotations

import logging
from typing import Any

from amqp.exceptions import RecoverableConnectionError
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

_ORIGINAL = "_rsf_original_close"  # kept on the class: a reload of this module must not wrap twice
_ORIGINAL_SUBSCRIBE = "_rsf_original_subscribe"
_ORIGINAL_PUBLISH = "_rsf_original_basic_publish"


def _close(self: Any) -> None:
    if self._in_poll:
        try:
            self._brpop_read()
        except kombu_redis.Empty:
            pass
        except self.connection_errors:
            # _brpop_read has disconnected and cleared _in_poll: nothing more to read. Said, not
            # hidden. A reply that never arrives was lost before this patch too (kombu's own read
            # raised the same error); the patch only lets the close finish instead of crashing.
            log.warning("kombu: the pending BRPOP reply was lost while closing the channel", exc_info=True)
    getattr(kombu_redis.Channel, _ORIGINAL)(self)


def _subscribe(self: Any) -> None:
    getattr(kombu_redis.Channel, _ORIGINAL_SUBSCRIBE)(self)
    pubsub = self.__dict__.get("subclient")  # a cached property: only once kombu has made it
    connection = getattr(pubsub, "connection", None)
    if connection is not None:
        # a failed pub/sub read raises (after one reconnect attempt), never read again in place
        connection.retry = Retry(NoBackoff(), 0)


def _basic_publish(self: Any, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> Any:
    if self.connection is None:
        # closed under its producer (a declaration's reconnect, above): a connection error, which the
        # publish's ensure answers by reviving the producer on a fresh channel; not an AttributeError
        log.warning("kombu: publish on a closed channel; sent again on a fresh one (%s)", routing_key)
        raise RecoverableConnectionError("channel disconnected")
    return getattr(kombu_redis.Channel, _ORIGINAL_PUBLISH)(self, message, exchange, routing_key, **kwargs)


def apply() -> None:
    """Idempotent: patch kombu's Redis Channel.close, Channel._subscribe and Channel.basic_publish
    once per process; and, on RabbitMQ, countdowns in whole seconds (pipeline/infra/broker.py); and
    its QoS for a full Redis (pipeline/infra/kombu_redis_full.py)."""
    # here: pipeline.infra.broker imports celery, this module only kombu
    from pipeline.infra import broker, kombu_redis_full

    broker.apply()
    kombu_redis_full.apply()  # and a worker pauses while Redis is full instead of dying
    if not hasattr(kombu_redis.Channel, _ORIGINAL):
        setattr(kombu_redis.Channel, _ORIGINAL, kombu_redis.Channel.close)
        kombu_redis.Channel.close = _close  # type: ignore[method-assign]
    if not hasattr(kombu_redis.Channel, _ORIGINAL_SUBSCRIBE):
        setattr(kombu_redis.Channel, _ORIGINAL_SUBSCRIBE, kombu_redis.Channel._subscribe)
        kombu_redis.Channel._subscribe = _subscribe  # type: ignore[method-assign]
    if not hasattr(kombu_redis.Channel, _ORIGINAL_PUBLISH):
        setattr(kombu_redis.Channel, _ORIGINAL_PUBLISH, kombu_redis.Channel.basic_publish)
        kombu_redis.Channel.basic_publish = _basic_publish  # type: ignore[method-assign]
