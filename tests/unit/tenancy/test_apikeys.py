"""Per-tenant API keys: shown once, stored hashed, verified per tenant, revocable."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.tenancy import apikeys


def test_create_returns_the_key_once_and_stores_only_its_hash(fake_redis):
    key = apikeys.create_key(fake_redis, "default", "  ops script ")
    assert key.startswith("rsk_") and len(key) == len("rsk_") + 43
    stored = fake_redis.hgetall("rsf:default:apikeys")
    assert len(stored) == 1
    ((key_id, raw),) = stored.items()
    assert key.startswith("rsk_" + key_id)
    record = json.loads(raw)
    assert record["hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in raw and key[len("rsk_") + len(key_id) :] not in raw
    [listed] = apikeys.list_keys(fake_redis, "default")
    assert listed == {
        "id": key_id,
        "label": "ops script",
        "createdAt": record["createdAt"],
        "lastUsedAt": None,
    }
    datetime.fromisoformat(listed["createdAt"])


def test_two_keys_differ_and_list_never_shows_a_key(fake_redis):
    first = apikeys.create_key(fake_redis, "default", "a")
    second = apikeys.create_key(fake_redis, "default", "b")
    assert first != second
    listed = apikeys.list_keys(fake_redis, "default")
    assert sorted(item["label"] for item in listed) == ["a", "b"]
    text = json.dumps(listed)
    assert first not in text and second not in text and "hash" not in text


def test_verify_accepts_own_key_only(fake_redis):
    key = apikeys.create_key(fake_redis, "default", "x")
    assert apikeys.verify_key(fake_redis, "default", key)
    assert not apikeys.verify_key(fake_redis, "other", key)  # a key of one tenant never verifies for another
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")  # same id, different secret part
    assert not apikeys.verify_key(fake_redis, "default", tampered)
    for bad in ("", "rsk_", key + "x", key[4:], "Bearer " + key, None, 42):
        assert not apikeys.verify_key(fake_redis, "default", bad)


def test_revoke(fake_redis):
    key = apikeys.create_key(fake_redis, "default", "x")
    keep = apikeys.create_key(fake_redis, "default", "y")
    key_id = next(item["id"] for item in apikeys.list_keys(fake_redis, "default") if item["label"] == "x")
    assert not apikeys.revoke_key(fake_redis, "other", key_id)  # another tenant cannot revoke it
    assert apikeys.verify_key(fake_redis, "default", key)
    assert apikeys.revoke_key(fake_redis, "default", key_id)
    assert not apikeys.revoke_key(fake_redis, "default", key_id)
    assert not apikeys.verify_key(fake_redis, "default", key)
    assert apikeys.verify_key(fake_redis, "default", keep)
    assert [item["label"] for item in apikeys.list_keys(fake_redis, "default")] == ["y"]


def test_last_used_is_recorded_at_most_once_a_minute(fake_redis, monkeypatch):
    key = apikeys.create_key(fake_redis, "default", "x")
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    now = [start]
    monkeypatch.setattr(apikeys, "_now", lambda: now[0])
    assert apikeys.verify_key(fake_redis, "default", key)
    assert apikeys.list_keys(fake_redis, "default")[0]["lastUsedAt"] == start.isoformat(timespec="seconds")
    now[0] = start + timedelta(seconds=30)
    assert apikeys.verify_key(fake_redis, "default", key)
    assert apikeys.list_keys(fake_redis, "default")[0]["lastUsedAt"] == start.isoformat(timespec="seconds")
    now[0] = start + timedelta(seconds=61)
    assert apikeys.verify_key(fake_redis, "default", key)
    assert apikeys.list_keys(fake_redis, "default")[0]["lastUsedAt"] == now[0].isoformat(timespec="seconds")
    # the stored hash survives the rewrite, so the key still verifies
    assert apikeys.verify_key(fake_redis, "default", key)


def test_touch_does_not_resurrect_a_revoked_key(fake_redis):
    key = apikeys.create_key(fake_redis, "default", "x")
    key_id = apikeys.list_keys(fake_redis, "default")[0]["id"]
    apikeys.revoke_key(fake_redis, "default", key_id)
    apikeys._touch(fake_redis, "default", key_id, None)  # a verify that read the record before the revoke
    assert apikeys.list_keys(fake_redis, "default") == []
    assert not apikeys.verify_key(fake_redis, "default", key)


@pytest.mark.parametrize("label", ["x" * 101, 5, None])
def test_bad_labels_are_refused(fake_redis, label):
    with pytest.raises(ValueError, match="label"):
        apikeys.create_key(fake_redis, "default", label)
    assert apikeys.list_keys(fake_redis, "default") == []


def test_a_key_id_never_starts_with_a_dash_so_the_cli_can_name_it(fake_redis, monkeypatch):
    from pipeline.tenancy import apikeys

    draws = iter(["-" + "a" * 42, "b" * 43])
    monkeypatch.setattr(apikeys.secrets, "token_urlsafe", lambda _n: next(draws))
    key = apikeys.create_key(fake_redis, "default", "ops")
    assert key == apikeys.PREFIX + "b" * 43
    assert [item["id"] for item in apikeys.list_keys(fake_redis, "default")] == ["b" * 12]
