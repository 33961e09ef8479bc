"""The history store (SQLite in memory here; PostgreSQL in tests/integration/test_history.py) and
the way finished executions leave Redis for it."""

from datetime import date

from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.journeys.executions import current_status_rows
from pipeline.stores.history import HistoryStore, row_of
from pipeline.stores.ledger import event_id_for
from pipeline.subscriptions.webhooks import update_execution
from pipeline.upkeep import privacy
from pipeline.upkeep.replay import list_dead_letters, replay
from pipeline.vocabulary import OutboxKind, Stage, State
from tests.unit.conftest import claim_execution

T = "default"


def _record(status: str, updated: str, created: str = "2026-12-07T10:00:00.000+00:00", **more: str) -> dict:
    return {"status": status, "eventId": "rsf-1", "createdAt": created, "updatedAt": updated, **more}


def test_an_upsert_is_idempotent_and_never_goes_back_to_an_older_version():
    store = HistoryStore("sqlite://")
    store.migrate()
    store.migrate()  # a second process: nothing to do
    newer = _record("confirmed", "2026-12-07T10:00:02.000+00:00", contactKey="C1")
    older = _record("accepted", "2026-12-07T10:00:01.000+00:00", contactKey="C1")
    store.upsert_executions([row_of(T, "e1", newer)])
    store.upsert_executions([row_of(T, "e1", newer)])
    store.upsert_executions([row_of(T, "e1", older)])  # a batch retried late
    assert store.counts(T) == {"confirmed": 1}
    assert store.record(T, "e1") == newer
    assert store.execution_for_event(T, "rsf-1") == "e1"
    assert store.execution_for_event("other", "rsf-1") is None
    assert store.executions_of_contact(T, "C1") == ["e1"]


def test_retention_and_erasure_remove_rows():
    store = HistoryStore("sqlite://")
    store.migrate()
    old = _record("confirmed", "2026-11-01T10:00:00.000+00:00", created="2026-11-01T10:00:00.000+00:00")
    store.upsert_executions(
        [row_of(T, "old", old), row_of(T, "new", _record("removed", "x", contactKey="C2"))]
    )
    assert store.drop_before(date(2026, 11, 2)) == 1
    assert store.record(T, "old") is None and store.record(T, "new") is not None
    assert store.forget_contact(T, "C2") == 1 and store.counts(T) == {}


def _tombstone(runtime, execution: str, status: str) -> dict[str, str]:
    """What Redis keeps of an archived execution: its status, and the version the store holds."""
    return {"status": status, "archived": "1", "updatedAt": runtime.history.record(T, execution)["updatedAt"]}


def _finish(runtime, execution: str, status: State, allowed=(State.QUEUED,)) -> None:
    moved, _ = runtime.ledger.transition(T, execution, status, allowed)
    assert moved


