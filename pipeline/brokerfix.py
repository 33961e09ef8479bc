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
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_ORIGINAL = "_rsf_original_close"  # kept on the class: a reload of this module must not wrap twice


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


def apply() -> None:
    """Idempotent: patch kombu's Redis Channel.close once per process; and, on RabbitMQ,
    countdowns in whole seconds (pipeline/broker.py)."""
    from pipeline import broker  # here: pipeline.broker imports celery, this module only kombu

    broker.apply()
    if not hasattr(kombu_redis.Channel, _ORIGINAL):
        setattr(kombu_redis.Channel, _ORIGINAL, kombu_redis.Channel.close)
        kombu_redis.Channel.close = _close  # type: ignore[method-assign]
