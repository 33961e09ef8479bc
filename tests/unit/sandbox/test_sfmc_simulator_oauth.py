"""The SFMC simulator's web-app OAuth: authorize, the authorization-code and refresh-token grants,
userinfo, the per-tssd hosts, and its control routes."""

from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline import sandbox
from pipeline.sandbox import sfmc
from pipeline.sandbox.sfmc import APP_CLIENT_ID, APP_CLIENT_SECRET, SfmcSimulator

REDIRECT = "https://app.example/app/oauth/callback"


@pytest.fixture
def sim():
    return SfmcSimulator()


@pytest.fixture
def client(sim):
    return sim.app.test_client()


def authorize(client, scope="offline data_extensions_read", **overrides):
    params = {
        "response_type": "code",
        "client_id": APP_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "state": "st-1",
        "scope": scope,
        **overrides,
    }
    return client.get("/v2/authorize", query_string={k: v for k, v in params.items() if v is not None})


def code_of(client, **kwargs) -> str:
    answer = authorize(client, **kwargs)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def exchange(client, code, path="/v2/token", **overrides):
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": APP_CLIENT_ID,
        "client_secret": APP_CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        **overrides,
    }
    return client.post(path, json=body)


def refresh(client, token, path="/v2/token", secret=APP_CLIENT_SECRET):
    body = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": APP_CLIENT_ID,
        "client_secret": secret,
    }
    return client.post(path, json=body)


def test_defaults_match_the_sandbox_constants():
    assert sfmc.DEFAULT_MC_USER["eid"] == sandbox.SANDBOX_EID
    assert sfmc.DEFAULT_MC_USER["mid"] == sandbox.SANDBOX_MID
    assert sfmc.DEFAULT_MC_USER["tssd"] == sandbox.SANDBOX_TSSD


def test_authorize_redirects_back_with_code_state_and_tssd(client):
    answer = authorize(client)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-1"]
    assert query["tssd"] == ["sandbox"]
    assert len(query["code"][0]) >= 32


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "someone-else"},
        {"redirect_uri": None},
        {"redirect_uri": "javascript:x"},
        {"response_type": "token"},
    ],
)
def test_authorize_refuses_bad_requests_without_redirecting(client, overrides):
    answer = authorize(client, **overrides)
    assert answer.status_code == 400
    assert "Location" not in answer.headers


def test_code_exchange_gives_tokens_that_rest_and_userinfo_accept(client):
    answer = exchange(client, code_of(client))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["refresh_token"] and body["access_token"]
    assert body["rest_instance_url"] and body["soap_instance_url"] and body["expires_in"] > 0
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    context = client.get("/platform/v1/tokenContext", headers=bearer).get_json()
    assert context["organization"]["id"] == int(sandbox.SANDBOX_MID)  # registered for the user's MID
    info = client.get("/v2/userinfo", headers=bearer)
    assert info.status_code == 200
    info = info.get_json()
    # the stack key as Marketing Cloud names it ("S4"): the app frames its pages from that stack only
    assert info["organization"] == {"member_id": 100000001, "enterprise_id": 100000000, "stackKey": "S0"}
    assert info["user"]["email"] == sfmc.DEFAULT_MC_USER["email"]
    assert set(info["rest"]) == {"rest_instance_url", "soap_instance_url"}


def test_without_offline_scope_no_refresh_token(client):
    body = exchange(client, code_of(client, scope="data_extensions_read")).get_json()
    assert "refresh_token" not in body


def test_code_is_single_use(client):
    code = code_of(client)
    assert exchange(client, code).status_code == 200
    assert exchange(client, code).status_code == 400


def test_code_expires(client, sim):
    code = code_of(client)
    sim.codes[code]["expires"] = 0.0
    assert exchange(client, code).status_code == 400


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"redirect_uri": "https://elsewhere.example/cb"}, 400),
        ({"client_secret": "wrong"}, 401),
        ({"client_id": sfmc.DEFAULT_CLIENT_ID, "client_secret": sfmc.DEFAULT_CLIENT_SECRET}, 401),
    ],
)
def test_code_exchange_refusals(client, overrides, status):
    assert exchange(client, code_of(client), **overrides).status_code == status


def test_refresh_token_rotates(client, sim):
    first = exchange(client, code_of(client)).get_json()["refresh_token"]
    answer = refresh(client, first)
    assert answer.status_code == 200
    second = answer.get_json()["refresh_token"]
    assert second and second != first
    assert refresh(client, first).status_code == 400  # the old one stopped working
    assert refresh(client, second, secret="wrong").status_code == 401
    assert refresh(client, second).status_code == 200


def test_revoke_refresh_tokens(client):
    token = exchange(client, code_of(client)).get_json()["refresh_token"]
    assert client.post("/__sandbox__/revoke-refresh-tokens").status_code == 200
    assert refresh(client, token).status_code == 400


def test_tssd_routes_answer_only_for_the_users_tssd(client):
    token = exchange(client, code_of(client), path="/tssd/sandbox/v2/token").get_json()
    assert token["access_token"]
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get("/tssd/sandbox/v2/userinfo", headers=bearer).status_code == 200
    assert client.get("/tssd/other/v2/userinfo", headers=bearer).status_code == 404
    assert exchange(client, code_of(client), path="/tssd/other/v2/token").status_code == 404
    assert refresh(client, token["refresh_token"], path="/tssd/other/v2/token").status_code == 404


def test_userinfo_refuses_client_credentials_and_unknown_tokens(client):
    cc = client.post(
        "/v2/token",
        json={
            "grant_type": "client_credentials",
            "client_id": sfmc.DEFAULT_CLIENT_ID,
            "client_secret": sfmc.DEFAULT_CLIENT_SECRET,
            "account_id": "42",
        },
    )
    assert cc.status_code == 200  # client credentials still work as before
    bearer = {"Authorization": f"Bearer {cc.get_json()['access_token']}"}
    assert client.get("/v2/userinfo", headers=bearer).status_code == 401
    assert client.get("/v2/userinfo", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_unknown_grant_type(client):
    assert client.post("/v2/token", json={"grant_type": "password"}).status_code == 400


def test_mc_user_is_configurable(client):
    answer = client.post(
        "/__sandbox__/mc-user",
        json={"eid": "200", "mid": "201", "tssd": "acme-1", "name": "bob", "stack": "S7"},
    )
    assert answer.status_code == 200
    redirect = authorize(client).headers["Location"]
    assert parse_qs(urlsplit(redirect).query)["tssd"] == ["acme-1"]
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    token = exchange(client, code, path="/tssd/acme-1/v2/token").get_json()["access_token"]
    info = client.get("/tssd/acme-1/v2/userinfo", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert info["organization"] == {"member_id": 201, "enterprise_id": 200, "stackKey": "S7"}
    assert info["user"]["name"] == "bob"
    assert client.get("/__sandbox__/state").get_json()["mc_user"]["tssd"] == "acme-1"


@pytest.mark.parametrize(
    "body",
    [
        {"tssd": "a.b"},
        {"eid": "x1"},
        {"mid": ""},
        {"colour": "red"},
        {"name": True},
        {"stack": "s.4"},
        ["eid"],
    ],
)
def test_mc_user_rejects_bad_values(client, body):
    assert client.post("/__sandbox__/mc-user", json=body).status_code == 400


def test_reset_restores_the_default_user(client, sim):
    client.post("/__sandbox__/mc-user", json={"eid": "300"})
    client.post("/__sandbox__/reset")
    assert sim.mc_user == sfmc.DEFAULT_MC_USER
