"""Issue 13, secrets: strength at load and in the registry, rotation of the JWT secret, the webhook
path token apart from the HMAC key, path mode, failed authentications limited and answered alike,
https vendor URLs, and the inputs that must not hurt (deep JSON, chunked bodies over the cap)."""

import io
import json
import secrets
import time
from dataclasses import replace

import jwt
import pytest
from marshmallow import ValidationError
from werkzeug.test import EnvironBuilder, run_wsgi_app

from pipeline import sandbox
from pipeline.runtime import Runtime
from pipeline.settings import KNOWN_PUBLIC_SECRETS, load_settings, secret_problem
from pipeline.web import MAX_BODY_BYTES, create_app
from pipeline.web.auth import issue_session, session_valid
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET, IntakeEntries
from tests.unit.samples import SUBSCRIBE

WEBHOOK_SECRET = "unit-webhook-hmac-secret-0123456789abcdefgh"
STRONG = secrets.token_urlsafe(32)
COMPLETE = {
    "jb_jwt_secret": "jwt-secret-of-brand-b-0123456789abcdef",
    "rokt_client_id": "rokt-b",
    "rokt_client_secret": "rokt-secret-b",
    "rokt_account_code": "acct-b",
    "sfmc_auth_base_url": "https://auth.b.test",
    "sfmc_client_id": "sfmc-b",
    "sfmc_client_secret": "sfmc-secret-b",
    "sfmc_account_id": "456",
}
EXECUTE = {
    "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}],
    "activityId": "act-1",
    "definitionInstanceId": "def-1",
    "keyValue": "C1",
    "journeyId": "j-1",
}
APP_ENV = {"SECRET_KEY": "unit-secret-key-for-sealing-0123456789abcdef"}


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, item):
        self.calls.append((tenant, item))


def make(fake_redis, **env):
    runtime = Runtime(
        load_settings({**ENV, **APP_ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET, **env}), fake_redis
    )
    executes, hooks = IntakeEntries(fake_redis), Recorder()  # executes: what reached the intake
    client = create_app(runtime, enqueue_webhook=hooks).test_client()
    return runtime, client, executes, hooks


@pytest.fixture
def parts(fake_redis):
    return make(fake_redis)


def signed_webhook(client, secret=WEBHOOK_SECRET, tenant="default", body=None, **kwargs):
    raw = body if body is not None else json.dumps(SUBSCRIBE).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(secret, raw)}
    return client.post(f"/t/{tenant}/webhooks/rokt", data=raw, headers=headers, **kwargs)


def execute(client, secret=JWT_SECRET, tenant="default", **kwargs):
    body = jwt.encode({**EXECUTE, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    return client.post(f"/t/{tenant}/activity/execute", data=body, content_type="application/jwt", **kwargs)


# -- strength ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (STRONG, True),
        (secrets.token_hex(32), True),
        (JWT_SECRET, True),
        ("short-secret", False),
        ("a" * 40, False),
        ("abcdefgh" * 5, False),  # eight distinct characters, one pattern repeated
        ("0123456789abcdef" * 2, False),
        ("x" * 31, False),
    ],
)
def test_a_secret_needs_32_characters_and_no_repeated_pattern(value, ok):
    assert (secret_problem(value, sandbox=False) is None) is ok


