"""The snapshot of every operator figure, from the Redis data each part of the pipeline keeps;
and the vendor clients' call counters it reads."""

import json
import time

import pytest
import requests
import responses

from pipeline.clients.errors import RetryableError, Throttled
from pipeline.clients.rokt import RoktClient
from pipeline.clients.tokens import Refusals
from pipeline.infra.queues import SENT_AT_HEADER
from pipeline.ops import figures, heartbeats
from pipeline.stores.deadletters import record_dead_letter
from pipeline.stores.ratelimit import RateLimiter
from pipeline.subscriptions.webhooks import claim_webhook
from pipeline.vocabulary import OutboxKind, Stage, State
from tests.unit.samples import RECEIPT_TTL

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
EVENT = {"eventId": "e1", "title": "t", "start": "2026-01-01T00:00:00", "timezone": "UTC"}


def message(task_id: str, sent_at: float | None = None) -> str:
    """A Celery message as kombu's Redis transport stores it (the fields read here)."""
    headers = {"id": task_id} | ({SENT_AT_HEADER: sent_at} if sent_at is not None else {})
    return json.dumps({"body": "", "headers": headers, "properties": {"delivery_tag": f"tag-{task_id}"}})


def test_a_snapshot_of_an_idle_service_has_every_figure_at_zero(runtime):
    snap = figures.snapshot(runtime)
    assert set(snap) == {"generatedAt", "tenants", "sharedQueues", "workers", "beat", "broker", "redis"}
    assert snap["broker"] == {"kind": "redis", "reachable": True}
    default = snap["tenants"]["default"]
    assert default["status"] == "active"
    assert set(default["queues"]) == {"render.default", "rokt.default"}
    assert set(snap["sharedQueues"]) == {
        "render",
        "rokt",
        "sfmc",
        "callbacks",
        "webhooks",
        "rokt-wait",
        "event-jobs",
    }
    assert default["calls"]["rokt"] == {"2xx": 0, "4xx": 0, "429": 0, "5xx": 0, "error": 0}
    assert default["executes"]["queued"] == 0 and default["deadLetters"] == {}
    assert snap["workers"] == {} and snap["beat"] == {"lastTickAgeSeconds": None}
    assert json.loads(json.dumps(snap)) == snap  # plain JSON


def test_queues_count_waiting_and_unacked_messages_and_age_the_oldest(runtime, fake_redis, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(figures.time, "time", lambda: clock[0])
    fake_redis.lpush("render.default", message("a", sent_at=990.0))  # the oldest: right end
    fake_redis.lpush("render.default", message("b", sent_at=995.0))
    fake_redis.lpush("render.default\x06\x163", message("p"))  # a priority step's list
    for tag, queue in (("t1", "rokt.default"), ("t2", "rokt.default"), ("t3", "sfmc")):
        fake_redis.hset("unacked", tag, json.dumps([{"body": ""}, queue, queue]))
    first = figures.snapshot(runtime)["tenants"]["default"]["queues"]
    assert first["render.default"] == {"waiting": 3, "unacked": 0, "oldestAgeSeconds": 10.0}
    assert first["rokt.default"]["unacked"] == 2
    assert figures.snapshot(runtime)["sharedQueues"]["sfmc"]["unacked"] == 1
    # a slow drain: whatever is the oldest now is aged from its own send time (never reset to 0)
    for taken, expected in (("a", 1030.0 - 995.0), ("b", 0.0)):
        clock[0] = 1030.0
        fake_redis.rpop("render.default")
        seen = figures.snapshot(runtime)["tenants"]["default"]["queues"]["render.default"]
        assert seen["oldestAgeSeconds"] == expected, taken
    fake_redis.lpush("render.default", message("old-style"))  # published before the header existed
    assert (
        figures.snapshot(runtime)["tenants"]["default"]["queues"]["render.default"]["oldestAgeSeconds"] == 0
    )


def test_the_snapshot_only_reads_so_it_works_when_redis_refuses_writes(runtime, fake_redis, monkeypatch):
    import redis

    fake_redis.lpush("render.default", message("a", sent_at=1.0))
    commands: list[str] = []
    for cls in (type(fake_redis), redis.client.Pipeline):
        original = cls.execute_command

        def recording(self, *args, _original=original, **kwargs):
            commands.append(str(args[0]).upper())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "execute_command", recording)
    figures.snapshot(runtime)
    writes = {"SET", "HSET", "HSETNX", "DEL", "HDEL", "ZADD", "ZREM", "INCR", "HINCRBY", "EXPIRE", "LPUSH"}
    assert commands and not writes & set(commands), sorted(set(commands))


