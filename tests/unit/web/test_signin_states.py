"""Sign-in states (pipeline/web/signin_states.py): single use, 10 minutes, bound to the browser,
tamper-proof, and capped per client address and in all, with `GET /app/login` answering the cap
with 429 and Retry-After while signed-in admins, executes and webhooks carry on."""

from __future__ import annotations

import json

import jwt
import pytest
import redis

from pipeline.infra import keys
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.app_auth import SIGNIN_COOKIE
from pipeline.web.app_session import CSRF_SESSION_KEY, SESSION_COOKIE_NAME, hashed
from pipeline.web.signin_states import Limited, Refusal, SigninStates, StateProblem
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET
from tests.unit.samples import SUBSCRIBE

SECRET = "unit-signin-secret-key-0123456789abcdefgh"
OLD_SECRET = "unit-signin-old-secret-key-0123456789abcd"
WEBHOOK_SECRET = "signin-webhook-secret-0123456789abcdefghij"
BASE = "https://localhost"
NONCE = "nonce-of-this-browser"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_states(r, clock, *, secret_keys=(SECRET,), max_total=100, per_address=5) -> SigninStates:
    return SigninStates(r, secret_keys, max_total=max_total, per_address=per_address, clock=clock)


@pytest.fixture
def states(fake_redis, clock) -> SigninStates:
    return make_states(fake_redis, clock)


def issued(states: SigninStates, address: str = "10.0.0.1", nonce: str = NONCE) -> str:
    state = states.issue(address, nonce)
    assert isinstance(state, str), state
    return state


# --- the state --------------------------------------------------------------------------------


def test_a_state_is_used_once(states):
    state = issued(states)
    assert states.consume(state, NONCE) is None
    assert states.consume(state, NONCE) == StateProblem.USED


def test_a_state_expires_after_10_minutes(states, clock):
    state = issued(states)
    clock.now += 599
    assert states.consume(state, NONCE) is None
    late = issued(states)
    clock.now += 600
    assert states.consume(late, NONCE) == StateProblem.EXPIRED


def test_a_state_is_bound_to_the_browser_that_started_it(states):
    state = issued(states, nonce="the-attackers-nonce")
    assert states.consume(state, "the-victims-nonce") == StateProblem.OTHER_BROWSER
    assert states.consume(state, "the-attackers-nonce") == StateProblem.USED  # used up either way
    assert states.consume(issued(states), "") == StateProblem.OTHER_BROWSER


@pytest.mark.parametrize("part", range(5))
def test_a_changed_part_is_refused_without_a_redis_call(states, fake_redis, part):
    state = issued(states)
    parts = state.split(".")
    value = parts[part]
    parts[part] = value[:-1] + ("A" if value[-1] != "A" else "B")
    if part in (1, 2):  # digits, hex
        parts[part] = value[:-1] + ("1" if value[-1] != "1" else "2")
    members = fake_redis.zrange(keys.login_states(), 0, -1)
    assert states.consume(".".join(parts), NONCE) == StateProblem.INVALID
    assert fake_redis.zrange(keys.login_states(), 0, -1) == members  # nothing used up
    assert states.consume(state, NONCE) is None  # the real one still works


@pytest.mark.parametrize(
    "state", ["", "x", "a.b.c.d.e", "A" * 43, "\u00e9" * 120, "." * 5, "1.2.3.4.5.6"], ids=repr
)
def test_garbage_is_invalid(states, state):
    assert states.consume(state, NONCE) == StateProblem.INVALID


def test_a_state_signed_with_another_key_is_refused(fake_redis, clock):
    theirs = make_states(fake_redis, clock, secret_keys=("another-deployments-secret-key-0123456789",))
    assert make_states(fake_redis, clock).consume(issued(theirs), NONCE) == StateProblem.INVALID


def test_a_state_signed_before_a_key_rotation_still_works(fake_redis, clock):
    before = issued(make_states(fake_redis, clock, secret_keys=(OLD_SECRET,)))
    rotated = make_states(fake_redis, clock, secret_keys=(SECRET, OLD_SECRET))
    assert rotated.consume(before, NONCE) is None


def test_redis_holds_no_address_and_no_state(states, fake_redis):
    state = issued(states, address="203.0.113.77")
    sets = [keys.login_states(), keys.login_states_by_address()]
    dump = json.dumps([fake_redis.zrange(k, 0, -1, withscores=True) for k in sets])
    assert "203.0.113.77" not in dump and state.split(".")[0] not in dump
    # the two sets, and the deployment's salt that names the address in them
    assert sorted(fake_redis.keys("*")) == sorted([*sets, keys.privacy_salt()])


# --- the ceiling --------------------------------------------------------------------------------


def test_one_address_gets_its_share_then_a_refusal_until_its_oldest_expires(states, clock):
    for _ in range(5):
        issued(states, "10.0.0.1")
        clock.now += 10
    refused = states.issue("10.0.0.1", NONCE)
    assert refused == Limited(Refusal.ADDRESS, 600 - 50)
    assert isinstance(states.issue("10.0.0.2", NONCE), str)  # another address is not held up
    clock.now += 600 - 50
    assert isinstance(states.issue("10.0.0.1", NONCE), str)


def test_a_finished_sign_in_frees_its_slot(states):
    held = [issued(states) for _ in range(5)]
    assert isinstance(states.issue("10.0.0.1", NONCE), Limited)
    assert states.consume(held[0], NONCE) is None
    assert isinstance(states.issue("10.0.0.1", NONCE), str)


