"""pipeline.infra.kombu_redis_full: kombu's unacked bookkeeping when Redis refuses writes for memory.

A real kombu channel over fakeredis; a full Redis is played by the transport's own MULTI call
raising what Redis answers (fakeredis has no maxmemory). Before the fix each of these raised in the
worker's event loop ("Unrecoverable error: server:OutOfMemoryError") and the worker exited.
"""

from __future__ import annotations

import itertools

import pytest
import redis
from fakeredis import FakeRedis, FakeRedisConnection
from kombu import Connection
from kombu.transport import redis as kombu_redis

import celeryconfig
from pipeline.infra import kombu_redis_close, kombu_redis_full

MULTI_REFUSED = (
    "Command # 1 (ZADD unacked_index x) of pipeline caused error: "
    "command not allowed when used memory > 'maxmemory'."
)
URL = "redis://kombu_redis_full.test:6379/0"


@pytest.fixture
def channel(monkeypatch):
    monkeypatch.setattr(kombu_redis.Channel, "connection_class", FakeRedisConnection)
    kombu_redis_close.apply()  # applies kombu_redis_full too
    FakeRedis(host="kombu_redis_full.test").flushall()
    with Connection(URL, transport_options=dict(celeryconfig.broker_transport_options)) as connection:
        chan = connection.default_channel
        chan.queue_declare("full.q")
        chan.basic_publish(chan.prepare_message("hello"), "", "full.q")
        yield chan


def _full_for(monkeypatch, name: str, refusals: int) -> list[int]:
    """The transport's own `name` refused `refusals` times (as a full Redis refuses its MULTI)."""
    original = kombu_redis.QoS._rsf_redis_full[name]
    calls = itertools.count()

    def refusing(*args, **kwargs):
        if next(calls) < refusals:
            raise redis.exceptions.OutOfMemoryError(MULTI_REFUSED)
        return original(*args, **kwargs)

    monkeypatch.setitem(kombu_redis.QoS._rsf_redis_full, name, refusing)
    slept: list[int] = []
    monkeypatch.setattr(kombu_redis_full.time, "sleep", lambda s: slept.append(s))
    return slept


def _unacked(chan) -> dict:
    return chan.client.hgetall(chan.unacked_key)


def test_a_fetch_waits_until_redis_takes_its_bookkeeping_and_the_message_is_never_lost(channel, monkeypatch):
    slept = _full_for(monkeypatch, "append", refusals=3)
    message = channel.basic_get("full.q", no_ack=False)  # BRPOP's pop, then QoS.append
    assert message is not None and len(slept) == 3  # paused, then written
    assert list(_unacked(channel)) == [message.delivery_tag.encode()]


def test_an_ack_refused_in_multi_deletes_the_bookkeeping_outside_multi(channel, monkeypatch):
    message = channel.basic_get("full.q", no_ack=False)
    _full_for(monkeypatch, "ack", refusals=1)
    message.ack()  # raised before: the worker died
    channel.qos._flush()  # kombu forgets acknowledged deliveries lazily
    assert _unacked(channel) == {} and not channel.qos._delivered


def test_a_requeue_refused_leaves_the_message_in_the_bookkeeping_not_dropped(channel, monkeypatch):
    message = channel.basic_get("full.q", no_ack=False)
    _full_for(monkeypatch, "reject", refusals=1)
    message.reject(requeue=True)
    assert list(_unacked(channel)) == [message.delivery_tag.encode()]  # back after the visibility timeout
    channel.qos._flush()
    assert not channel.qos._delivered  # forgotten locally: not acked later by mistake


def test_other_errors_are_raised_as_before(channel, monkeypatch):
    message = channel.basic_get("full.q", no_ack=False)
    original = kombu_redis.QoS._rsf_redis_full["ack"]

    def down(*_args, **_kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setitem(kombu_redis.QoS._rsf_redis_full, "ack", down)
    with pytest.raises(redis.ConnectionError):
        message.ack()
    monkeypatch.setitem(kombu_redis.QoS._rsf_redis_full, "ack", original)


def test_apply_patches_once():
    kombu_redis_full.apply()
    patched = kombu_redis.QoS.ack
    kombu_redis_full.apply()
    assert kombu_redis.QoS.ack is patched is kombu_redis_full._ack
