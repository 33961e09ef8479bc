"""Vendor access tokens cached in Redis: sealed at rest, shared, dropped exactly after a 401,
fetched once for many threads."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from pipeline.clients.tokens import SharedToken
from pipeline.infra.crypto import SecretBox
from tests.unit.threads import together

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


# -- many threads of one process (the Rokt stage's threads pool) --


def test_many_threads_missing_the_token_fetch_it_once(fake_redis):
    """One thread fetches; the others wait on the process's lock, not polling Redis's."""
    fetched = []

    def fetch() -> dict[str, Any]:
        time.sleep(0.05)
        fetched.append(1)
        return {"access_token": "tok", "expires_in": 300}

    token = SharedToken(fake_redis, "t", "rokt", fetch)
    lock_tries = []
    original_set = fake_redis.set

    def counting_set(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == token.lock_key:
            lock_tries.append(name)
        return original_set(name, *args, **kwargs)

    fake_redis.set = counting_set
    tokens = together(token.get)
    assert len(fetched) == 1 and {t["access_token"] for t in tokens} == {"tok"}
    assert len(lock_tries) == 1


def test_a_thread_waiting_longer_than_its_budget_for_a_refresh_gets_a_retryable_error(fake_redis):
    from pipeline.clients.errors import RetryableError

    release = threading.Event()
    token = SharedToken(fake_redis, "t", "rokt", lambda: release.wait(5) and {"access_token": "x"})
    holder = threading.Thread(target=token.get)
    holder.start()
    time.sleep(0.05)
    with pytest.raises(RetryableError):
        token.get(wait_seconds=0.1)
    release.set()
    holder.join()