def test_the_ceiling_in_all_holds_whatever_the_addresses(fake_redis, clock):
    states = make_states(fake_redis, clock, max_total=50, per_address=5)
    answers = [states.issue(f"10.1.{i // 250}.{i % 250}", NONCE) for i in range(500)]
    assert sum(isinstance(a, str) for a in answers) == 50
    assert {a for a in answers if isinstance(a, Limited)} == {Limited(Refusal.ALL, 600)}
    assert fake_redis.zcard(keys.login_states()) == fake_redis.zcard(keys.login_states_by_address()) == 50
    clock.now += 600  # all expired: the next issue drops them all
    assert isinstance(states.issue("10.9.9.9", NONCE), str)
    assert fake_redis.zcard(keys.login_states()) == fake_redis.zcard(keys.login_states_by_address()) == 1


def test_both_keys_expire_with_the_last_state(states, fake_redis, clock):
    issued(states)
    clock.now += 300
    issued(states)
    for key in (keys.login_states(), keys.login_states_by_address()):
        assert 599_000 < fake_redis.pttl(key) <= 600_000


# --- GET /app/login under a flood -------------------------------------------------------------


@pytest.fixture
def flood_app(fake_redis):
    env = {
        **ENV,
        "PUBLIC_BASE_URL": BASE,
        "SECRET_KEY": SECRET,
        "SFMC_APP_CLIENT_ID": "app-client",
        "SFMC_APP_CLIENT_SECRET": "app-client-secret-0123456789",
        "SFMC_APP_AUTH_BASE_URL": "https://app-auth.sfmc.test",
        "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SIGNIN_STATES_PER_ADDRESS": "3",
        "SIGNIN_STATES_MAX": "5",
        "SFMC_EID": "555",  # the pinned `default` tenant's enterprise: its admins sign in to it
    }
    rt = Runtime(load_settings(env), fake_redis)
    return create_app(rt, enqueue_webhook=lambda _t, _e: None)


def login(client, address: str = "198.51.100.1", **kwargs):
    return client.get("/app/login", base_url=BASE, environ_base={"REMOTE_ADDR": address}, **kwargs)


def test_a_flood_from_one_address_gets_429_html_with_retry_after(flood_app):
    client = flood_app.test_client()
    assert [login(client).status_code for _ in range(3)] == [302] * 3
    answer = login(client)
    assert answer.status_code == 429
    assert 0 < int(answer.headers["Retry-After"]) <= 600
    assert answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert "Too many sign-ins" in page and Refusal.ADDRESS in page
    assert SIGNIN_COOKIE not in answer.headers.get("Set-Cookie", "")  # no nonce for a refused start
    assert login(client, "198.51.100.2").status_code == 302  # another address still signs in


def test_the_429_is_json_for_a_client_that_wants_json(flood_app):
    client = flood_app.test_client()
    for address in ("192.0.2.1", "192.0.2.2"):
        for _ in range(3):
            login(client, address)
    answer = login(client, "192.0.2.3", headers={"Accept": "application/json"})
    assert answer.status_code == 429 and answer.is_json
    assert answer.get_json()["code"] == Refusal.ALL
    assert answer.get_json()["message"]
    assert 0 < int(answer.headers["Retry-After"]) <= 600


def test_a_flood_leaves_signed_in_admins_executes_and_webhooks_working(flood_app, fake_redis):
    client = flood_app.test_client()
    sid = "s" * 43
    fake_redis.set(
        keys.app_session(hashed(sid)),
        json.dumps({"tenant": "default", "eid": "555", "user": "admin", CSRF_SESSION_KEY: "t"}),
    )
    for i in range(50):
        login(client, f"203.0.113.{i}")
    assert login(client, "203.0.113.200").status_code == 429
    assert fake_redis.zcard(keys.login_states()) == 5

    execute = jwt.encode(
        {
            "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}],
            "activityId": "act-1",
            "definitionInstanceId": "def-1",
            "keyValue": "C1",
        },
        JWT_SECRET,
        algorithm="HS256",
    )
    answer = client.post("/t/default/activity/execute", data=execute, content_type="application/jwt")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = json.dumps(SUBSCRIBE).encode()
    answer = client.post(
        "/t/default/webhooks/rokt",
        data=body,
        headers={"X-Rokt-Signature": signature_header(WEBHOOK_SECRET, body)},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    client.set_cookie(SESSION_COOKIE_NAME, sid, domain="localhost")  # a signed-in admin's browser
    assert client.get("/app/settings", base_url=BASE).status_code == 200
    assert client.get("/app/install/status", base_url=BASE).status_code == 200


def test_sign_in_without_secret_key_is_not_configured(fake_redis):
    env = {
        **ENV,
        "SFMC_APP_CLIENT_ID": "app-client",
        "SFMC_APP_AUTH_BASE_URL": "https://app-auth.sfmc.test",
    }
    client = create_app(Runtime(load_settings(env), fake_redis)).test_client()
    answer = client.get("/app/login", base_url=BASE)
    assert answer.status_code == 503 and "SECRET_KEY" in answer.get_data(as_text=True)
    assert fake_redis.keys("*") == []


def test_redis_refusing_the_state_is_a_503_with_retry_after(flood_app, monkeypatch):
    def full(*_args, **_kwargs):
        raise redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")

    client = flood_app.test_client()
    login(client)  # the states object exists
    monkeypatch.setattr(flood_app.extensions["rsf.signin_states"], "_issue", full)
    answer = login(client, headers={"Accept": "application/json"})
    assert answer.status_code == 503 and answer.get_json()["code"] == "signin_unavailable"
    assert answer.headers["Retry-After"] == "30"
