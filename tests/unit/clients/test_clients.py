"""Vendor clients over `responses`: shared tokens, refresh once on 401, typed errors, and SFMC
tokens of a signed-in tenant from its refresh token."""

import json

import pytest
import requests
import responses

from pipeline.clients import tokens
from pipeline.clients.errors import (
    CredentialsRejected,
    PermanentError,
    RetryableError,
    Throttled,
    Unauthorized,
    UnknownOutcome,
    retry_after_seconds,
)
from pipeline.clients.rokt import RoktClient
from pipeline.clients.sfmc import SfmcClient, TokenRefused
from tests.unit.conftest import COMPLETE

EVENT = {"eventId": "e1", "title": "t", "start": "2026-01-01T00:00:00", "timezone": "UTC"}
ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
SFMC_TOKEN = "https://auth.sfmc.test/v2/token"
SFMC_ROWSET = "https://rest.sfmc.test/hub/v1/dataevents/key:DE/rowset"
SFMC_CONTEXT = "https://rest.sfmc.test/platform/v1/tokenContext"

# Rokt's answers to a call and the typed error each becomes (every Rokt call maps them alike)
ROKT_ERROR_ANSWERS = [
    (429, {"Retry-After": "7"}, {"Code": "RateLimited", "Reason": "slow down"}, Throttled),
    (500, {}, {"Code": "InternalError", "Reason": "x"}, RetryableError),
    (503, {}, {}, RetryableError),
    (400, {}, {"Code": "ValidationFailed", "Reason": "bad tz"}, PermanentError),
]


def rokt(settings, fake_redis):
    return RoktClient(settings.tenant("default"), fake_redis, (1, 1))


def sfmc(settings, fake_redis):
    return SfmcClient(settings.tenant("default"), fake_redis, (1, 1))


def rokt_token(n=1):
    return {"access_token": f"tok-{n}", "token_type": "bearer", "expires_in": 300}


def sfmc_token(n=1):
    return {"access_token": f"s-{n}", "expires_in": 1079, "rest_instance_url": "https://rest.sfmc.test/"}


@responses.activate
def test_a_rokt_create_says_whether_the_event_is_new_or_was_there_already(settings, fake_redis):
    responses.post(ROKT_TOKEN, json=rokt_token())
    responses.post(ROKT_CREATE, status=202)
    responses.post(ROKT_CREATE, status=400, json={"Code": "DuplicateEventId", "Reason": "e1 exists"})
    responses.post(ROKT_CREATE, status=409)
    responses.post(ROKT_CREATE, status=400, json={"Code": "ValidationFailed", "Reason": "no title"})
    responses.post(ROKT_CREATE, status=400, body="not json")
    client = rokt(settings, fake_redis)
    assert client.create_subscription_event(EVENT, ["s1"]) is True
    assert client.create_subscription_event(EVENT, ["s1"]) is False  # an earlier attempt made it
    assert client.create_subscription_event(EVENT, ["s1"]) is False  # HTTP's own "exists already"
    with pytest.raises(PermanentError, match="ValidationFailed: no title"):
        client.create_subscription_event(EVENT, ["s1"])
    with pytest.raises(PermanentError, match="not json"):
        client.create_subscription_event(EVENT, ["s1"])


@responses.activate
def test_rokt_token_is_fetched_once_and_shared_between_clients(settings, fake_redis):
    responses.post(ROKT_TOKEN, json=rokt_token())
    create = responses.post(ROKT_CREATE, status=202)
    rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])
    rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])  # another worker
    token_calls = [c for c in responses.calls if c.request.url == ROKT_TOKEN]
    assert len(token_calls) == 1
    assert token_calls[0].request.headers["Authorization"].startswith("Basic ")
    assert create.call_count == 2
    assert create.calls[0].request.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(create.calls[0].request.body) == {"event": EVENT, "subscriptionIds": ["s1"]}
    ttl = fake_redis.ttl("rsf:default:token:rokt")
    assert 200 < ttl <= 270  # refreshed before expires_in


@responses.activate
def test_rokt_refreshes_once_on_401_then_gives_up(settings, fake_redis):
    responses.post(ROKT_TOKEN, json=rokt_token(1))
    responses.post(ROKT_TOKEN, json=rokt_token(2))
    responses.post(ROKT_CREATE, status=401)
    responses.post(ROKT_CREATE, status=202)
    rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])
    assert [
        c.request.headers.get("Authorization") for c in responses.calls if c.request.url == ROKT_CREATE
    ] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    responses.replace(responses.POST, ROKT_CREATE, status=401)
    with pytest.raises(Unauthorized):
        rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])


