"""Upgrade in place: executions an older version finished (whole in Redis, never appended to the
history outbox) reach the store through the mover, once each, resuming where a walk stopped."""

import json
import logging

import pytest
from sqlalchemy.exc import OperationalError

from pipeline.cli import main as cli_main
from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.upkeep import store_moves
from pipeline.upkeep.reconcile import Thresholds, reconcile
from pipeline.vocabulary import OutboxKind, State
from tests.unit.conftest import claim_execution

T = "default"
QUIET = Thresholds(queued_after=1e9, confirm_after=1e9, final_after=1e9, dead_letter_cool_down=1e9)


def _old_version(runtime, finished: dict[str, State], in_flight: tuple[str, ...] = ()) -> None:
    """Executions as the version before the history store left them: claimed, moved, and no
    history outbox (its transition script appended nothing)."""
    for execution, status in finished.items():
        claim_execution(runtime, execution)
        if status in (State.CONFIRMED, State.REMOVED):
            assert runtime.ledger.transition(T, execution, State.ACCEPTED)[0]
            assert runtime.ledger.transition(T, execution, status, (State.ACCEPTED,))[0]
        else:
            assert runtime.ledger.transition(T, execution, status)[0]
    for execution in in_flight:
        claim_execution(runtime, execution)
    runtime.redis.delete(keys.outbox(T, OutboxKind.HISTORY))


def _outbox_ids(runtime) -> list[str]:
    entries = runtime.redis.xrange(keys.outbox(T, OutboxKind.HISTORY))
    return [json.loads(fields["p"])["executionId"] for _id, fields in entries]


def test_finished_records_reach_the_store_as_tombstones_and_in_flight_ones_stay(runtime):
    _old_version(
        runtime,
        {"c1": State.CONFIRMED, "n1": State.NO_SUBSCRIPTION, "a1": State.ACCEPTED, "f1": State.FAILED},
        in_flight=("q1",),
    )
    reports = store_moves.step(runtime, T)
    assert reports["executions"].as_dict() == {"scanned": 5, "moved": 4, "done": True}
    assert sorted(_outbox_ids(runtime)) == ["a1", "c1", "f1", "n1"]  # q1 is in flight: left alone
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.history.counts(T) == {"confirmed": 1, "no_subscription": 1, "accepted": 1, "failed": 1}
    r = runtime.redis
    stored_at = runtime.history.record(T, "c1")["updatedAt"]  # the version archived
    assert r.hgetall(keys.execution(T, "c1")) == {
        "status": "confirmed",
        "archived": "1",
        "updatedAt": stored_at,
    }
    assert r.hget(keys.execution(T, "a1"), "archived") is None  # waits for Rokt: whole, as before
    assert r.hget(keys.execution(T, "q1"), "status") == "queued"
    # Journey Builder retrying a moved one: its tombstone is the claim, so a duplicate
    assert runtime.ledger.claim(T, "c1", {"contactKey": "C1", "eventId": "x", "args": {}}) is False
    # done is marked in Redis: later steps cost one read and move nothing
    assert r.hget(keys.store_moves(T), "executions") == store_moves.DONE
    assert store_moves.pending(runtime, T) == [] and store_moves.step(runtime, T) == {}


def test_a_record_the_store_already_holds_as_it_is_is_not_appended_again(runtime):
    _old_version(runtime, {"a1": State.ACCEPTED, "a2": State.ACCEPTED})
    runtime.ledger.transition(T, "a2", State.CONFIRMED, (State.ACCEPTED,))  # the new version's move
    flush_history(runtime, T, consumer="c", max_wait=0)  # a2 in the store and a tombstone
    runtime.outbox(T, OutboxKind.HISTORY).append({"executionId": "a1"})
    flush_history(runtime, T, consumer="c", max_wait=0)  # a1 in the store, still whole (accepted)
    assert store_moves.step(runtime, T)["executions"].moved == 0
    assert _outbox_ids(runtime) == []


def test_a_walk_cut_off_resumes_after_its_last_batch_and_reads_nothing_twice(runtime, monkeypatch):
    finished = {f"e{i:03d}": State.NO_SUBSCRIPTION for i in range(60)}
    _old_version(runtime, finished, in_flight=tuple(f"q{i}" for i in range(15)))
    monkeypatch.setattr(store_moves, "SCAN_COUNT", 7)
    real, calls = runtime.ledger.to_history, []

    def dies_at_the_twentieth(tenant, execution, pipe=None):
        calls.append(execution)
        if len(calls) == 20:
            raise ConnectionError("the process died mid-batch")
        return real(tenant, execution, pipe)

    runtime.ledger.to_history = dies_at_the_twentieth
    with pytest.raises(ConnectionError):
        store_moves.move_executions_to_store(runtime, T, budget_seconds=60)
    del runtime.ledger.to_history
    moved_before = _outbox_ids(runtime)
    # the batches before the cut counted whole, the one cut off not at all (nor its checkpoint)
    assert 0 < len(moved_before) < 20 and calls[-1] not in moved_before
    assert runtime.redis.hget(keys.store_moves(T), "executions") not in (None, store_moves.DONE)
    steps = 0
    while not (report := store_moves.move_executions_to_store(runtime, T, budget_seconds=0)).done:
        steps += 1  # a zero budget: one batch per call
    assert steps > 1
    ids = _outbox_ids(runtime)
    assert sorted(ids) == sorted(finished) and len(ids) == len(set(ids)), "each exactly once"
    assert report.done


def test_reconcile_takes_a_step_and_a_store_away_keeps_the_checkpoint(runtime, monkeypatch, caplog):
    _old_version(runtime, {"c1": State.CONFIRMED})

    def away(tenant, ids):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(type(runtime.history), "records", lambda self, tenant, ids: away(tenant, ids))
    with caplog.at_level(logging.WARNING, logger="pipeline.upkeep.reconcile"):
        report = reconcile(runtime, T, lambda *a: None, lambda *a: None, QUIET)
    assert report.moved_to_store == 0 and "wait to move to the store" in caplog.text
    assert runtime.redis.hget(keys.store_moves(T), "executions") is None  # nothing skipped
    monkeypatch.undo()
    assert reconcile(runtime, T, lambda *a: None, lambda *a: None, QUIET).moved_to_store == 1
    assert _outbox_ids(runtime) == ["c1"]


def test_the_command_runs_every_mover_to_its_end_and_again_on_request(
    runtime, settings, fake_redis, monkeypatch, capsys
):
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: fake_redis)
    flushes = []
    monkeypatch.setattr("pipeline.infra.dispatch.schedule_flush", lambda t, kind: flushes.append((t, kind)))
    monkeypatch.setattr(store_moves, "SCAN_COUNT", 3)
    _old_version(runtime, {f"e{i}": State.MISSING_FIELD for i in range(10)})
    assert cli_main(["upkeep", "move-to-store", "--tenant", T]) == 0
    out = capsys.readouterr().out
    assert '"moved": 10' in out and '"done": true' in out
    assert flushes == [(T, OutboxKind.HISTORY)]
    assert cli_main(["upkeep", "move-to-store", "--tenant", T]) == 0  # done: nothing read
    assert '"scanned": 0' in capsys.readouterr().out
    assert cli_main(["upkeep", "move-to-store", "--tenant", T, "--again", "--only", "executions"]) == 0
    assert '"scanned": 10' in capsys.readouterr().out  # walked again; still whole, so appended again
    assert len(_outbox_ids(runtime)) == 20
