"""Heartbeats: the marks in Redis, the health checks that read them (`rokt-sfmc healthcheck`), the
worker bootstep's timer and beat's scheduler."""

import logging
import time
from types import SimpleNamespace

import pytest
import redis
import responses
from redbeat import RedBeatScheduler

from pipeline.infra import keys
from pipeline.ops import heartbeats
from tasks import heartbeat as worker_heartbeat
from tasks.beat import HeartbeatScheduler


def test_a_beat_is_a_key_with_a_ttl_and_an_entry_in_the_kind_s_list(fake_redis):
    heartbeats.beat(fake_redis, "worker", "worker-1@host", ttl=30)
    key = keys.heartbeat("worker", "worker-1@host")
    assert key == "rsf:_ops:heartbeat:worker:worker-1@host"
    assert 0 < fake_redis.ttl(key) <= 30
    assert heartbeats.age(fake_redis, "worker", "worker-1@host") < 1
    assert set(heartbeats.seen(fake_redis, "worker")) == {"worker-1@host"}
    assert heartbeats.seen(fake_redis, "beat") == {}
    assert heartbeats.age(fake_redis, "worker", "worker-2@host") is None


def test_a_silent_worker_stays_listed_with_its_age_growing_until_forgotten(fake_redis, monkeypatch):
    heartbeats.beat(fake_redis, "worker", "old@host")
    later = time.time() + 90
    monkeypatch.setattr(heartbeats.time, "time", lambda: later)
    heartbeats.beat(fake_redis, "worker", "new@host")
    ages = heartbeats.seen(fake_redis, "worker")
    assert ages["old@host"] == pytest.approx(90, abs=1) and ages["old@host"] > heartbeats.STALE_AFTER_SECONDS
    assert ages["new@host"] < 1
    much_later = later + heartbeats.FORGET_AFTER_SECONDS + 1
    monkeypatch.setattr(heartbeats.time, "time", lambda: much_later)
    heartbeats.beat(fake_redis, "worker", "new@host")
    assert set(heartbeats.seen(fake_redis, "worker")) == {"new@host"}
    heartbeats.forget(fake_redis, "worker", "new@host")
    assert heartbeats.seen(fake_redis, "worker") == {}
    assert heartbeats.age(fake_redis, "worker", "new@host") is None


@pytest.fixture
def still_clock(monkeypatch):
    """Time stands still, so an age reads exactly as written."""
    now = time.time()
    monkeypatch.setattr(heartbeats.time, "time", lambda: now)


def _beat_at(r, kind: str, name: str, seconds_ago: float, monkeypatch) -> None:
    then = time.time() - seconds_ago
    with monkeypatch.context() as m:
        m.setattr(heartbeats.time, "time", lambda: then)
        heartbeats.beat(r, kind, name)


def test_worker_check_by_worker_name_or_host_fresh_stale_and_absent(fake_redis, still_clock, monkeypatch):
    _beat_at(fake_redis, "worker", "worker-1@fresh-host", 5, monkeypatch)
    _beat_at(fake_redis, "worker", "worker-2@fresh-host", 30, monkeypatch)
    _beat_at(fake_redis, "worker", "worker-1@stale-host", heartbeats.STALE_AFTER_SECONDS + 30, monkeypatch)
    # a host's freshest worker speaks for it
    assert heartbeats.worker_check(fake_redis, "fresh-host") == (
        True, "worker worker-1@fresh-host: heartbeat 5 s ago"
    )  # fmt: skip
    ok, why = heartbeats.worker_check(fake_redis, "worker-2@fresh-host")
    assert ok and why == "worker worker-2@fresh-host: heartbeat 30 s ago"
    stale = heartbeats.STALE_AFTER_SECONDS + 30
    assert heartbeats.worker_check(fake_redis, "stale-host") == (
        False,
        f"worker worker-1@stale-host: last heartbeat {stale} s ago "
        f"(stale after {heartbeats.STALE_AFTER_SECONDS} s)",
    )
    ok, why = heartbeats.worker_check(fake_redis, "other-host")
    assert not ok and why == (
        "no worker heartbeat for 'other-host' "
        "(seen: worker-1@fresh-host, worker-1@stale-host, worker-2@fresh-host)"
    )
    # `host` is neither a worker's name nor the host of one (`fresh-host` merely ends with it)
    assert heartbeats.worker_check(fake_redis, "host")[0] is False
    fake_redis.flushall()
    assert heartbeats.worker_check(fake_redis, "any") == (False, "no worker heartbeat for 'any' (seen: none)")


