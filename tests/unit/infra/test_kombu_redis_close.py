"""pipeline.infra.kombu_redis_close: a worker's remote control (kombu's Redis pub/sub) after a Redis crash.

On fakeredis, with real kombu and redis-py code between them: what the worker's event loop does
when the pub/sub socket turns readable is `Channel._receive()`, called here in a thread, because
the bug was that it never returned. And a task's retry published while Redis loads its AOF after
the crash: the message reaches the queue (it was dropped).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
import redis
from fakeredis import FakeRedis, FakeRedisConnection, FakeServer
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.transport import redis as kombu_redis

import celeryconfig
from pipeline.infra import kombu_redis_close


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
    kombu_redis_close.apply()
    bodies: list[dict] = []
    options = dict(celeryconfig.broker_transport_options)
    with Connection("redis://kombu_redis_close.test:6379/0", transport_options=options) as connection:
        channel = connection.channel()
        connection.transport.cycle.poller = _NoPoller()
        exchange = Exchange("kombu_redis_close.pidbox", type="fanout", auto_delete=True)
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
        "redis://kombu_redis_close.test:6379/0", transport_options=dict(connection.transport_options)
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
    kombu_redis_close.apply()
    patched = kombu_redis.Channel._subscribe
    kombu_redis_close.apply()
    assert kombu_redis.Channel._subscribe is patched
    assert kombu_redis.Channel._rsf_original_subscribe is not patched
    publish = kombu_redis.Channel.basic_publish
    kombu_redis_close.apply()
    assert kombu_redis.Channel.basic_publish is publish
    assert kombu_redis.Channel._rsf_original_basic_publish is not publish


_HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}
_LOADING_URL = "redis://brokerfix-loading.test:6379/0"


class _LoadingConnection(_CrashableConnection):
    """A crashable connection to a fake Redis that may be loading its AOF (`server.loading`: how
    many more sends to refuse): what is sent after the handshake (a command, or a pipeline such as
    kombu's queue declaration) is answered LOADING, not run, as by Redis (PING included)."""

    _refused = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = command if isinstance(command, bytes) else b"".join(bytes(part) for part in command)
        name = packed.split(b"\r\n")[2].decode().upper()
        self._refused = False
        if getattr(self._server, "loading", 0) and name not in _HANDSHAKE and not self._crashed():
            self.connect()  # the handshake is answered; what follows is not run
            self._server.loading -= 1
            self._refused = True
            return
        super().send_packed_command(command, check_health)

    def read_response(self, **kwargs: Any) -> Any:
        if self._refused:
            raise redis.BusyLoadingError("Redis is loading the dataset in memory")
        return super().read_response(**kwargs)

    def disconnect(self, *args: Any) -> None:
        self._refused = False
        super().disconnect(*args)


def _celery_queue(name: str) -> Queue:
    """A task queue as Celery declares it on Redis: an exchange of its name, so a binding too."""
    return Queue(name, Exchange(name), routing_key=name)


def _ready(server: FakeServer, queue: str) -> list[dict]:
    """The bodies of the messages waiting in `queue` (kombu's Redis messages: JSON, body in base64)."""
    raws = FakeRedis(server=server).lrange(queue, 0, -1)
    return [json.loads(base64.b64decode(json.loads(raw)["body"])) for raw in raws]


def test_a_publish_whose_declare_met_redis_loading_its_aof_is_sent_on_a_fresh_channel(monkeypatch):
    """The bug: a task's retry after Redis came back from a crash (`retry_later` -> `Task.retry` ->
    `apply_async`) published with a producer from the app's pool, whose channel is its connection's
    default channel. The queue's declaration, before the message, hit LOADING (a connection error):
    its own `Connection.ensure` closed that default channel, reconnected and declared again on a
    new one, but the producer still held the closed channel (`connection` None), and its publish
    raised AttributeError: not a connection error, so no retry of the publish; Celery's `retry()`
    rejected the task's message (requeue=False), dropping it. Now that publish raises a connection
    error, which the publish's own `ensure` answers by reviving the producer on a fresh channel."""
    monkeypatch.setattr(kombu_redis.Channel, "connection_class", _LoadingConnection)
    kombu_redis_close.apply()
    server = _LoadingConnection(host="brokerfix-loading.test", port=6379)._server
    FakeRedis(server=server).flushall()
    retry = {"retry": True, "retry_policy": dict(celeryconfig.task_publish_retry_policy)}  # Celery's
    options = dict(celeryconfig.broker_transport_options)
    with Connection(_LOADING_URL, transport_options=options) as connection:
        producer = Producer(connection)  # as kombu's ProducerPool makes them: the default channel
        warmup = _celery_queue("kombu_redis_close.warmup")
        producer.publish({"n": 0}, routing_key=warmup.name, declare=[warmup], **retry)
        held = producer.channel

        _crash(server)
        server.loading = 1  # Redis is back, loading its AOF: the declaration's first command fails
        retried = _celery_queue("kombu_redis_close.retried")  # not declared on this connection yet
        producer.publish({"n": 1}, routing_key=retried.name, declare=[retried], **retry)

        assert held.connection is None  # the declaration's reconnect closed the producer's channel
        assert producer.channel is not held and producer.channel.connection is not None
    assert server.loading == 0
    assert _ready(server, "kombu_redis_close.retried") == [{"n": 1}]
