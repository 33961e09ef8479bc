"""Replayed dead letters leave Redis for the history store (SQLite in memory, fakeredis): through
the history outbox, idempotent, waiting while the store is away, erased and trimmed there."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy.exc import DataError, OperationalError

from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.stores.deadletters import record_dead_letter
from pipeline.stores.history import HistoryStore, dead_letter_row
from pipeline.upkeep import privacy
from pipeline.upkeep.replay import DeadLetterFilter, list_dead_letters, list_replayed, replay
from pipeline.vocabulary import OutboxKind, Stage

T = "default"


def _fail(runtime, item: str, email: str = "bob@example.com", error_class: str = "permanent") -> dict:
    record_dead_letter(
        runtime.redis, T, item, stage=Stage.WEBHOOK, error_class=error_class, reason="refused",
        attempts=3, payload={"eventId": item, "Email": email},
    )  # fmt: skip
    return json.loads(runtime.redis.hget(keys.dead_letters(T), item))


def _replay(runtime, letters: list[dict], enqueued: int | None = None) -> None:
    sent: list[tuple[str, str]] = []
    report = replay(runtime, T, letters, lambda *a: sent.append(a), lambda *a: sent.append(a))
    assert report.replayed == len(letters) and len(sent) == (len(letters) if enqueued is None else enqueued)


def test_a_replayed_letter_is_written_to_the_store_and_redis_keeps_nothing_of_it(runtime):
    letter = _fail(runtime, "ev-1")
    _fail(runtime, "ev-2")  # still waiting for its replay: stays in Redis
    _replay(runtime, [letter])
    assert [d["id"] for d in list_dead_letters(runtime, T)] == ["ev-2"]

    report = flush_history(runtime, T, consumer="c", max_wait=0)
    assert report.items == 1 and report.rejected == 0
    assert runtime.outbox(T, OutboxKind.HISTORY).backlog() == 0
    assert not runtime.redis.exists(keys.dead_letters_replayed(T))
    [stored] = list_replayed(runtime, T)
    assert {k: v for k, v in stored.items() if k != "replayedAt"} == letter
    assert stored["replayedAt"] >= letter["failedAt"]
    assert list_replayed(runtime, T, DeadLetterFilter(stage=Stage.RENDER)) == []


def test_a_letter_written_twice_is_one_row_and_a_later_failure_is_another():
    store = HistoryStore("sqlite://")
    store.migrate()
    letter = {"id": "a", "stage": "webhook", "errorClass": "x", "failedAt": "2026-01-01T00:00:00.000+00:00"}
    first = dead_letter_row(T, {**letter, "replayedAt": "2026-01-02T00:00:00.000+00:00"})
    later = dead_letter_row(T, {**letter, "replayedAt": "2026-01-03T00:00:00.000+00:00"})
    store.upsert_dead_letters([later])
    store.upsert_dead_letters([first, first])  # a batch redelivered late: never goes back
    [kept] = store.replayed_dead_letters(T, "a")
    assert kept["replayedAt"] == "2026-01-03T00:00:00.000+00:00"
    again = dead_letter_row(T, {**letter, "failedAt": "2026-02-01T00:00:00.000+00:00", "replayedAt": "z"})
    store.upsert_dead_letters([again])
    assert [d["failedAt"][:7] for d in store.replayed_dead_letters(T, "a")] == ["2026-01", "2026-02"]
    assert store.replayed_dead_letters("other") == []


def test_an_unreachable_store_keeps_the_letter_in_the_outbox_until_it_answers(runtime, monkeypatch):
    _replay(runtime, [_fail(runtime, "ev-1")])
    write = runtime.history.upsert_dead_letters

    def away(rows):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.history, "upsert_dead_letters", away)
    with pytest.raises(OperationalError):
        flush_history(runtime, T, consumer="c", max_wait=0)
    assert runtime.outbox(T, OutboxKind.HISTORY).backlog() == 1  # pending with its consumer
    monkeypatch.setattr(runtime.history, "upsert_dead_letters", write)
    assert flush_history(runtime, T, consumer="c", max_wait=0).items == 1  # the same consumer re-reads it
    assert [d["id"] for d in list_replayed(runtime, T)] == ["ev-1"]
    assert runtime.outbox(T, OutboxKind.HISTORY).backlog() == 0


def test_a_letter_the_store_refuses_is_dead_lettered_whole_and_written_on_its_replay(runtime, monkeypatch):
    _replay(runtime, [_fail(runtime, "ev-1"), _fail(runtime, "ev-2")])
    write = runtime.history.upsert_dead_letters

    def refusing(rows):
        if any(row["item_id"] == "ev-2" for row in rows):
            raise DataError("INSERT", {}, Exception("value too long"))
        return write(rows)

    monkeypatch.setattr(runtime.history, "upsert_dead_letters", refusing)
    report = flush_history(runtime, T, consumer="c", max_wait=0)
    assert report.rejected == 1
    assert [d["id"] for d in list_replayed(runtime, T)] == ["ev-1"]
    [refused] = list_dead_letters(runtime, T)
    assert refused["stage"] == Stage.RECORD_HISTORY and refused["payload"]["deadLetter"]["id"] == "ev-2"

    monkeypatch.setattr(runtime.history, "upsert_dead_letters", write)
    _replay(runtime, [refused], enqueued=0)  # back into the history outbox, no task
    flush_history(runtime, T, consumer="c", max_wait=0)
    assert list_dead_letters(runtime, T) == []
    assert sorted(d["id"] for d in list_replayed(runtime, T)) == ["ev-1", "ev-2", "history:dead-letter:ev-2"]


def test_forget_erases_a_persons_replayed_letters_from_the_store(runtime):
    _replay(runtime, [_fail(runtime, "ev-1"), _fail(runtime, "ev-2", email="carol@example.com")])
    flush_history(runtime, T, consumer="c", max_wait=0)
    report = privacy.forget_contact(runtime, T, "nobody", email="bob@example.com", scan=False)
    assert report["counts"]["replayedDeadLetters"] == 1
    assert [d["id"] for d in list_replayed(runtime, T)] == ["ev-2"]


def test_retention_trims_replayed_letters_in_the_store_with_their_auto_retry_markers(runtime):
    _replay(runtime, [_fail(runtime, "ev-1"), _fail(runtime, "ev-2")])
    flush_history(runtime, T, consumer="c", max_wait=0)
    runtime.redis.sadd(keys.dead_letters_auto_retried(T), "ev-1", "ev-2")
    days = runtime.settings.dead_letter_retention_days
    assert privacy.apply_retention(runtime, T)["replayedDeadLetters"] == 0  # replayed just now
    later = time.time() + days * 86400 + 60
    assert privacy.apply_retention(runtime, T, now=later, batch=1)["replayedDeadLetters"] == 1
    assert privacy.apply_retention(runtime, T, now=later, batch=1)["replayedDeadLetters"] == 1
    assert list_replayed(runtime, T) == []
    assert not runtime.redis.smembers(keys.dead_letters_auto_retried(T))
