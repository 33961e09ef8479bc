"""pipeline.brokerfix: a worker's remote control (kombu's Redis pub/sub) after a Redis crash.

On fakeredis, with real kombu and redis-py code between them: what the worker's event loop does
when the pub/sub socket turns readable is `Channel._receive()`, called here in a thread, because
the bug was that it never returned.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from fakeredis import FakeRedisConnection, FakeServer
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.transport import redis as kombu_redis

import celeryconfig
from pipeline import brokerfix


class _CrashableConnection(FakeRedisConnection):
    """A connection whose socket, if it was open when the fake Redis "crashed", reads end of file,
    like the sockets of a SIGKILLed Redis; new connections work at once (Redis back from its AOF).
    Reads also move the health-check clock, as redis-py's own `read_response` does."""

    def _crashed(self) -> bool:
        return getattr(self._sock, "crashed", False)

    def can_read(self, timeout: float | None = 0) -> bool:
        return self._crashed() or super().can_read(timeout)

    def read_response(self, **kwargs: Any) -> Any:
        if self._crashed():
            raise redis.ConnectionError("Connection closed by server.")
        response = super().read_response(**kwargs)
        if self.health_check_interval:
            self.next_health_check = time.monotonic() + self.health_check_interval
        return response


class _NoPoller:
    """kombu's poller, for fake sockets: the test says when a socket is readable."""

    def register(self, *args: Any) -> None:
        pass

    def unregister(self, *args: Any) -> None:
        pass


def _crash(server: FakeServer) -> None:
    with server.lock:
        for sock in list(server.sockets):
            sock.crashed = True
            sock.kill()  # gone from the server, its subscriptions with it


def _receive_within(channel: Any, seconds: float = 5.0) -> bool:
    """`channel._receive()` in a thread; False if it has not returned within `seconds`."""
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            channel._receive()
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    thread.join(seconds)
    if errors:
        raise errors[0]
    return not thread.is_alive()


@pytest.fixture
def worker_connection(monkeypatch):
    """A kombu connection like a worker's (our transport options) with a remote-control-like
    fanout consumer subscribed; yields (connection, channel, exchange, bodies received)."""
    monkeypatch.setattr(kombu_redis.Channel, "connection_class", _CrashableConnection)
    brokerfix.apply()
    bodies: list[dict] = []
    options = dict(celeryconfig.broker_transport_options)
    with Connection("redis://brokerfix.test:6379/0", transport_options=options) as connection:
        channel = connection.channel()
        connection.transport.cycle.poller = _NoPoller()
        exchange = Exchange("brokerfix.pidbox", type="fanout", auto_delete=True)
        queue = Queue("w1.brokerfix.pidbox", exchange, auto_delete=True)
        consumer = Consumer(channel, [queue], accept=["json"], no_ack=True)
        consumer.register_callback(lambda body, message: bodies.append(body))
        consumer.consume()
        connection.transport.cycle.on_poll_start()  # what each tick of the loop does: subscribes
        yield connection, channel, exchange, bodies


def _broadcast(connection: Connection, exchange: Exchange, body: dict) -> None:
    with connection.channel() as channel:
        Producer(channel).publish(body, exchange=exchange, serializer="json")


def test_remote_control_works_before_the_crash(worker_connection):
    connection, channel, exchange, bodies = worker_connection
    _broadcast(connection, exchange, {"method": "ping", "n": 1})
    assert _receive_within(channel)  # the subscription's confirmation, then the ping
    assert bodies == [{"method": "ping", "n": 1}]


def test_after_a_redis_crash_the_pubsub_read_raises_so_the_consumer_reconnects(worker_connection):
    """The bug: redis-py retried the failed read after reconnecting, on a connection subscribed to
    nothing, with no timeout (kombu had not let redis-py register its resubscribe callback); the
    worker's main thread waited there for ever. Now the read raises a connection error, which a
    worker's consumer (and Flower's event receiver) answer by reconnecting everything."""
    connection, channel, exchange, bodies = worker_connection
    assert celeryconfig.broker_transport_options["retry_on_timeout"]  # what made redis-py retry
    assert _receive_within(channel)  # the subscription's confirmation
    _crash(channel.subclient.connection._server)

    with pytest.raises(tuple(channel.connection_errors)):
        _receive_within(channel)  # returns at once, raising: not stuck reading the socket

    with Connection(
        "redis://brokerfix.test:6379/0", transport_options=dict(connection.transport_options)
    ) as again:
        fresh = again.channel()  # what the consumer's reconnect does: new channels, subscribed
        again.transport.cycle.poller = _NoPoller()
        queue = Queue("w1.brokerfix.pidbox", exchange, auto_delete=True)
        consumer = Consumer(fresh, [queue], accept=["json"], no_ack=True)
        consumer.register_callback(lambda body, message: bodies.append(body))
        consumer.consume()
        again.transport.cycle.on_poll_start()
        assert _receive_within(fresh)
        _broadcast(again, exchange, {"method": "ping", "n": 2})
        assert _receive_within(fresh)
    assert bodies == [{"method": "ping", "n": 2}]


def test_apply_patches_once():
    brokerfix.apply()
    patched = kombu_redis.Channel._subscribe
    brokerfix.apply()
    assert kombu_redis.Channel._subscribe is patched
    assert kombu_redis.Channel._rsf_original_subscribe is not patched