def test_the_public_list_holds_exactly_the_sandbox_constants():
    assert {
        sandbox.SANDBOX_JWT_SECRET,
        sandbox.SANDBOX_WEBHOOK_SECRET,
        sandbox.SANDBOX_WEBHOOK_PATH_TOKEN,
        sandbox.SANDBOX_SECRET_KEY,
    } == KNOWN_PUBLIC_SECRETS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROKT_WEBHOOK_SECRET": "hook-secret"}, "tenant 'default': ROKT_WEBHOOK_SECRET: too short"),
        ({"JB_JWT_SECRET": "jwt-s3cr3t"}, "tenant 'default': JB_JWT_SECRET: too short"),
        ({"ROKT_WEBHOOK_PATH_TOKEN": "t" * 40}, "ROKT_WEBHOOK_PATH_TOKEN: too predictable"),
        ({"JB_JWT_SECRET": sandbox.SANDBOX_JWT_SECRET}, "JB_JWT_SECRET: is a published sandbox secret"),
        ({"ROKT_WEBHOOK_SECRET": sandbox.SANDBOX_WEBHOOK_SECRET}, "ROKT_WEBHOOK_SECRET: is a published"),
        ({"SECRET_KEY": sandbox.SANDBOX_SECRET_KEY}, "SECRET_KEY: is a published sandbox key"),
        ({"ROKT_API_BASE_URL": "http://rokt.test"}, "ROKT_API_BASE_URL: must be an https"),
        ({"SFMC_AUTH_BASE_URL": "http://auth.test"}, "SFMC_AUTH_BASE_URL: must be an https"),
    ],
)
def test_load_refuses_weak_or_public_secrets_and_plain_http_vendors_naming_tenant_and_key(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings({**ENV, **env})


def test_a_tenants_file_error_names_the_file_the_tenant_and_the_key(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.ok]\njb_jwt_secret = "{STRONG}"\n[tenants.weak]\nrokt_webhook_secret = "abc"\n'
    )
    with pytest.raises(ValueError, match=r"tenants.toml: tenant 'weak': rokt_webhook_secret: too short"):
        load_settings({"TENANTS_FILE": str(path)})


def test_the_sandbox_accepts_its_own_secrets_and_plain_http():
    settings = load_settings(
        {**sandbox.sandbox_env("http://127.0.0.1:1", "http://127.0.0.1:2"), "SANDBOX": "1"}
        | {"SECRET_KEY": sandbox.SANDBOX_SECRET_KEY}
    )
    assert settings.tenant("default").rokt_webhook_secret == sandbox.SANDBOX_WEBHOOK_SECRET
    with pytest.raises(ValueError, match="too short"):  # the sandbox does not excuse a weak secret
        load_settings({"SANDBOX": "1", "JB_JWT_SECRET": "weak-one"})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"jb_jwt_secret": "short"}, "jb_jwt_secret"),
        ({"rokt_webhook_secret": sandbox.SANDBOX_WEBHOOK_SECRET}, "rokt_webhook_secret"),
        ({"rokt_webhook_path_token": "abcd" * 10}, "rokt_webhook_path_token"),
        ({"rokt_api_base_url": "http://rokt.test"}, "rokt_api_base_url"),
        ({"sfmc_auth_base_url": "http://auth.b.test"}, "sfmc_auth_base_url"),
    ],
)
def test_the_registry_refuses_them_at_add_and_update_naming_the_field(parts, values, field):
    registry = parts[0].registry
    with pytest.raises(ValidationError) as added:
        registry.add("brand-b", {**COMPLETE, **values})
    assert set(added.value.messages) == {field}
    registry.add("brand-b", COMPLETE)
    with pytest.raises(ValidationError) as updated:
        registry.update("brand-b", values)
    assert set(updated.value.messages) == {field}
    assert registry.update("brand-b", {"rokt_account_code": "other"}).rokt_account_code == "other"


# -- JWT rotation --------------------------------------------------------------------------------
def test_a_changed_jwt_secret_keeps_the_previous_one_valid_for_the_grace_period(parts):
    runtime, client, executes, _ = parts
    old, new = COMPLETE["jb_jwt_secret"], secrets.token_urlsafe(32)
    runtime.registry.add("brand-b", COMPLETE)
    old_session = issue_session(runtime.registry.get("brand-b"))
    runtime.registry.update("brand-b", {"jb_jwt_secret": new})  # App Settings save, `tenants update`
    tenant = runtime.registry.get("brand-b")  # no restart: the version bump is seen at once here
    assert tenant.jwt_secrets(time.time()) == (new, old)
    assert execute(client, new, "brand-b").status_code == 200
    assert execute(client, old, "brand-b").status_code == 200
    assert session_valid(tenant, old_session) and session_valid(tenant, issue_session(tenant))
    later = time.time() + runtime.settings.jwt_secret_grace_hours * 3600 + 1
    assert tenant.jwt_secrets(later) == (new,)
    expired = replace(tenant, jb_jwt_previous_until=time.time() - 1)
    assert not session_valid(expired, old_session)
    assert len(executes.calls) == 1  # the second is the same execution: a duplicate


