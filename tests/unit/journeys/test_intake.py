"""The intake stream and its pump, on fakeredis: what the claim appends, what a pump publishes and
acknowledges, a failed publish, a pump lost mid-batch, a stream created before its group."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from pipeline.infra import keys
from pipeline.journeys import intake
from pipeline.stores.ledger import Ledger
from pipeline.vocabulary import State
from tasks.intake_pump import IntakePump, serves_render


class Broker:
    """Records publishes; `down` makes them raise, `fail_after` n successful ones."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.down = False
        self.fail_after: int | None = None

    def __call__(self, tenant: str, execution: str) -> None:
        if self.down or (self.fail_after is not None and len(self.sent) >= self.fail_after):
            raise ConnectionError("broker unreachable")
        self.sent.append((tenant, execution))


def claim_many(ledger: Ledger, tenant: str, count: int, start: int = 0) -> list[str]:
    ids = [f"{tenant}-e{i}" for i in range(start, start + count)]
    for execution in ids:
        assert ledger.claim(tenant, execution, {"contactKey": execution})
    return ids


def pump(r, broker, tenants=("t",), name="pump-1", **kwargs) -> intake.Pump:
    return intake.Pump(r, name, broker, lambda: tenants, **kwargs)


def test_the_claim_appends_a_new_execution_once(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.claim("t", "e1", {})
    assert not ledger.claim("t", "e1", {})  # a JB retry: claimed already, nothing appended
    entries = fake_redis.xrange(keys.intake("t"))
    assert [values for _id, values in entries] == [{"x": "e1"}]


def test_a_pump_publishes_every_entry_once_and_removes_it(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 450) + claim_many(ledger, "u", 3)
    p = pump(fake_redis, broker, tenants=("t", "u"), batch=200)
    assert p.drain() == 453
    assert sorted(broker.sent) == sorted([("t", e) for e in ids[:450]] + [("u", e) for e in ids[450:]])
    assert intake.backlog(fake_redis, "t") == {"waiting": 0, "pending": 0}
    assert p.drain() == 0  # nothing twice


def test_a_stream_appended_before_its_group_existed_is_pumped_from_the_start(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    claim_many(ledger, "t", 5)  # no pump ever ran: no group yet
    assert intake.backlog(fake_redis, "t") == {"waiting": 5, "pending": 0}
    assert pump(fake_redis, broker).drain() == 5


def test_a_stream_deleted_and_made_again_gets_its_group_again(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    p = pump(fake_redis, broker)
    claim_many(ledger, "t", 2)
    assert p.drain() == 2
    fake_redis.flushdb()  # e.g. a benchmark's reset: the group goes with the stream
    claim_many(ledger, "t", 3, start=10)
    p.step(block=False)  # NOGROUP: the group is made again (from the start)
    assert p.drain() == 3
    assert len(broker.sent) == 5


def test_broker_down_keeps_the_entries_until_it_is_back(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 10)
    p = pump(fake_redis, broker)
    broker.fail_after = 4
    with pytest.raises(intake.PublishFailed):
        p.step(block=False)
    # the 4 published are acknowledged and gone; the other 6 stay with this pump
    assert intake.backlog(fake_redis, "t") == {"waiting": 6, "pending": 6}
    assert p.stats.failures == 1 and "broker unreachable" in p.stats.errors[-1]
    broker.fail_after = None
    broker.down = True
    with pytest.raises(intake.PublishFailed):
        p.step(block=False)
    assert intake.backlog(fake_redis, "t") == {"waiting": 6, "pending": 6}
    broker.down = False
    claim_many(ledger, "t", 2, start=10)  # accepted while the broker was down
    assert p.drain() == 8
    assert [e for _t, e in broker.sent] == [*ids, "t-e10", "t-e11"]  # in order, each once


def test_a_lost_pumps_entries_are_taken_over_after_the_idle_time(fake_redis, monkeypatch):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 6)
    lost = pump(fake_redis, Broker(), name="lost")
    lost._publish = lambda key, entries: 0  # read a batch, then "killed" before any publish
    lost.step(block=False)
    assert intake.backlog(fake_redis, "t") == {"waiting": 6, "pending": 6}
    ledger.update("t", ids[0], renderStartedAt="2026-11-27T00:00:00")  # its render task ran already
    ledger.transition("t", ids[1], State.ACCEPTED)  # finished already
    other = pump(fake_redis, broker, name="other", reclaim_after=1.0)
    assert other.drain() == 0  # not idle long enough yet: they are still the lost pump's
    time.sleep(1.1)
    monkeypatch.setattr(other, "_reclaim_at", 0.0)  # the next pass looks for idle entries
    assert other.drain() == 4
    assert [e for _t, e in broker.sent] == ids[2:]  # those that had started are not sent again
    assert other.stats.reclaimed == 6 and other.stats.skipped == 2
    assert intake.backlog(fake_redis, "t") == {"waiting": 0, "pending": 0}


def test_a_restarted_pump_first_publishes_what_it_held(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 3)
    before = pump(fake_redis, Broker(), name="worker-1@host")
    before._publish = lambda key, entries: 0  # killed mid-batch
    before.step(block=False)
    again = pump(fake_redis, broker, name="worker-1@host")  # the same name after a restart
    assert again.drain() == 3
    assert [e for _t, e in broker.sent] == ids


def test_a_restarted_pump_does_not_publish_again_what_started_rendering(fake_redis):
    """Killed after publishing part of its batch: the executions whose render started were
    published; only the others go out again."""
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 3)
    before = pump(fake_redis, Broker(), name="worker-1@host")
    before._publish = lambda key, entries: 0  # killed mid-batch, after publishing the first
    before.step(block=False)
    fake_redis.hset(keys.execution("t", ids[0]), "renderStartedAt", "2026-11-27T18:00:00+00:00")
    again = pump(fake_redis, broker, name="worker-1@host")
    assert again.drain() == 2
    assert [e for _t, e in broker.sent] == ids[1:]
    assert intake.backlog(fake_redis, "t") == {"waiting": 0, "pending": 0}


def test_an_acknowledgement_that_failed_is_retried_by_the_same_pump(fake_redis, monkeypatch):
    ledger, broker = Ledger(fake_redis), Broker()
    claim_many(ledger, "t", 2)
    p = pump(fake_redis, broker)
    real_ack = p._ack
    monkeypatch.setattr(p, "_ack", lambda key, ids: (_ for _ in ()).throw(redis.ConnectionError("gone")))
    with pytest.raises(redis.ConnectionError):
        p.step(block=False)
    monkeypatch.setattr(p, "_ack", real_ack)
    p.drain()
    assert intake.backlog(fake_redis, "t") == {"waiting": 0, "pending": 0}


def test_run_keeps_going_after_failures_and_stops_when_told(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    broker.down = True
    p = pump(fake_redis, broker, block_ms=20)
    stop = threading.Event()
    thread = threading.Thread(target=p.run, args=(stop,))
    thread.start()
    try:
        claim_many(ledger, "t", 3)
        deadline = time.monotonic() + 5
        while p.stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.stats.failures >= 1 and broker.sent == []
        broker.down = False
        while len(broker.sent) < 3 and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        assert len(broker.sent) == 3
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_reclaim_after_must_be_positive(fake_redis):
    with pytest.raises(ValueError, match="positive"):
        pump(fake_redis, Broker(), reclaim_after=0)


@pytest.mark.parametrize(
    ("queues", "runs"),
    [
        ({"render", "rokt", "sfmc"}, True),
        ({"render.acme"}, True),
        ({"rokt", "rokt.acme"}, False),
        ({"sfmc", "callbacks", "webhooks"}, False),
        ({"renderer"}, False),
    ],
)
def test_the_pump_runs_in_workers_serving_the_render_stage(queues, runs):
    assert serves_render(queues) is runs
    assert IntakePump.requires == {"celery.worker.components:Pool"}


def test_forgetting_an_execution_drops_its_entry_not_yet_pumped(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 2500)  # more than one page of the stream
    ledger.forget("t", ids[1700], contact_key=ids[1700])
    assert intake.backlog(fake_redis, "t")["waiting"] == 2499
    assert pump(fake_redis, broker, batch=1000).drain() == 2499
    assert ("t", ids[1700]) not in broker.sent


def _no_stream_reads(r, monkeypatch) -> None:
    """Any read of the intake stream from Python (page by page) fails the test."""
    read = r.xrange

    def xrange(name, *args, **kwargs):
        assert name != keys.intake("t"), "the intake stream was read"
        return read(name, *args, **kwargs)

    monkeypatch.setattr(r, "xrange", xrange)


def test_the_claim_records_its_entry_id_and_forget_deletes_by_it_without_reading_the_stream(
    fake_redis, monkeypatch
):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 50)
    entries = fake_redis.xrange(keys.intake("t"))
    assert [fake_redis.hget(keys.execution("t", e), "intakeId") for e in ids] == [i for i, _ in entries]
    _no_stream_reads(fake_redis, monkeypatch)
    assert ledger.forget("t", ids[20], contact_key=ids[20])
    monkeypatch.undo()
    assert intake.backlog(fake_redis, "t")["waiting"] == 49
    assert pump(fake_redis, broker).drain() == 49
    assert ("t", ids[20]) not in broker.sent


def test_forget_deletes_only_an_entry_that_names_the_execution(fake_redis):
    """A recorded id whose entry is another execution's (the stream deleted and built again
    since) leaves that entry alone."""
    ledger = Ledger(fake_redis)
    e1, e2 = claim_many(ledger, "t", 2)
    other = fake_redis.hget(keys.execution("t", e2), "intakeId")
    fake_redis.hset(keys.execution("t", e1), "intakeId", other)
    assert ledger.forget("t", e1, contact_key=e1)
    assert [values["x"] for _id, values in fake_redis.xrange(keys.intake("t"))] == [e1, e2]


def test_records_claimed_before_the_entry_id_was_kept_are_found_in_one_pass(fake_redis):
    ledger, broker = Ledger(fake_redis), Broker()
    ids = claim_many(ledger, "t", 2500)
    old = [ids[5], ids[1200], ids[2400]]
    for execution in old:  # as an older version's claim left them
        fake_redis.hdel(keys.execution("t", execution), "intakeId")
    unrecorded: set[str] = set()
    for execution in old:
        assert ledger.forget("t", execution, contact_key=execution, unrecorded=unrecorded)
    assert unrecorded == set(old)
    assert intake.backlog(fake_redis, "t")["waiting"] == 2500  # left for the one pass
    assert ledger.drop_intake_entries("t", unrecorded) == 3
    assert intake.backlog(fake_redis, "t")["waiting"] == 2497
    # without `unrecorded`, forget looks at once
    fake_redis.hdel(keys.execution("t", ids[7]), "intakeId")
    assert ledger.forget("t", ids[7], contact_key=ids[7])
    assert pump(fake_redis, broker, batch=1000).drain() == 2496
    assert not set(broker.sent) & {("t", e) for e in [*old, ids[7]]}


def test_forget_while_a_pump_holds_the_entry_leaves_nothing_to_publish_again(fake_redis):
    """The pump has read the entry (pending with it) when forget runs: forget acknowledges and
    deletes it with the record, so the pump's one publish finds no record to render and no
    pump, restarted or taking over, publishes it again."""
    ledger = Ledger(fake_redis)
    e1, e2 = claim_many(ledger, "t", 2)
    sent: list[tuple[str, str]] = []

    def publish(tenant: str, execution: str) -> None:
        if execution == e1:  # between the pump's read and its publish
            assert ledger.forget(tenant, e1, contact_key=e1)
        sent.append((tenant, execution))

    assert pump(fake_redis, publish).drain() == 2
    assert sent == [("t", e1), ("t", e2)]  # e1's one publish: the pump read it before forget ran
    assert ledger.get("t", e1) is None  # what the render step reads: nothing, so it ends there
    assert intake.backlog(fake_redis, "t") == {"waiting": 0, "pending": 0}
    again = Broker()
    taker = pump(fake_redis, again, name="pump-2", reclaim_after=0.001)
    time.sleep(0.01)
    assert taker.drain() == 0 and again.sent == []