def test_beat_check_absent_stale_and_fresh(fake_redis, still_clock, monkeypatch):
    assert heartbeats.beat_check(fake_redis) == (False, "no beat heartbeat")
    stale = heartbeats.STALE_AFTER_SECONDS + 5
    _beat_at(fake_redis, "beat", "beat", stale, monkeypatch)
    assert heartbeats.beat_check(fake_redis) == (
        False, f"beat: last tick {stale} s ago (stale after {heartbeats.STALE_AFTER_SECONDS} s)"
    )  # fmt: skip
    _beat_at(fake_redis, "beat", "beat", 2, monkeypatch)
    assert heartbeats.beat_check(fake_redis) == (True, "beat: last tick 2 s ago")


@responses.activate
def test_http_check_is_healthy_on_200_only():
    responses.get("https://web.test/healthz", status=200, json={"status": "ok"})
    responses.get("https://down.test/healthz", status=503, json={"status": "unavailable"})
    assert heartbeats.http_check("https://web.test/healthz", "web") == (
        True, "web answered 200 at https://web.test/healthz"
    )  # fmt: skip
    assert heartbeats.http_check("https://down.test/healthz", "web") == (
        False, "web answered 503 at https://down.test/healthz"
    )  # fmt: skip
    # nothing answers (responses refuses an unregistered URL as a connection error)
    assert heartbeats.http_check("http://127.0.0.1:9998/healthz", "exporter") == (
        False, "exporter unreachable at http://127.0.0.1:9998/healthz: ConnectionError"
    )  # fmt: skip


class _Timer:
    def __init__(self):
        self.calls = []
        self.cancelled = False

    def call_repeatedly(self, seconds, fn, args=(), priority=0):
        self.calls.append((seconds, fn, args))
        return self

    def cancel(self):
        self.cancelled = True


class _Consumer:
    hostname = "worker-7@box"

    def __init__(self):
        self.timer = _Timer()


class _Hanging:
    """A Redis client whose every command fails as a frozen Redis does after the socket timeout,
    counting the calls."""

    def __init__(self):
        self.calls = 0

    def pipeline(self, transaction=True):
        self.calls += 1
        raise redis.TimeoutError("Timeout reading from socket")


def test_the_worker_step_stamps_from_the_loop_and_its_thread_writes_the_stamp(fake_redis, monkeypatch):
    monkeypatch.setattr(worker_heartbeat, "heartbeat_redis", lambda: fake_redis)
    consumer = _Consumer()
    step = worker_heartbeat.Heartbeat(SimpleNamespace())
    step.heart = heartbeats.LoopHeartbeat(lambda: fake_redis, "worker", consumer.hostname)
    monkeypatch.setattr(step.heart, "start", lambda: None)  # no thread: the test writes in its stead
    step.start(consumer)
    [(seconds, tick, args)] = consumer.timer.calls
    assert seconds == worker_heartbeat.INTERVAL_SECONDS and args == ()
    # the loop's part wrote nothing: Redis is the thread's
    assert heartbeats.age(fake_redis, "worker", "worker-7@box") is None
    assert step.heart.write_pending()
    stamped = float(fake_redis.get(keys.heartbeat("worker", "worker-7@box")))
    assert stamped == step.heart._ticked_at
    # no tick since: nothing written (a frozen loop's mark ages)
    assert not step.heart.write_pending()
    tick()  # what the event loop runs every INTERVAL_SECONDS
    assert step.heart.write_pending()
    assert float(fake_redis.get(keys.heartbeat("worker", "worker-7@box"))) >= stamped
    step.stop(consumer)
    assert consumer.timer.cancelled


def test_the_heartbeat_thread_writes_ticks_and_forgets_the_worker_when_it_leaves(fake_redis):
    heart = heartbeats.LoopHeartbeat(lambda: fake_redis, "worker", "worker-8@box")
    heart.start()
    heart.tick()
    for _ in range(500):  # the thread writes within a few ms; a bound, not a timing assertion
        if heartbeats.age(fake_redis, "worker", "worker-8@box") is not None:
            break
        time.sleep(0.01)
    assert set(heartbeats.seen(fake_redis, "worker")) == {"worker-8@box"}
    heart.close(forget=True, timeout=5)
    assert heart._thread is None
    assert heartbeats.seen(fake_redis, "worker") == {}