def test_after_the_grace_period_the_previous_jwt_secret_fails(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.update("brand-b", {"jb_jwt_secret": STRONG})
    record = json.loads(runtime.redis.hget("rsf:_registry:tenants", "brand-b"))
    record["jb_jwt_previous_until"] = time.time() - 1
    runtime.redis.hset("rsf:_registry:tenants", "brand-b", json.dumps(record))
    runtime.redis.incr("rsf:_registry:version")
    runtime.registry._checked_at = float("-inf")
    assert execute(client, COMPLETE["jb_jwt_secret"], "brand-b").status_code == 401
    assert execute(client, STRONG, "brand-b").status_code == 200


def test_a_zero_grace_drops_the_previous_jwt_secret_at_once(fake_redis):
    runtime = make(fake_redis, JWT_SECRET_GRACE_HOURS="0")[0]
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.update("brand-b", {"jb_jwt_secret": STRONG})
    assert runtime.registry.get("brand-b").jwt_secrets(time.time()) == (STRONG,)


# -- webhook path token ----------------------------------------------------------------------------
def test_the_path_token_is_not_the_hmac_key(parts):
    runtime, client, _, hooks = parts
    runtime.registry.add("brand-b", COMPLETE)
    secret = runtime.registry.rotate_webhook_secret("brand-b")
    token = runtime.registry.get("brand-b").rokt_webhook_path_token
    assert len(token) >= 40 and token != secret
    assert client.post(f"/t/brand-b/webhooks/rokt/{secret}", json=SUBSCRIBE).status_code == 401
    assert client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE).status_code == 200
    assert signed_webhook(client, token, "brand-b").status_code == 401  # the token signs nothing
    assert signed_webhook(client, secret, "brand-b").json == {"ok": True, "duplicate": True}
    assert len(hooks.calls) == 1


def test_a_rotation_keeps_the_previous_path_token_for_the_grace_period(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.rotate_webhook_secret("brand-b")
    first = runtime.registry.get("brand-b").rokt_webhook_path_token
    runtime.registry.rotate_webhook_secret("brand-b")
    tenant = runtime.registry.get("brand-b")
    assert tenant.webhook_path_tokens(time.time()) == (tenant.rokt_webhook_path_token, first)
    assert client.post(f"/t/brand-b/webhooks/rokt/{first}", json=SUBSCRIBE).status_code == 200
    later = time.time() + runtime.settings.webhook_secret_grace_hours * 3600 + 1
    assert tenant.webhook_path_tokens(later) == (tenant.rokt_webhook_path_token,)


def test_path_mode_off_is_header_only(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    secret = runtime.registry.rotate_webhook_secret("brand-b")
    token = runtime.registry.get("brand-b").rokt_webhook_path_token
    runtime.registry.update("brand-b", {"rokt_webhook_path_mode": False})
    off = client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE)
    wrong = client.post(f"/t/brand-b/webhooks/rokt/{'x' * 43}", json=SUBSCRIBE)
    assert off.status_code == wrong.status_code == 401 and off.json == wrong.json
    assert signed_webhook(client, secret, "brand-b").status_code == 200


def test_a_pinned_tenant_without_a_path_token_is_header_only(parts):
    _, client, _, _ = parts
    answer = client.post(f"/t/default/webhooks/rokt/{WEBHOOK_SECRET}", json=SUBSCRIBE)
    assert answer.status_code == 401
    assert signed_webhook(client).status_code == 200


def test_a_pinned_tenant_may_set_its_path_token(fake_redis):
    _, client, _, _ = make(fake_redis, ROKT_WEBHOOK_PATH_TOKEN=STRONG)
    assert client.post(f"/t/default/webhooks/rokt/{STRONG}", json=SUBSCRIBE).status_code == 200


# -- answered alike, limited, counted ------------------------------------------------------------------
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
    assert 0 < fake_redis.ttl("rsf:default:authfail:execute:127.0.0.1") <= 60


def test_guessing_tenant_names_is_limited_without_a_key_per_name(fake_redis):
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="2")
    answers = [execute(client, tenant=f"guess-{i}").status_code for i in range(4)]
    assert answers == [401, 401, 429, 429]
    assert not [key for key in fake_redis.keys("*") if "guess" in key]


