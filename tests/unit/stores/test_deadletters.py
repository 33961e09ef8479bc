"""The dead-letter store's time index and its retention trims (fakeredis)."""

from __future__ import annotations

import json
import time

from pipeline.infra import keys
from pipeline.stores.deadletters import (
    move_to_replayed,
    record_dead_letter,
    remove_dead_letters,
    remove_replayed,
    trim_dead_letters,
    trim_replayed,
)
from pipeline.vocabulary import Stage


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


def test_a_replayed_letter_leaves_the_store_and_its_index(fake_redis):
    letter(fake_redis, "a")
    stored = json.loads(fake_redis.hget(keys.dead_letters("t"), "a"))
    move_to_replayed(fake_redis, "t", stored)
    assert fake_redis.hlen(keys.dead_letters("t")) == 0
    assert fake_redis.zcard(keys.dead_letters_by_time("t")) == 0
    assert json.loads(fake_redis.hget(keys.dead_letters_replayed("t"), "a"))["replayedAt"]
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
