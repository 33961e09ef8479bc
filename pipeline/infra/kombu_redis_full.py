"""A local fix to kombu's Redis transport (kombu 5.7.0): a worker pauses while Redis is full, it does not die.

Applied with the other transport fixes (`pipeline.infra.kombu_redis_close.apply`: workers, beat,
Flower, the producer).

What it fixes (`demo --chaos redis-full`: Redis at `maxmemory` with `noeviction` refuses writes).
The transport keeps the messages a worker holds in its "unacked" bookkeeping, a hash and a sorted
set, and writes it inside MULTI; once Redis is full it refuses *every* command queued in MULTI,
deletes and reads included. So:
- the fetch's bookkeeping (`QoS.append`, after BRPOP took the message off its queue) raised: the
  worker logged "Unrecoverable error: server:OutOfMemoryError" and died, and the message, off its
  queue and in no bookkeeping, was gone;
- an acknowledgement (`QoS.ack`, `reject(requeue=False)`) raised the same, in the event loop:
  the worker died again;
- a requeue (`reject(requeue=True)`) and the periodic restore of messages past their visibility
  timeout (a SET NX mutex) raised the same.

The fixes, each only when Redis refused for memory (any other error is raised as before):
- the fetch's bookkeeping is written again and again (short pauses, up to 2 s) until Redis takes
  it: the worker holds that one message and fetches nothing more, i.e. it pauses; a worker killed
  meanwhile loses that one message, as it would between BRPOP and the bookkeeping anyway;
- an acknowledgement deletes the bookkeeping outside MULTI: deletes are accepted when full, and
  they free memory;
- a requeue leaves the message in the bookkeeping (the refused MULTI changed nothing) and forgets
  it locally: it comes back after the visibility timeout, and the reconciler re-drives the
  execution sooner; nothing is dropped;
- a restore of visible messages is skipped; the next poll does it.
tests/unit/infra/test_kombu_redis_full.py replays each on fakeredis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as kombu_virtual

from pipeline.infra.redis_clients import refused_for_memory

log = logging.getLogger(__name__)

_PATCHED = "_rsf_redis_full"  # kept on the class: a reload of this module must not wrap twice
# pauses of a fetch waiting for Redis to take its bookkeeping; a warning every WARN_EVERY of them
PAUSES = (0.1, 0.25, 0.5, 1.0, 2.0)
WARN_EVERY = 15


def _append(self: Any, message: Any, delivery_tag: str) -> None:
    tries = 0
    while True:
        try:
            return getattr(kombu_redis.QoS, _PATCHED)["append"](self, message, delivery_tag)
        except Exception as exc:
            if not refused_for_memory(exc):
                raise
            if tries % WARN_EVERY == 0:
                log.warning("Redis is full: a fetched message waits for its bookkeeping; fetching paused")
            time.sleep(PAUSES[min(tries, len(PAUSES) - 1)])
            tries += 1


def _remove_outside_multi(self: Any, delivery_tag: str) -> None:
    """ZREM + HDEL without MULTI: a full Redis accepts them (they free memory)."""
    with self.channel.conn_or_acquire() as client:
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag).execute()


def _ack(self: Any, delivery_tag: str) -> None:
    try:
        getattr(kombu_redis.QoS, _PATCHED)["ack"](self, delivery_tag)
    except Exception as exc:
        if not refused_for_memory(exc):
            raise
        _remove_outside_multi(self, delivery_tag)
        kombu_virtual.QoS.ack(self, delivery_tag)


def _reject(self: Any, delivery_tag: str, requeue: bool = False) -> None:
    try:
        getattr(kombu_redis.QoS, _PATCHED)["reject"](self, delivery_tag, requeue=requeue)
    except Exception as exc:
        if not refused_for_memory(exc):
            raise
        if requeue:  # left in the bookkeeping: back after the visibility timeout, never dropped
            log.warning("Redis is full: a requeued message waits in the unacked bookkeeping")
        else:
            _remove_outside_multi(self, delivery_tag)
        kombu_virtual.QoS.ack(self, delivery_tag)  # forgotten locally either way


def _restore_visible(self: Any, *args: Any, **kwargs: Any) -> None:
    try:
        getattr(kombu_redis.QoS, _PATCHED)["restore_visible"](self, *args, **kwargs)
    except Exception as exc:
        if not refused_for_memory(exc):
            raise
        log.info("Redis is full: restoring unacked messages waits for the next poll")


def apply() -> None:
    """Idempotent: patch kombu's Redis QoS once per process."""
    if hasattr(kombu_redis.QoS, _PATCHED):
        return
    originals = {
        name: getattr(kombu_redis.QoS, name) for name in ("append", "ack", "reject", "restore_visible")
    }
    setattr(kombu_redis.QoS, _PATCHED, originals)
    kombu_redis.QoS.append = _append  # type: ignore[method-assign]
    kombu_redis.QoS.ack = _ack  # type: ignore[method-assign]
    kombu_redis.QoS.reject = _reject  # type: ignore[method-assign]
    kombu_redis.QoS.restore_visible = _restore_visible  # type: ignore[method-assign]