def test_a_finished_execution_leaves_redis_for_the_store_and_its_tombstone_keeps_the_dedupe(runtime):
    claim_execution(runtime, "e1", templateId="t1")
    _finish(runtime, "e1", State.ACCEPTED)
    r = runtime.redis
    assert runtime.outbox(T, OutboxKind.HISTORY).backlog() == 1  # appended by the move itself

    report = flush_history(runtime, T, consumer="c", max_wait=0)
    assert report.items == 1 and runtime.history.counts(T) == {"accepted": 1}
    # accepted waits for Rokt's confirmation: whole in Redis still
    assert r.hget(keys.execution(T, "e1"), "contactKey") == "C1"

    _finish(runtime, "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.counts(T) == {"confirmed": 1}
    assert runtime.history.record(T, "e1")["contactKey"] == "C1"
    assert r.hgetall(keys.execution(T, "e1")) == _tombstone(runtime, "e1", "confirmed")
    assert 0 < r.ttl(keys.execution(T, "e1")) <= runtime.settings.execution_tombstone_seconds
    assert not r.exists(keys.event(T, event_id_for("e1")))
    assert not r.smembers(runtime.ledger.contact_index(T, "C1"))
    assert runtime.outbox(T, OutboxKind.HISTORY).backlog() == 0
    # Journey Builder retrying the same execution within its window: still a duplicate
    claim_execution(runtime, "e1", templateId="t1")
    assert r.hgetall(keys.execution(T, "e1")) == _tombstone(runtime, "e1", "confirmed")


def test_a_record_that_changed_after_it_was_read_is_archived_again_as_it_is_now(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.NO_SUBSCRIPTION)
    seen = runtime.redis.hgetall(keys.execution(T, "e1"))
    runtime.ledger.update(T, "e1", note="later")
    assert runtime.ledger.archive(T, "e1", seen, 60) == -1  # the store has an older version
    assert runtime.redis.hget(keys.execution(T, "e1"), "note") == "later"
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.record(T, "e1")["note"] == "later"
    assert runtime.redis.hget(keys.execution(T, "e1"), "archived") == "1"


def test_a_late_removal_finds_the_archived_execution_and_its_status_row_is_whole(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.ACCEPTED)
    _finish(runtime, "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_history(runtime, T, consumer="c", max_wait=0)
    runtime.redis.delete(keys.execution(T, "e1"))  # the tombstone's hour is over
    rows = runtime.outbox(T, OutboxKind.STATUS_ROWS)
    before = rows.backlog()

    assert update_execution(runtime, T, event_id_for("e1"), State.REMOVED) is True
    assert runtime.redis.hget(keys.execution(T, "e1"), "contactKey") == "C1"  # whole again
    assert rows.backlog() == before + 1
    row = rows.r.xrange(rows.key)[-1][1]["p"]
    assert '"C1"' in row and "removed" in row
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.counts(T) == {"removed": 1}
    assert update_execution(runtime, T, event_id_for("e1"), State.REMOVED) is False  # once


def test_forget_erases_archived_executions_from_the_store(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.MISSING_FIELD)
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.executions_of_contact(T, "C1") == ["e1"]
    report = privacy.forget_contact(runtime, T, "C1")
    assert report["counts"]["executions"] == 1
    assert runtime.history.executions_of_contact(T, "C1") == [] and runtime.history.record(T, "e1") is None
    assert not runtime.redis.exists(keys.execution(T, "e1"))


def test_a_status_row_sent_after_its_execution_left_redis_is_rebuilt_from_the_store(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.NO_SUBSCRIPTION)
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.redis.hget(keys.execution(T, "e1"), "archived") == "1"
    # a row buffered long ago, sent late
    buffered = {"keys": {"ContactKey": "C1", "ExecutionId": "e1"}, "values": {"Status": "queued"}}
    [row] = current_status_rows(runtime, T, [buffered])
    assert row["values"]["Status"] == "no_subscription" and row["values"]["ActivityId"] == "a"


def test_an_execution_whose_contact_waits_for_its_release_stays_until_released(runtime):
    claim_execution(runtime, "e1", releaseEventDefinitionKey="APIEvent-1")
    _finish(runtime, "e1", State.MISSING_FIELD)
    seen = runtime.redis.hgetall(keys.execution(T, "e1"))
    assert runtime.ledger.archive(T, "e1", seen, 60) == -1  # its release is still to come
    runtime.ledger.update(T, "e1", releasedAt="2026-12-07T10:00:00.000+00:00")
    seen = runtime.redis.hgetall(keys.execution(T, "e1"))
    assert runtime.ledger.archive(T, "e1", seen, 60) == 1


def test_a_late_duplicate_webhook_does_not_keep_the_restored_record_in_redis(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.ACCEPTED)
    _finish(runtime, "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_history(runtime, T, consumer="c", max_wait=0)
    # Rokt's own confirmation after the reconciler's: restored, refused (already confirmed)
    assert update_execution(runtime, T, event_id_for("e1"), State.CONFIRMED) is False
    assert runtime.redis.hget(keys.execution(T, "e1"), "contactKey") == "C1"
    flush_history(runtime, T, consumer="c", max_wait=0)  # the restore queued it again
    assert runtime.redis.hgetall(keys.execution(T, "e1")) == _tombstone(runtime, "e1", "confirmed")


def test_a_webhook_restoring_a_stale_copy_reads_the_store_again_and_moves_once(runtime, monkeypatch):
    from pipeline.journeys.executions import move_whole
    from pipeline.stores import performance
    from pipeline.vocabulary import states_leading_to

    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.ACCEPTED)
    _finish(runtime, "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_history(runtime, T, consumer="c", max_wait=0)
    stale = runtime.history.record(T, "e1")  # webhook B reads the archived copy: confirmed
    allowed = states_leading_to(State.REMOVED)
    assert move_whole(runtime, T, "e1", State.REMOVED, allowed) == (True, "confirmed")  # webhook A
    flush_history(runtime, T, consumer="c", max_wait=0)  # written and archived again
    assert runtime.redis.hgetall(keys.execution(T, "e1")) == _tombstone(runtime, "e1", "removed")
    reads = [stale]
    real = runtime.history.record
    monkeypatch.setattr(runtime.history, "record", lambda *a: reads.pop() if reads else real(*a))

    assert move_whole(runtime, T, "e1", State.REMOVED, allowed) == (False, "removed")  # B: not again
    day = runtime.redis.hgetall(keys.performance_day(T, runtime.reporting_days.today(T)))
    assert day[performance.field_name(performance.ALL, "removed")] == "1"
    assert runtime.redis.hget(keys.execution(T, "e1"), "status") == "removed"


def test_no_move_touches_a_tombstone(runtime):
    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.ACCEPTED)
    _finish(runtime, "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_history(runtime, T, consumer="c", max_wait=0)
    moved, previous = runtime.ledger.transition(T, "e1", State.REMOVED, (State.CONFIRMED,))
    assert (moved, previous) == (False, "archived")
    assert runtime.redis.hgetall(keys.execution(T, "e1")) == _tombstone(runtime, "e1", "confirmed")


def test_a_row_the_store_refuses_is_dead_lettered_and_the_others_are_written(runtime, monkeypatch):
    from sqlalchemy.exc import DataError

    for execution in ("e1", "e2"):
        claim_execution(runtime, execution)
        _finish(runtime, execution, State.NO_SUBSCRIPTION)
    write = runtime.history.upsert_executions

    def refusing(rows):
        if any(row["execution_id"] == "e2" for row in rows):
            raise DataError("INSERT", {}, Exception("value too long"))
        return write(rows)

    monkeypatch.setattr(runtime.history, "upsert_executions", refusing)
    report = flush_history(runtime, T, consumer="c", max_wait=0)
    assert report.rejected == 1 and runtime.history.counts(T) == {"no_subscription": 1}
    assert runtime.redis.hget(keys.execution(T, "e1"), "archived") == "1"
    assert runtime.redis.hget(keys.execution(T, "e2"), "contactKey") == "C1"  # whole, waiting
    [letter] = list_dead_letters(runtime, T)
    assert letter["stage"] == Stage.RECORD_HISTORY and letter["payload"] == {"executionId": "e2"}
    monkeypatch.setattr(runtime.history, "upsert_executions", write)
    report = replay(runtime, T, [letter], lambda *_: None, lambda *_: None)
    assert report.replayed == 1
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.counts(T) == {"no_subscription": 2}


def test_a_redelivered_task_of_an_archived_execution_sends_no_row(runtime):
    from pipeline.journeys.executions import render_step

    claim_execution(runtime, "e1")
    _finish(runtime, "e1", State.NO_SUBSCRIPTION)
    flush_history(runtime, T, consumer="c", max_wait=0)
    rows = runtime.outbox(T, OutboxKind.STATUS_ROWS)
    before = rows.backlog()
    assert render_step(runtime, T, "e1") is False
    assert rows.backlog() == before
