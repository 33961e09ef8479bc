"""A local fix to kombu's Redis transport (kombu 5.7.0), applied by the Celery app (`tasks`: workers,
beat, Flower) and by the producer (`pipeline.dispatch`).

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
again). tests/unit/test_brokerfix.py replays the crash on fakeredis; before the fix the
crash-redis demo froze in 4 of 7 runs, each time the render worker took this path.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

_ORIGINAL = "_rsf_original_close"  # kept on the class: a reload of this module must not wrap twice
_ORIGINAL_SUBSCRIBE = "_rsf_original_subscribe"


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


def apply() -> None:
    """Idempotent: patch kombu's Redis Channel.close and Channel._subscribe once per process;
    and, on RabbitMQ, countdowns in whole seconds (pipeline/broker.py)."""
    from pipeline import broker  # here: pipeline.broker imports celery, this module only kombu

    broker.apply()
    if not hasattr(kombu_redis.Channel, _ORIGINAL):
        setattr(kombu_redis.Channel, _ORIGINAL, kombu_redis.Channel.close)
        kombu_redis.Channel.close = _close  # type: ignore[method-assign]
    if not hasattr(kombu_redis.Channel, _ORIGINAL_SUBSCRIBE):
        setattr(kombu_redis.Channel, _ORIGINAL_SUBSCRIBE, kombu_redis.Channel._subscribe)
        kombu_redis.Channel._subscribe = _subscribe  # type: ignore[method-assign]
