"""The activity UI's handshake over real HTTP: a Journey Builder token registered at the SFMC
simulator is exchanged at POST /t/<tenant>/api/session (the web app asks the simulator's
tokenContext at the tenant's own REST base) and the session token opens the tenant's /api/."""

from __future__ import annotations

import secrets

import requests

from pipeline.infra import keys
from pipeline.sandbox import SANDBOX_MID
from pipeline.sandbox.stack import Stack

TENANT = "auth"  # only its SFMC token cache is touched, and dropped again at the end


def _jb_token(stack: Stack, mid: str, eid: str = "200000001") -> str:
    token = secrets.token_urlsafe(18)
    response = requests.post(
        f"{stack.sfmc_url}/__sandbox__/jb-tokens", json={"token": token, "mid": mid, "eid": eid}, timeout=10
    )
    assert response.status_code == 200, response.text
    return token


def _session(stack: Stack, fuel2token: str) -> requests.Response:
    return requests.post(
        f"{stack.web_url}/t/{TENANT}/api/session", json={"fuel2token": fuel2token}, timeout=30
    )


def test_jb_token_becomes_a_session_that_opens_the_api(stack: Stack):
    try:
        answer = _session(stack, _jb_token(stack, SANDBOX_MID))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["expiresIn"] == 900
        assert stack.sfmc_state()["token_context_calls"] == 1

        templates = f"{stack.web_url}/t/{TENANT}/api/templates"
        with_session = requests.get(
            templates, headers={"Authorization": f"Bearer {body['token']}"}, timeout=30
        )
        assert with_session.status_code == 200, with_session.text
        assert "items" in with_session.json()
        assert requests.get(templates, timeout=30).status_code == 401
        # the session is this tenant's only
        other = requests.get(
            f"{stack.web_url}/t/chain/api/templates",
            headers={"Authorization": f"Bearer {body['token']}"},
            timeout=30,
        )
        assert other.status_code == 401

        # a token SFMC does not know, and a real token of another account, are refused
        assert _session(stack, "never-issued-by-sfmc").status_code == 401
        assert _session(stack, _jb_token(stack, "555", eid="556")).status_code == 401
        # SFMC failing: 503 with Retry-After, so the UI tries again
        stack.faults("sfmc", fail_next=1)
        down = _session(stack, _jb_token(stack, SANDBOX_MID))
        assert down.status_code == 503 and down.headers["Retry-After"]
    finally:
        stack.redis.delete(keys.token(TENANT, "sfmc"))
