"""Failed authentications of execute and webhooks (pipeline/web/auth_failures.py): answered alike
whatever failed, limited per tenant and address with 429 and Retry-After, counted per route."""

import time

import pytest

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from tests.unit.conftest import JWT_SECRET
from tests.unit.samples import SUBSCRIBE
from tests.unit.web.signed import STRONG, execute, make, signed_webhook


@pytest.fixture(autouse=True)
def mid_window(monkeypatch):
    """Windows are fixed: every test here runs 30 s into one (of 60 s and of 300 s alike), never
    across the end of one."""
    frozen = (int(time.time()) // 3600 + 1) * 3600 + 30
    monkeypatch.setattr(time, "time", lambda: float(frozen))


def test_unknown_unconfigured_and_wrong_credentials_answer_alike(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("bare", {})  # no JWT secret, no webhook secret
    answers = [
        execute(client, tenant="nobody"),
        execute(client, tenant="bare"),
        execute(client, secret="another-secret-0123456789abcdef0123"),
        signed_webhook(client, tenant="nobody"),
        signed_webhook(client, tenant="bare"),
        signed_webhook(client, secret="wrong-secret-0123456789abcdef0123456"),
        client.post(f"/t/nobody/webhooks/rokt/{STRONG}", json=SUBSCRIBE),
        client.post(f"/t/bare/webhooks/rokt/{STRONG}", json=SUBSCRIBE),
    ]
    assert {(a.status_code, a.get_data()) for a in answers} == {
        (401, b'{"error":"unauthorized","message":"authentication failed"}\n')
    }


def test_failed_authentications_become_429_with_retry_after_and_are_counted(fake_redis):
    _, client, executes, _ = make(fake_redis, AUTH_FAILURE_LIMIT="3", AUTH_FAILURE_WINDOW_SECONDS="60")
    wrong = "another-secret-0123456789abcdef0123"
    assert [execute(client, wrong).status_code for _ in range(3)] == [401] * 3
    limited = execute(client, wrong)
    assert limited.status_code == 429 and limited.json["error"] == "too_many_failures"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert execute(client, JWT_SECRET).status_code == 429  # the address waits out the window
    other = execute(client, JWT_SECRET, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200 and len(executes.calls) == 1  # another address is not blocked
    # webhooks count apart from executes (their own route), in the same per-tenant metrics hash
    assert [signed_webhook(client, "w" * 8 + STRONG).status_code for _ in range(4)] == [401, 401, 401, 429]
    assert fake_redis.hgetall("rsf:default:auth-failures") == {
        "execute": "3",
        "execute:limited": "2",
        "webhook": "3",
        "webhook:limited": "1",
    }
    window = keys.auth_failure_window("default", "execute", int(time.time() // 60))
    digest = keys.personal_digest(deployment_salt(fake_redis), "default", "127.0.0.1")[:16]
    assert fake_redis.hget(window, digest) == "3" and 0 < fake_redis.ttl(window) <= 62
    assert not [key for key in fake_redis.keys("*") if "127.0.0.1" in key or "10.0.0.9" in key]


def test_guessing_tenant_names_is_limited_without_a_key_per_name(fake_redis):
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="2")
    answers = [execute(client, tenant=f"guess-{i}").status_code for i in range(4)]
    assert answers == [401, 401, 429, 429]
    assert not [key for key in fake_redis.keys("*") if "guess" in key or "127.0.0.1" in key]


def test_a_limit_of_zero_turns_the_limiter_off(fake_redis):
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="0")
    assert {execute(client, "another-secret-0123456789abcdef0123").status_code for _ in range(30)} == {401}


def test_without_trusted_proxies_a_forwarded_for_header_changes_nothing(fake_redis):
    """A client alone cannot pick the address it is counted by: every forged header is one caller."""
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="3")
    answers = [
        execute(client, "x" * 35, headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code for i in range(4)
    ]
    assert answers == [401, 401, 401, 429]


def test_behind_a_trusted_proxy_each_caller_is_counted_by_the_address_the_proxy_saw(fake_redis):
    """TRUSTED_PROXY_HOPS=1 (a TLS terminator): the callers behind it are not one caller, and a
    client's own X-Forwarded-For entries before the proxy's are not believed."""
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="3", TRUSTED_PROXY_HOPS="1")
    proxy = {"REMOTE_ADDR": "10.9.9.9"}

    def through_proxy(caller, forged=""):
        header = f"{forged}, {caller}" if forged else caller
        return execute(client, "x" * 35, headers={"X-Forwarded-For": header}, environ_base=proxy).status_code

    assert [through_proxy("198.51.100.1") for _ in range(4)] == [401, 401, 401, 429]
    assert through_proxy("198.51.100.2") == 401  # another caller behind the same proxy
    assert through_proxy("198.51.100.1", forged="203.0.113.5") == 429  # forged entries are ignored


def test_an_ipv6_caller_is_counted_by_its_64(fake_redis):
    """A subscriber line gets a /64: rotating addresses within it is one caller; another /64 is not."""
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="3")
    answers = [
        execute(client, "x" * 35, environ_base={"REMOTE_ADDR": f"2001:db8:1:2::{i}"}).status_code
        for i in range(4)
    ]
    assert answers == [401, 401, 401, 429]
    assert execute(client, "x" * 35, environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 401


def test_what_failed_callers_store_has_a_ceiling_whatever_number_of_addresses(fake_redis):
    """AUTH_FAILURE_ADDRESSES_MAX addresses are counted per tenant, route and window; one more
    is not (and is not limited: a ceiling must never lock out callers), and stores nothing."""
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="2", AUTH_FAILURE_ADDRESSES_MAX="3")
    for i in range(10):
        execute(client, "x" * 35, environ_base={"REMOTE_ADDR": f"10.1.0.{i}"})
    window = keys.auth_failure_window("default", "execute", int(time.time() // 300))
    assert fake_redis.hlen(window) == 3
    late = [
        execute(client, "x" * 35, environ_base={"REMOTE_ADDR": "10.1.0.99"}).status_code for _ in range(4)
    ]
    assert late == [401] * 4 and fake_redis.hlen(window) == 3
    counted = [
        execute(client, "x" * 35, environ_base={"REMOTE_ADDR": "10.1.0.0"}).status_code for _ in range(2)
    ]
    assert counted == [401, 429]  # an address inside the ceiling is limited as before
    assert fake_redis.hget("rsf:default:auth-failures", "execute") == str(10 + 4 + 1)
    assert fake_redis.hget("rsf:default:auth-failures", "execute:uncounted") == str(7 + 4)  # seen in metrics