@pytest.mark.parametrize(
    ("status", "headers", "body", "error"),
    [*ROKT_ERROR_ANSWERS, (404, {}, {}, PermanentError)],
)
@responses.activate
def test_rokt_errors_are_typed(settings, fake_redis, status, headers, body, error):
    responses.post(ROKT_TOKEN, json=rokt_token())
    responses.post(ROKT_CREATE, status=status, headers=headers, json=body)
    with pytest.raises(error) as caught:
        rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])
    assert caught.value.retryable is (error is not PermanentError)
    if error is Throttled:
        assert caught.value.retry_after == 7
    if body.get("Reason"):
        assert body["Reason"] in caught.value.reason


@responses.activate
def test_network_failures_are_retryable_and_read_timeouts_unknown(settings, fake_redis):
    responses.post(ROKT_TOKEN, json=rokt_token())
    responses.post(ROKT_CREATE, body=requests.ConnectionError("refused"))
    with pytest.raises(RetryableError):
        rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])
    responses.replace(responses.POST, ROKT_CREATE, body=requests.ReadTimeout("slow"))
    with pytest.raises(UnknownOutcome):
        rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])


@responses.activate
def test_bad_rokt_credentials_are_permanent(settings, fake_redis):
    responses.post(ROKT_TOKEN, status=401, json={"error": "invalid_client"})
    with pytest.raises(PermanentError, match="client id/secret"):
        rokt(settings, fake_redis).create_subscription_event(EVENT, ["s1"])


@responses.activate
def test_sfmc_token_body_and_rowset(settings, fake_redis):
    token = responses.post(SFMC_TOKEN, json=sfmc_token())
    rowset = responses.post(SFMC_ROWSET, json=[])
    rows = [{"keys": {"ContactKey": "C1"}, "values": {"Status": "accepted"}}]
    sfmc(settings, fake_redis).upsert_rows("DE", rows)
    assert json.loads(token.calls[0].request.body) == {
        "grant_type": "client_credentials",
        "client_id": "sfmc-id",
        "client_secret": "sfmc-secret",
        "account_id": "123",
    }
    assert json.loads(rowset.calls[0].request.body) == rows
    with pytest.raises(ValueError, match="at most 50"):
        sfmc(settings, fake_redis).upsert_rows("DE", rows * 51)


@responses.activate
def test_sfmc_refreshes_once_on_401(settings, fake_redis):
    responses.post(SFMC_TOKEN, json=sfmc_token(1))
    responses.post(SFMC_TOKEN, json=sfmc_token(2))
    responses.post(SFMC_ROWSET, status=401, json={"message": "Not Authorized", "errorcode": 0})
    responses.post(SFMC_ROWSET, json=[])
    sfmc(settings, fake_redis).upsert_rows("DE", [{"keys": {"K": 1}, "values": {}}])
    auths = [c.request.headers["Authorization"] for c in responses.calls if c.request.url == SFMC_ROWSET]
    assert auths == ["Bearer s-1", "Bearer s-2"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "wait"),
    [
        (429, {"errorcode": 50100, "message": "Rate limit exceeded"}, {"Retry-After": "5"}, Throttled, 5),
        (429, {"errorcode": 50200, "message": "temporarily blocked"}, {}, Throttled, 60),
        (400, {"errorcode": 10006, "message": "Unable to save rows"}, {}, RetryableError, None),
        (
            400,
            {
                "errorcode": 10006,
                "message": "Unable",
                "additionalErrors": [{"errorcode": 10001, "message": "bad"}],
            },
            {},
            PermanentError,
            None,
        ),
        (403, {"errorcode": 0, "message": "scope"}, {}, PermanentError, None),
        (502, {}, {}, RetryableError, None),
    ],
)
@responses.activate
def test_sfmc_errors_are_typed(settings, fake_redis, status, body, headers, error, wait):
    responses.post(SFMC_TOKEN, json=sfmc_token())
    responses.post(SFMC_ROWSET, status=status, json=body, headers=headers)
    with pytest.raises(error) as caught:
        sfmc(settings, fake_redis).upsert_rows("DE", [{"keys": {"K": 1}, "values": {}}])
    assert type(caught.value) is error
    if wait is not None:
        assert caught.value.retry_after == wait


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("3", 9) == 3
    assert retry_after_seconds(None, 9) == 9
    assert retry_after_seconds("garbage", 9) == 9
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 9) <= 0.001


CONTEXT = {"enterprise": {"id": 123}, "organization": {"id": 456}, "user": {"id": 7}}


