"""The dead-letter store's time index and its retention trims (fakeredis)."""

from __future__ import annotations

import json
import time

from pipeline.deadletters import (
    auto_retried_key,
    dead_letter_index_key,
    dead_letter_key,
    record_dead_letter,
    remove_dead_letters,
    replayed_key,
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
    score = fake_redis.zscore(dead_letter_index_key("t"), "a")
    assert score is not None and abs(score - time.time()) < 5
    letter(fake_redis, "a")  # failed again: one entry, the newer time
    assert fake_redis.zcard(dead_letter_index_key("t")) == 1


def test_trim_removes_only_what_failed_before_the_cut_off_in_bounded_batches(fake_redis):
    for i in range(5):
        letter(fake_redis, f"old-{i}")
    letter(fake_redis, "new")
    fake_redis.zadd(dead_letter_index_key("t"), {f"old-{i}": 1000 + i for i in range(5)})
    fake_redis.sadd(auto_retried_key("t"), "old-0", "new")
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 3
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 2
    assert trim_dead_letters(fake_redis, "t", older_than=5000, batch=3) == 0
    assert fake_redis.hkeys(dead_letter_key("t")) == ["new"]
    assert fake_redis.smembers(auto_retried_key("t")) == {"new"}


def test_an_index_entry_whose_letter_went_elsewhere_is_dropped(fake_redis):
    letter(fake_redis, "replayed")
    fake_redis.hdel(dead_letter_key("t"), "replayed")  # as a replay or `dlq purge` removes it
    fake_redis.zadd(dead_letter_index_key("t"), {"replayed": 1})
    assert trim_dead_letters(fake_redis, "t", older_than=10) == 0
    assert fake_redis.zcard(dead_letter_index_key("t")) == 0


def test_remove_dead_letters(fake_redis):
    letter(fake_redis, "a")
    letter(fake_redis, "b")
    assert remove_dead_letters(fake_redis, "t", ["a", "missing"]) == 1
    assert fake_redis.hkeys(dead_letter_key("t")) == ["b"]
    assert fake_redis.zrange(dead_letter_index_key("t"), 0, -1) == ["b"]
    assert remove_dead_letters(fake_redis, "t", []) == 0


def test_trim_replayed_sweeps_the_whole_hash_over_calls(fake_redis):
    for i in range(50):
        fake_redis.hset(
            replayed_key("t"), f"old-{i}", json.dumps({"replayedAt": "2020-01-01T00:00:00+00:00"})
        )
    fake_redis.hset(replayed_key("t"), "new", json.dumps({"replayedAt": "2999-01-01T00:00:00+00:00"}))
    fake_redis.hset(replayed_key("t"), "bad", "not json")
    removed = 0
    for _ in range(20):
        removed += trim_replayed(fake_redis, "t", older_than=time.time(), batch=10)
    assert removed == 51
    assert fake_redis.hkeys(replayed_key("t")) == ["new"]