def test_every_published_task_message_carries_its_send_time():
    from celery import signals

    from pipeline.infra import dispatch  # noqa: F401  (connects the handler: every producer imports it)

    headers: dict = {}
    before = time.time()
    signals.before_task_publish.send(sender="rsf.render_event", headers=headers, body=None)
    assert before <= headers[SENT_AT_HEADER] <= time.time()  # the time it was sent


def test_unacked_messages_past_the_scan_limit_are_not_read(fake_redis, monkeypatch):
    monkeypatch.setattr(figures, "MAX_UNACKED_SCANNED", 3)
    for n in range(5):
        fake_redis.hset("unacked", f"t{n}", json.dumps([{}, "rokt", "rokt"]))
    assert figures.unacked_by_queue(fake_redis) == {"rokt": 3}


def test_outbox_rows_waiting_and_their_age(runtime, fake_redis):
    outbox = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    before = time.time()
    outbox.append({"row": 1})
    outbox.append({"row": 2})
    outbox.take_new("flusher-1", 1)  # one handed to a flush: no longer waiting
    seen = figures.snapshot(runtime)["tenants"]["default"]["outbox"]
    assert seen["status"]["waiting"] == 1
    # in seconds, counted from the entry's own time: no more than this test has run
    assert 0 <= seen["status"]["oldestAgeSeconds"] <= time.time() - before + 0.002
    assert seen["release"] == {"waiting": 0, "oldestAgeSeconds": 0.0}
    assert not fake_redis.exists("rsf:default:outbox:release")  # reading creates no stream


def test_dead_letters_by_stage_and_error_class_bounded(runtime, fake_redis, monkeypatch):
    for n, (stage, klass) in enumerate(
        [(Stage.CREATE_EVENT, "permanent"), (Stage.CREATE_EVENT, "permanent"), (Stage.WEBHOOK, "KeyError")]
    ):
        record_dead_letter(
            fake_redis, "default", f"i{n}", stage=stage, error_class=klass, reason="r", attempts=1, payload={}
        )
    assert figures.snapshot(runtime)["tenants"]["default"]["deadLetters"] == {
        "create_event": {"permanent": 2},
        "webhook": {"KeyError": 1},
    }
    monkeypatch.setattr(figures, "MAX_DEAD_LETTERS_SCANNED", 2)
    found = figures.dead_letters(fake_redis, "default")
    assert sum(n for by_class in found.values() for n in by_class.values()) == 3
    assert found[figures.UNSCANNED] == {figures.UNSCANNED: 1}