def test_a_limit_of_zero_turns_the_limiter_off(fake_redis):
    _, client, _, _ = make(fake_redis, AUTH_FAILURE_LIMIT="0")
    assert {execute(client, "another-secret-0123456789abcdef0123").status_code for _ in range(30)} == {401}


def test_validate_does_not_tell_which_settings_a_tenant_lacks(parts, caplog):
    runtime, client, _, _ = parts
    runtime.registry.add("bare", {"rokt_client_id": "x"})
    caplog.set_level("WARNING", logger="pipeline.web.activity")
    answer = client.post("/t/bare/activity/validate", json={})
    assert answer.status_code == 400
    text = answer.get_data(as_text=True)
    assert "jb_jwt_secret" not in text and "rokt_account_code" not in text and "sfmc" not in text
    assert "jb_jwt_secret" in caplog.text and "rokt_account_code" in caplog.text


# -- inputs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [40, 5000, 30000])
def test_a_deeply_nested_authenticated_webhook_is_400(parts, depth):
    _, client, _, hooks = parts
    body = (
        '{"eventId":"e-deep","eventType":"Subscribe","eventDetails":' + "[" * depth + "]" * depth + "}"
    ).encode()
    answer = signed_webhook(client, body=body)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_json"
    assert hooks.calls == []


@pytest.mark.parametrize("depth", [40, 20000])
def test_a_deeply_nested_execute_is_never_a_5xx(parts, depth):
    import base64

    _, client, executes, _ = parts

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    deep = ("[" * depth + "]" * depth).encode()
    header = b64(b'{"alg":"HS256","typ":"JWT","x":' + deep + b"}")
    unsigned = client.post("/t/default/activity/execute", data=f"{header}.{b64(b'{}')}.x")
    assert unsigned.status_code == 401
    payload = {**EXECUTE, "deep": json.loads("[" * 40 + "]" * 40)} if depth == 40 else None
    if payload is not None:
        signed = client.post(
            "/t/default/activity/execute",
            data=jwt.encode(payload, JWT_SECRET, algorithm="HS256"),
            content_type="application/jwt",
        )
        assert signed.status_code == 400
    assert executes.calls == []


def _chunked(client_app, path, body, headers):
    builder = EnvironBuilder(method="POST", path=path, input_stream=io.BytesIO(body), headers=headers)
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)  # chunked: no Content-Length
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True  # as gunicorn and werkzeug's server set it
    app_iter, status, _headers = run_wsgi_app(client_app.application, environ)
    return int(status.split()[0]), b"".join(app_iter)


def test_a_chunked_body_over_the_cap_is_413_not_cut(parts):
    _, client, _, hooks = parts
    big = json.dumps({**SUBSCRIBE, "pad": "x" * MAX_BODY_BYTES}).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(WEBHOOK_SECRET, big)}
    status, body = _chunked(client, "/t/default/webhooks/rokt", big, headers)
    assert status == 413 and json.loads(body)["error"] == "request_entity_too_large"
    small = json.dumps(SUBSCRIBE).encode()
    headers["X-Rokt-Signature"] = signature_header(WEBHOOK_SECRET, small)
    assert _chunked(client, "/t/default/webhooks/rokt", small, headers)[0] == 200
    assert len(hooks.calls) == 1


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_413(parts):
    _, client, _, _ = parts
    at_cap = b"x" * MAX_BODY_BYTES
    assert client.post("/t/default/activity/execute", data=at_cap).status_code == 401
    assert client.post("/t/default/activity/execute", data=at_cap + b"x").status_code == 413
    status, _ = _chunked(client, "/t/default/activity/execute", at_cap, {})
    assert status == 401
    status, _ = _chunked(client, "/t/default/activity/execute", at_cap + b"x", {})
    assert status == 413
