"""The dead-letter store's time index, its retention trims and the operator's purge (fakeredis)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from pipeline.infra import keys
from pipeline.stores.deadletters import (
    cutoff_iso,
    failed_before,
    move_to_replayed,
    purge_dead_letters,
    record_dead_letter,
    remove_dead_letters,
    remove_replayed,
    trim_dead_letters,
    trim_replayed,
)
from pipeline.stores.ledger import now_iso
from pipeline.stores.outbox import Outbox
from pipeline.vocabulary import OutboxKind, Stage


def letter(r, item_id: str) -> None:
    record_dead_letter(
        r, "t", item_id, stage=Stage.RENDER, error_class="permanent", reason="r", attempts=1, payload={}
    )


def test_every_dead_letter_is_indexed_by_its_failure_time(fake_redis):
    letter(fake_redis, "a")
    score = fake_redis.zscore(keys.dead_letters_by_time("t"), "a")
    assert score is not None and abs(score - time.time()) < 5
    letter(fake_redis, "a")  # failed again: one entry, the newer time
    assert fake_redis.zcard(keys.dead_letters_by_time("t")) == 1


def test_trim_removes_only_what_failed_before_the_cut_off_in_bounded_batches(fake_redis):
    for i in range(5):
        letter(fake_redis, f"old-{i}")
    letter(fake_redis, "new")
    fake_redis.zadd(keys.dead_letters_by_time("t"), {f"old-{i}": 1000 + i for i in range(5)})
    fake_redis.sadd(keys.dead_letters_auto_retried("t"), "old-0", "new")
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 3
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 2
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 0
    assert fake_redis.hkeys(keys.dead_letters("t")) == ["new"]
    assert fake_redis.smembers(keys.dead_letters_auto_retried("t")) == {"new"}


def test_an_index_entry_whose_letter_went_elsewhere_is_dropped(fake_redis):
    letter(fake_redis, "replayed")
    fake_redis.hdel(keys.dead_letters("t"), "replayed")  # as an older version's replay left it
    fake_redis.zadd(keys.dead_letters_by_time("t"), {"replayed": 1})
    assert trim_dead_letters(fake_redis, "t", older_than=10) == 0
    assert fake_redis.zcard(keys.dead_letters_by_time("t")) == 0


def test_remove_dead_letters(fake_redis):
    letter(fake_redis, "a")
    letter(fake_redis, "b")
    assert remove_dead_letters(fake_redis, "t", ["a", "missing"]) == 1
    assert fake_redis.hkeys(keys.dead_letters("t")) == ["b"]
    assert fake_redis.zrange(keys.dead_letters_by_time("t"), 0, -1) == ["b"]
    assert remove_dead_letters(fake_redis, "t", []) == 0


def test_remove_dead_letters_as_read_keeps_a_newer_failure(fake_redis):
    letter(fake_redis, "a")
    letter(fake_redis, "b")
    read = fake_redis.hgetall(keys.dead_letters("t"))
    fake_redis.hset(keys.dead_letters("t"), "b", json.dumps({"id": "b", "failedAt": "later"}))
    fake_redis.sadd(keys.dead_letters_auto_retried("t"), "a", "b")
    assert remove_dead_letters(fake_redis, "t", ["a", "b"], as_read=read) == 1
    assert fake_redis.hkeys(keys.dead_letters("t")) == ["b"]
    assert fake_redis.zrange(keys.dead_letters_by_time("t"), 0, -1) == ["b"]
    assert fake_redis.smembers(keys.dead_letters_auto_retried("t")) == {"b"}


def test_the_purge_cut_off_is_the_failed_at_of_a_letter_that_long_ago():
    expected = datetime.now(UTC) - timedelta(days=30)
    cutoff = cutoff_iso(timedelta(days=30))
    # failedAt's own form, so the two compare as strings in time order
    assert len(cutoff) == len(now_iso()) and cutoff.endswith("+00:00") and cutoff < now_iso()
    assert abs(datetime.fromisoformat(cutoff) - expected) < timedelta(seconds=5)


def _failed_at(r, item_id: str, when: str) -> None:
    record = json.loads(r.hget(keys.dead_letters("t"), item_id))
    r.hset(keys.dead_letters("t"), item_id, json.dumps({**record, "failedAt": when}, sort_keys=True))


def test_failed_before_selects_by_the_cut_off_and_the_filter_each_letter_as_read(fake_redis):
    cutoff = "2021-01-01T00:00:00.000+00:00"
    letter(fake_redis, "old")
    record_dead_letter(
        fake_redis, "t", "old-webhook", stage=Stage.WEBHOOK, error_class="retryable", reason="r", attempts=1,
        payload={},
    )  # fmt: skip
    letter(fake_redis, "at-the-cut-off")
    letter(fake_redis, "new")
    _failed_at(fake_redis, "old", "2020-06-01T00:00:00.000+00:00")
    _failed_at(fake_redis, "old-webhook", "2020-12-31T23:59:59.999+00:00")
    _failed_at(fake_redis, "at-the-cut-off", cutoff)  # not before it: stays
    stored = fake_redis.hgetall(keys.dead_letters("t"))
    assert failed_before(fake_redis, "t", cutoff) == {item: stored[item] for item in ("old", "old-webhook")}
    only_webhooks = failed_before(fake_redis, "t", cutoff, lambda letter: letter["stage"] == Stage.WEBHOOK)
    assert only_webhooks == {"old-webhook": stored["old-webhook"]}
    assert failed_before(fake_redis, "t", "2020-01-01T00:00:00.000+00:00") == {}
    assert failed_before(fake_redis, "other-tenant", cutoff) == {}


def test_purge_removes_what_was_selected_but_a_letter_that_failed_again_meanwhile(fake_redis):
    """The same item failing again between the selection and the removal is a new failure: it
    stays, with its index entry and marker; the others go with theirs (through remove_dead_letters)."""
    for item_id in ("a", "b", "c"):
        letter(fake_redis, item_id)
    fake_redis.sadd(keys.dead_letters_auto_retried("t"), "a", "b")
    selected = failed_before(fake_redis, "t", cutoff_iso(timedelta(days=-1)))  # a day ahead: all
    assert sorted(selected) == ["a", "b", "c"]
    record_dead_letter(
        fake_redis, "t", "a", stage=Stage.RENDER, error_class="permanent", reason="again", attempts=2,
        payload={},
    )  # fmt: skip
    assert purge_dead_letters(fake_redis, "t", selected) == 2
    assert fake_redis.hkeys(keys.dead_letters("t")) == ["a"]
    assert json.loads(fake_redis.hget(keys.dead_letters("t"), "a"))["reason"] == "again"
    assert fake_redis.zrange(keys.dead_letters_by_time("t"), 0, -1) == ["a"]
    assert fake_redis.smembers(keys.dead_letters_auto_retried("t")) == {"a"}
    assert purge_dead_letters(fake_redis, "t", {}) == 0


def test_a_replayed_letter_leaves_redis_for_the_history_outbox_in_one_script(fake_redis):
    letter(fake_redis, "a")
    stored = json.loads(fake_redis.hget(keys.dead_letters("t"), "a"))
    box = Outbox(fake_redis, "t", OutboxKind.HISTORY, 60_000)
    assert move_to_replayed(box, stored) is True
    assert fake_redis.hlen(keys.dead_letters("t")) == 0
    assert fake_redis.zcard(keys.dead_letters_by_time("t")) == 0
    assert not fake_redis.exists(keys.dead_letters_replayed("t"))  # no longer kept in Redis
    [entry] = box.take_new("c", 10)
    assert entry.payload["deadLetter"]["id"] == "a" and entry.payload["deadLetter"]["replayedAt"]
    assert {k: v for k, v in entry.payload["deadLetter"].items() if k != "replayedAt"} == stored


def test_a_newer_failure_of_the_replayed_item_stays_waiting(fake_redis):
    letter(fake_redis, "a")
    read = json.loads(fake_redis.hget(keys.dead_letters("t"), "a"))
    time.sleep(0.002)
    letter(fake_redis, "a")  # failed again after the replay read it
    newer = fake_redis.hget(keys.dead_letters("t"), "a")
    assert json.loads(newer)["failedAt"] != read["failedAt"]
    box = Outbox(fake_redis, "t", OutboxKind.HISTORY, 60_000)
    assert move_to_replayed(box, read) is False
    assert fake_redis.hget(keys.dead_letters("t"), "a") == newer
    assert fake_redis.zrange(keys.dead_letters_by_time("t"), 0, -1) == ["a"]
    assert box.backlog() == 1  # the replay that did happen is recorded all the same


def test_replayed_letters_an_older_version_kept_in_redis_are_removed(fake_redis):
    fake_redis.hset(keys.dead_letters_replayed("t"), "a", json.dumps({"id": "a", "replayedAt": "x"}))
    fake_redis.sadd(keys.dead_letters_auto_retried("t"), "a")
    assert remove_replayed(fake_redis, "t", ["a", "missing"]) == 1
    assert remove_replayed(fake_redis, "t", []) == 0
    assert fake_redis.hlen(keys.dead_letters_replayed("t")) == 0
    assert not fake_redis.smembers(keys.dead_letters_auto_retried("t"))


def test_trim_replayed_sweeps_the_whole_hash_over_calls(fake_redis):
    for i in range(50):
        fake_redis.hset(
            keys.dead_letters_replayed("t"),
            f"old-{i}",
            json.dumps({"replayedAt": "2020-01-01T00:00:00+00:00"}),
        )
    fake_redis.hset(
        keys.dead_letters_replayed("t"), "new", json.dumps({"replayedAt": "2999-01-01T00:00:00+00:00"})
    )
    fake_redis.hset(keys.dead_letters_replayed("t"), "bad", "not json")
    removed = 0
    for _ in range(20):
        removed += trim_replayed(fake_redis, "t", older_than=time.time(), batch=10)
    assert removed == 51
    assert fake_redis.hkeys(keys.dead_letters_replayed("t")) == ["new"]