def test_a_hanging_redis_is_one_failure_a_tick_logged_once_a_minute_then_once_when_back(fake_redis, caplog):
    clock = [1000.0]
    hanging = _Hanging()
    client = [hanging]
    heart = heartbeats.LoopHeartbeat(lambda: client[0], "worker", "worker-9@box")
    heart.failures.clock = lambda: clock[0]
    caplog.set_level(logging.INFO, logger=heartbeats.__name__)
    for _ in range(12):  # two minutes of ticks
        heart.tick()
        assert heart.write_pending() is False  # raises nothing: the next tick is the retry
        clock[0] += 10
    assert hanging.calls == 12  # one try a tick, no retries of its own
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # the first failure, then one line a minute later
    assert lines[0].startswith("worker heartbeat of worker-9@box failed: TimeoutError: Timeout reading")
    assert "(6 failures in 60 s)" in lines[1]
    client[0] = fake_redis
    heart.tick()
    assert heart.write_pending()
    assert caplog.records[-1].getMessage() == "worker heartbeat of worker-9@box works again (12 failed tries)"
    assert caplog.records[-1].levelno == logging.INFO
    assert heartbeats.age(fake_redis, "worker", "worker-9@box") is not None


def test_the_liveness_client_gives_up_at_its_short_timeout_without_retrying():
    from pipeline.infra import redis_clients

    url = "redis://:pw@127.0.0.1:1/0"
    kwargs = redis_clients.liveness_client(url).connection_pool.connection_kwargs
    short = redis_clients.LIVENESS_TIMEOUT_SECONDS
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == short
    assert kwargs["retry"].get_retries() == 0 and not kwargs["retry_on_timeout"]
    # the service's own client keeps its longer timeout and retries (tasks wait Redis out)
    assert redis_clients.redis_client(url).connection_pool.connection_kwargs["socket_timeout"] > short


def test_beat_s_scheduler_marks_beat_alive_on_tick_at_most_every_few_seconds(
    runtime, fake_redis, monkeypatch
):
    import tasks.beat

    monkeypatch.setattr(tasks.beat, "get_runtime", lambda: runtime)
    monkeypatch.setattr(RedBeatScheduler, "tick", lambda self, *a, **k: 7.5)
    scheduler = HeartbeatScheduler.__new__(HeartbeatScheduler)
    assert scheduler.tick() == 7.5
    assert heartbeats.age(fake_redis, "beat", "beat") is not None
    heartbeats.forget(fake_redis, "beat", "beat")
    scheduler.tick()  # right after: no second write
    assert heartbeats.age(fake_redis, "beat", "beat") is None
    scheduler._last_heartbeat -= tasks.beat.MIN_WRITE_INTERVAL_SECONDS
    scheduler.tick()
    assert "beat" in heartbeats.seen(fake_redis, "beat")


def test_beat_waits_out_a_redis_that_is_away_or_loading_but_not_a_lost_lock(monkeypatch):
    import redis
    from redis.exceptions import LockNotOwnedError

    import tasks.beat

    raised: list[Exception] = []

    def failing_tick(self, *args, **kwargs):
        raise raised[-1]

    monkeypatch.setattr(RedBeatScheduler, "tick", failing_tick)
    scheduler = HeartbeatScheduler.__new__(HeartbeatScheduler)
    for away in (redis.BusyLoadingError("loading the dataset"), redis.ConnectionError("refused")):
        raised.append(away)
        assert scheduler.tick() == tasks.beat.REDIS_AWAY_RETRY_SECONDS
    for fatal in (
        LockNotOwnedError("Cannot extend a lock that's no longer owned"),  # another beat may hold it
        redis.AuthenticationError("invalid password"),  # a ConnectionError, but no wait cures it
    ):
        raised.append(fatal)
        with pytest.raises(type(fatal)):
            scheduler.tick()


def test_the_worker_step_is_registered_on_the_consumer():
    from tasks import app

    assert worker_heartbeat.Heartbeat in app.steps["consumer"]
