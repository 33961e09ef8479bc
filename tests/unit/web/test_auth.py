"""`/api/` authentication: the fuel2token -> session handshake and API keys, per tenant."""

import dataclasses
import json
import logging
import time

import pytest
import requests
import responses
from itsdangerous.timed import TimestampSigner

from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.auth import SESSION_MAX_AGE, require_api_auth

SFMC_TOKEN = "https://auth.sfmc.test/v2/token"
SFMC_CONTEXT = "https://rest.sfmc.test/platform/v1/tokenContext"
OUR_TOKEN = {"access_token": "ours-1", "expires_in": 1079, "rest_instance_url": "https://rest.sfmc.test/"}
FUEL2TOKEN = "jb-fuel2token-0123456789"


def context(org="123", enterprise="900"):
    return {"enterprise": {"id": enterprise}, "organization": {"id": org}, "user": {"id": 7}}


@pytest.fixture
def multi_runtime(settings, fake_redis):
    """default (account 123), twin (same JWT secret, account 123), other (own secret, account 999),
    nosecret (no JWT secret)."""
    default = settings.tenant("default")
    tenants = {
        "default": default,
        "twin": dataclasses.replace(default, name="twin"),
        "other": dataclasses.replace(
            default, name="other", jb_jwt_secret="other-secret-xyz", sfmc_account_id="999"
        ),
        "nosecret": dataclasses.replace(default, name="nosecret", jb_jwt_secret=""),
    }
    return Runtime(dataclasses.replace(settings, tenants=tenants), fake_redis)


@pytest.fixture
def app(multi_runtime):
    app = create_app(multi_runtime)
    seen = []

    @require_api_auth
    def protected(tenant):
        seen.append(tenant)
        return {"tenant": tenant}

    app.add_url_rule("/t/<tenant>/api/whoami", "whoami", protected)
    app.config["seen"] = seen
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def session_for(client, tenant="default", token=FUEL2TOKEN):
    return client.post(f"/t/{tenant}/api/session", json={"fuel2token": token})


def whoami(client, token, tenant="default"):
    return client.get(f"/t/{tenant}/api/whoami", headers={"Authorization": f"Bearer {token}"})


def sfmc_answers(**context_answer):
    responses.post(SFMC_TOKEN, json=OUR_TOKEN)
    return responses.get(SFMC_CONTEXT, **(context_answer or {"json": context()}))


@responses.activate
def test_session_happy_path(client, app, caplog):
    caplog.set_level(logging.DEBUG)
    context_call = sfmc_answers(json=context(org="123"))
    response = session_for(client)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["expiresIn"] == SESSION_MAX_AGE == 900
    assert context_call.calls[0].request.headers["Authorization"] == f"Bearer {FUEL2TOKEN}"
    ok = whoami(client, body["token"])
    assert ok.status_code == 200 and ok.json == {"tenant": "default"}
    assert app.config["seen"] == ["default"]
    assert FUEL2TOKEN not in caplog.text and body["token"] not in caplog.text


@responses.activate
def test_session_accepts_enterprise_id_and_numeric_ids(client):
    sfmc_answers(json={"enterprise": {"id": 123}, "organization": {"id": 555}, "user": {"id": 1}})
    assert session_for(client).status_code == 200


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        context(org="999", enterprise="998"),  # another account's user
        {"enterprise": {}, "organization": {}},  # no ids at all
        {"organization": {"id": "1234"}},  # a prefix/suffix is not a match
        {"organization": {"id": True}, "enterprise": {"id": None}},
    ],
)
def test_session_refuses_a_token_of_another_account(client, answer):
    sfmc_answers(json=answer)
    response = session_for(client)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert "token" not in response.json or response.json.get("token") is None


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_session_refused_by_sfmc(client, fake_redis, status):
    sfmc_answers(status=status, json={"message": "Not Authorized", "errorcode": 0})
    response = session_for(client)
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    assert fake_redis.get("rsf:default:token:sfmc")  # our own token stays cached


@responses.activate
@pytest.mark.parametrize(
    "answer",
    [
        {"body": requests.ConnectionError("down")},
        {"body": requests.ReadTimeout("slow")},
        {"status": 500, "json": {}},
        {"status": 429, "json": {"errorcode": 50100}, "headers": {"Retry-After": "5"}},
    ],
)
def test_session_when_sfmc_is_down_is_503(client, answer):
    sfmc_answers(**answer)
    response = session_for(client)
    assert response.status_code == 503
    assert response.json["error"] == "sfmc_unavailable"
    assert response.headers["Retry-After"]


