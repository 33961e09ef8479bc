"""Vendor access tokens cached in Redis: sealed at rest, shared, dropped exactly after a 401."""

from __future__ import annotations

import json
from typing import Any

from pipeline.clients.tokens import SharedToken
from pipeline.crypto import SecretBox

KEY = "rsf:acme:token:rokt"
ACCESS = "bearer-abc-123-very-secret"


def issuer(tokens: list[str]):
    """A fetch that hands out `tokens` in turn, counting calls."""
    fetched: list[str] = []

    def fetch() -> dict[str, Any]:
        token = tokens[len(fetched)]
        fetched.append(token)
        return {"access_token": token, "expires_in": 300}

    return fetch, fetched


def test_the_cached_token_is_sealed_and_every_process_opens_it(fake_redis):
    box = SecretBox(["k" * 40])
    fetch, fetched = issuer([ACCESS])
    assert SharedToken(fake_redis, "acme", "rokt", fetch, box).get()["access_token"] == ACCESS
    stored = fake_redis.get(KEY)
    assert ACCESS not in stored and "access_token" not in stored  # a Redis dump holds no bearer token
    other_process = SharedToken(fake_redis, "acme", "rokt", issuer(["never"])[0], box)
    assert other_process.get()["access_token"] == ACCESS
    assert fetched == [ACCESS]


def test_a_process_opens_a_record_once_not_per_call(fake_redis, monkeypatch):
    box = SecretBox(["k" * 40])
    token = SharedToken(fake_redis, "acme", "rokt", issuer([ACCESS, "second"])[0], box)
    token.get()
    opened = []
    original = box.open
    monkeypatch.setattr(box, "open", lambda sealed: opened.append(1) or original(sealed))
    for _ in range(5):
        assert token.get()["access_token"] == ACCESS
    assert opened == []
    token.invalidate(ACCESS)
    assert token.get()["access_token"] == "second"  # sealed by this process: nothing to open
    fresh = SharedToken(fake_redis, "acme", "rokt", issuer(["x"])[0], box)
    assert fresh.get()["access_token"] == "second" and opened == [1]


def test_a_401_drops_the_refused_token_but_not_one_another_worker_already_replaced(fake_redis):
    box = SecretBox(["k" * 40])
    fetch, fetched = issuer([ACCESS, "replacement"])
    token = SharedToken(fake_redis, "acme", "rokt", fetch, box)
    token.get()
    token.invalidate("some-older-token")  # a stale 401: the cached one stays
    assert fake_redis.get(KEY) is not None
    token.invalidate(ACCESS)
    assert fake_redis.get(KEY) is None
    assert token.get()["access_token"] == "replacement" and fetched == [ACCESS, "replacement"]


def test_a_record_no_key_opens_or_of_the_old_unsealed_shape_is_a_miss(fake_redis):
    fetch, fetched = issuer(["after-rotation", "after-upgrade"])
    SharedToken(fake_redis, "acme", "rokt", issuer([ACCESS])[0], SecretBox(["old" * 14])).get()
    rotated = SharedToken(fake_redis, "acme", "rokt", fetch, SecretBox(["new" * 14]))
    assert rotated.get()["access_token"] == "after-rotation"  # the old key was dropped: fetched again
    fake_redis.set(KEY, json.dumps({"access_token": ACCESS, "expires_in": 300}))  # before sealing
    rotated._opened = None
    assert rotated.get()["access_token"] == "after-upgrade"
    assert fetched == ["after-rotation", "after-upgrade"]


def test_without_a_secret_key_the_record_holds_the_response_and_a_401_still_drops_it(fake_redis):
    token = SharedToken(fake_redis, "acme", "rokt", issuer([ACCESS, "next"])[0])
    assert token.get()["access_token"] == ACCESS
    assert json.loads(fake_redis.get(KEY))["response"]["access_token"] == ACCESS
    token.invalidate(ACCESS)
    assert token.get()["access_token"] == "next"