@responses.activate
def test_sfmc_token_context_asks_the_tenants_own_rest_base_with_the_given_token(settings, fake_redis):
    responses.post(SFMC_TOKEN, json=sfmc_token())
    context = responses.get(SFMC_CONTEXT, json=CONTEXT)
    gate_calls = []
    client = SfmcClient(settings.tenant("default"), fake_redis, (1, 30), gate=lambda: gate_calls.append(1))
    assert client.token_context("jb-fuel2token") == CONTEXT
    request = context.calls[0].request
    assert request.headers["Authorization"] == "Bearer jb-fuel2token"  # theirs, not our s-1
    assert gate_calls == []  # no rate-limit gate: a person waits on this call
    # the cached token of the tenant is reused, not fetched per call
    client.token_context("another")
    assert len([c for c in responses.calls if c.request.url == SFMC_TOKEN]) == 1


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_sfmc_token_context_refused_token_keeps_our_own_token(settings, fake_redis, status):
    responses.post(SFMC_TOKEN, json=sfmc_token())
    responses.get(SFMC_CONTEXT, status=status, json={"message": "Not Authorized", "errorcode": 0})
    with pytest.raises(TokenRefused) as caught:
        sfmc(settings, fake_redis).token_context("bad")
    assert caught.value.status == status and not caught.value.retryable
    assert fake_redis.get("rsf:default:token:sfmc")  # a refused fuel2token says nothing about ours
    assert "bad" not in caught.value.reason


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 503, "json": {}}, RetryableError),
        ({"status": 429, "json": {"errorcode": 50100}, "headers": {"Retry-After": "5"}}, Throttled),
        ({"body": requests.ConnectionError("down")}, RetryableError),
        ({"body": requests.ReadTimeout("slow")}, UnknownOutcome),
        ({"status": 200, "body": "<html>"}, RetryableError),
        ({"status": 200, "json": [1]}, RetryableError),
        ({"status": 404, "json": {"errorcode": 0}}, PermanentError),
    ],
)
@responses.activate
def test_sfmc_token_context_failures_are_typed(settings, fake_redis, answer, error):
    responses.post(SFMC_TOKEN, json=sfmc_token())
    responses.get(SFMC_CONTEXT, **answer)
    with pytest.raises(error) as caught:
        sfmc(settings, fake_redis).token_context("t")
    assert type(caught.value) is error


@responses.activate
def test_sfmc_token_context_caps_the_read_timeout(settings, fake_redis):
    responses.post(SFMC_TOKEN, json=sfmc_token())
    responses.get(SFMC_CONTEXT, json=CONTEXT)
    seen = []
    client = SfmcClient(settings.tenant("default"), fake_redis, (2, 30))
    original = client.session.request

    def spy(method, url, **kwargs):
        seen.append((url, kwargs.get("timeout")))
        return original(method, url, **kwargs)

    client.session.request = spy
    client.token_context("t")
    assert seen[-1] == (SFMC_CONTEXT, (2, 5.0))


# -- a signed-in tenant: SFMC tokens from its refresh token --

AUTH = "https://mc-abc.auth.marketingcloudapis.com"


def _signed_in(rt):
    name = rt.registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="refresh-1").name
    rt.registry.update(name, {k: v for k, v in COMPLETE.items() if not k.startswith("sfmc_")})
    return name


@responses.activate
def test_a_signed_in_tenant_gets_sfmc_tokens_by_refresh_and_keeps_the_rotated_refresh_token(rt):
    name = _signed_in(rt)
    responses.post(
        f"{AUTH}/v2/token",
        json={
            "access_token": "at-1",
            "refresh_token": "refresh-2",
            "expires_in": 1079,
            "rest_instance_url": "https://r/",
        },
    )
    token = rt.sfmc(name).token.get()
    assert token["access_token"] == "at-1" and "refresh_token" not in token  # never cached in Redis
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-1",
        "client_id": rt.settings.sfmc_app_client_id,
        "client_secret": rt.settings.sfmc_app_client_secret,
        "account_id": "43",  # the business unit of App Settings
    }
    assert rt.registry.refresh_token(name) == "refresh-2"
    cached = json.dumps(rt.redis.get(f"rsf:{name}:token:sfmc"))
    assert "refresh-2" not in cached
    assert "at-1" not in cached and "sealed" in cached  # the runtime seals it with SECRET_KEY


@responses.activate
def test_a_refused_refresh_token_marks_the_tenant_reconnect_needed(rt):
    name = _signed_in(rt)
    responses.post(f"{AUTH}/v2/token", status=400, json={"error": "invalid_grant"})
    with pytest.raises(CredentialsRejected):
        rt.sfmc(name).check_credentials()
    assert "refused the refresh token" in tokens.rejection(rt.redis, name, "sfmc")["reason"]