@responses.activate
def test_session_when_our_own_sfmc_token_fails_is_503(client):
    responses.post(SFMC_TOKEN, status=401, json={"error": "invalid_client"})
    response = session_for(client)
    assert response.status_code == 503 and response.headers["Retry-After"]


@responses.activate
@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "Missing data"),
        ({"fuel2token": None}, "Missing data"),
        ({"fuel2token": "   "}, "non-empty"),
        ({"fuel2token": 12}, "non-empty"),
        ({"fuel2token": "a b"}, "valid token"),
        ({"fuel2token": "a\r\nX-Evil: 1"}, "valid token"),
        ({"fuel2token": "x" * 4097}, "maximum length"),
        ([FUEL2TOKEN], "Missing data"),
    ],
)
def test_session_bad_body_names_the_field(client, body, problem):
    response = client.post("/t/default/api/session", json=body)
    assert response.status_code == 400
    assert problem in response.json["fields"]["fuel2token"][0]
    assert len(responses.calls) == 0  # SFMC is not asked


@responses.activate
def test_session_bad_body_is_400_for_unknown_tenant_too(client):
    # validation first: the answer does not tell which tenants exist
    assert client.post("/t/nobody/api/session", json={}).status_code == 400


@responses.activate
@pytest.mark.parametrize("tenant", ["nobody", "nosecret"])
def test_session_of_unknown_or_unusable_tenant_is_401_without_calling_sfmc(client, tenant):
    response = session_for(client, tenant)
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    assert len(responses.calls) == 0


@responses.activate
def test_another_tenants_session_is_refused(client):
    sfmc_answers()
    token = session_for(client).json["token"]
    assert whoami(client, token, "default").status_code == 200
    assert whoami(client, token, "twin").status_code == 401  # same JWT secret, other tenant
    assert whoami(client, token, "other").status_code == 401
    assert whoami(client, token, "nobody").status_code == 401


@responses.activate
def test_expired_session_is_refused(client, monkeypatch):
    sfmc_answers()
    now = int(time.time())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - SESSION_MAX_AGE - 5)
    old = session_for(client).json["token"]
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now - SESSION_MAX_AGE + 60)
    recent = session_for(client).json["token"]
    monkeypatch.undo()
    assert whoami(client, old).status_code == 401
    assert whoami(client, recent).status_code == 200


@responses.activate
def test_tampered_session_is_refused(client):
    sfmc_answers()
    token = session_for(client).json["token"]
    _payload, _, rest = token.partition(".")
    flipped = "A" if token[-5] != "A" else "B"  # a full-data character of the signature
    assert whoami(client, token[:-5] + flipped + token[-4:]).status_code == 401
    assert whoami(client, "eyJ0ZW5hbnQiOiJvdGhlciJ9." + rest).status_code == 401  # payload swapped


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-token"},
    ],
)
def test_protected_route_without_credentials(client, app, headers):
    response = client.get("/t/default/api/whoami", headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert app.config["seen"] == []


def test_api_key_ok_revoked_and_other_tenant(client, app, multi_runtime):
    r = multi_runtime.redis
    key = apikeys.create_key(r, "default", "ops")
    other_key = apikeys.create_key(r, "other", "ops")
    assert whoami(client, key).status_code == 200
    assert client.get("/t/default/api/whoami", headers={"Authorization": f"bearer {key}"}).status_code == 200
    assert whoami(client, key, "twin").status_code == 401
    assert whoami(client, key, "other").status_code == 401
    assert whoami(client, other_key, "other").status_code == 200
    assert whoami(client, other_key, "default").status_code == 401
    assert apikeys.list_keys(r, "default")[0]["lastUsedAt"] is not None
    apikeys.revoke_key(r, "default", apikeys.list_keys(r, "default")[0]["id"])
    assert whoami(client, key).status_code == 401
    assert app.config["seen"] == ["default", "default", "other"]


def test_unknown_tenant_answers_like_a_wrong_token(client, multi_runtime):
    key = apikeys.create_key(multi_runtime.redis, "default", "ops")
    unknown = whoami(client, key, "nobody")
    wrong = whoami(client, "rsk_" + "A" * 43, "default")
    assert unknown.status_code == wrong.status_code == 401
    assert json.loads(unknown.data) == json.loads(wrong.data)
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]


def test_session_route_only_answers_post(client):
    assert client.get("/t/default/api/session").status_code == 405