def test_the_limiter_pause_executes_webhooks_and_reconnect(runtime, fake_redis, settings):
    RateLimiter(fake_redis, "default", "rokt", 10).pause(30)
    for n in range(3):
        runtime.ledger.claim("default", f"x{n}", {"eventId": f"e{n}", "args": {}})
    runtime.ledger.transition("default", "x0", State.ACCEPTED)
    runtime.ledger.transition("default", "x0", State.CONFIRMED, (State.ACCEPTED,))
    runtime.ledger.transition("default", "x1", State.FAILED, error="boom")
    envelope = {"eventId": "w1", "eventType": "SubscriptionEventAdded", "eventDetails": {}}
    claim_webhook(fake_redis, "default", envelope, ttl_seconds=RECEIPT_TTL)
    claim_webhook(fake_redis, "default", envelope, ttl_seconds=RECEIPT_TTL)
    seen = figures.snapshot(runtime)["tenants"]["default"]
    assert seen["limiter"]["rokt"]["paused"] is True
    assert 29 < seen["limiter"]["rokt"]["remainingSeconds"] <= 30
    assert seen["limiter"]["sfmc"] == {
        "paused": False,
        "remainingSeconds": 0.0,
        "deferred": 0,
        "lateWakes": 0,
    }
    executes = seen["executes"]
    assert (executes["queued"], executes["confirmed"], executes["failed"], executes["accepted"]) == (
        1,
        1,
        1,
        0,
    )
    assert executes["received"] == 3
    assert seen["webhooks"] == {"received": 1, "duplicates": 1, "released": 0}
    assert seen["reconnectNeeded"] is False
    Refusals(runtime.redis, "default", "sfmc", "digest").refused("SFMC refused the client credentials")
    refused = figures.tenant_figures(runtime, "default", settings.tenant("default"))
    assert refused["reconnectNeeded"] is True
    assert refused["sfmcCredentialsRejected"] == "SFMC refused the client credentials"
    assert figures.tenant_figures(runtime, "gone", None)["status"] == "unknown"


def test_workers_and_beat_from_their_heartbeats(runtime, fake_redis):
    heartbeats.beat(fake_redis, "worker", "worker-1@a")
    heartbeats.beat(fake_redis, "beat", "beat")
    snap = figures.snapshot(runtime, ["default"])
    assert set(snap["workers"]) == {"worker-1@a"}
    assert 0 <= snap["beat"]["lastTickAgeSeconds"] < 1


@responses.activate
def test_the_client_counts_each_vendor_call_by_status_class_and_token_fetches(runtime, settings, fake_redis):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=202)
    responses.post(ROKT_CREATE, status=429, headers={"Retry-After": "1"})
    responses.post(ROKT_CREATE, status=503)
    responses.post(ROKT_CREATE, body=requests.ConnectionError("refused"))
    client = RoktClient(settings.tenant("default"), fake_redis, (1, 1))
    client.create_subscription_event(EVENT, ["s1"])
    with pytest.raises(Throttled):
        client.create_subscription_event(EVENT, ["s1"])
    with pytest.raises(RetryableError):
        client.create_subscription_event(EVENT, ["s1"])
    with pytest.raises(RetryableError, match="connection failed"):
        client.create_subscription_event(EVENT, ["s1"])
    seen = figures.snapshot(runtime)["tenants"]["default"]
    # the token request is a call too (2xx)
    assert seen["calls"]["rokt"] == {"2xx": 2, "4xx": 0, "429": 1, "5xx": 1, "error": 1}
    assert seen["calls"]["sfmc"]["2xx"] == 0
    assert seen["tokenFetches"] == {"rokt": 1, "sfmc": 0}


@responses.activate
def test_a_call_is_not_failed_by_a_counter_that_cannot_reach_redis(settings, fake_redis, monkeypatch):
    import redis

    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=202)
    client = RoktClient(settings.tenant("default"), fake_redis, (1, 1))

    def down(*_args, **_kwargs):
        raise redis.ConnectionError("away")

    monkeypatch.setattr(client.calls.r, "hincrby", down)
    client.create_subscription_event(EVENT, ["s1"])  # no exception


@responses.activate
def test_a_session_shared_by_two_clients_counts_each_call_once(runtime, settings, fake_redis):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=202)
    session = requests.Session()
    RoktClient(settings.tenant("default"), fake_redis, (1, 1), session=session)
    client = RoktClient(settings.tenant("default"), fake_redis, (1, 1), session=session)
    client.create_subscription_event(EVENT, ["s1"])
    assert figures.snapshot(runtime)["tenants"]["default"]["calls"]["rokt"]["2xx"] == 2  # token + create
