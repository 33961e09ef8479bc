"""App Settings: the form, write-only secrets, test connection, webhook rotation, the install
button and the status panel; CSRF on every POST; one tenant's session never reaches another's."""

import json
import logging
import re
import secrets

import pytest

from pipeline.clients.errors import PermanentError, RetryableError
from pipeline.clients.tokens import Refusals
from pipeline.infra import keys
from pipeline.settings import load_settings
from pipeline.stores.deadletters import record_dead_letter
from pipeline.subscriptions import dataextensions
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import SfmcAuthMode, Stage, TenantStatus
from pipeline.web import create_app
from pipeline.web.app_session import SESSION_COOKIE_NAME, hashed

BASE = "https://localhost"
APP_SECRET = "app-client-secret-never-shown-0001"
ENV = {
    "REDIS_URL": "redis://unused:6379/0",
    "PUBLIC_BASE_URL": "https://rsf.example",
    "SECRET_KEY": "unit-secret-key-for-sealing-0123456789abcdef",
    "SFMC_APP_CLIENT_ID": "app-client",
    "SFMC_APP_CLIENT_SECRET": APP_SECRET,
    "SFMC_APP_AUTH_BASE_URL": "https://app-auth.sfmc.test",
}
ROKT_SECRET = "rokt-secret-value-never-shown-1234"
SFMC_SECRET = "sfmc-secret-value-never-shown-5678"
JWT_SECRET = "jwt-signing-secret-never-shown-0123456789abcdef"
REFRESH = "refresh-token-never-shown-9999"
COMPLETE = {
    "rokt_account_id": "acct-42",
    "rokt_account_code": "acme",
    "rokt_client_id": "rokt-client",
    "rokt_client_secret": ROKT_SECRET,
    "sfmc_account_id": "11",
    "sfmc_client_id": "",
    "sfmc_client_secret": "",
    "jb_jwt_secret": JWT_SECRET,
}
POSTS = ["/app/settings", "/app/settings/test", "/app/settings/webhook/rotate", "/app/install"]


@pytest.fixture
def runtime(fake_redis):
    env = {**ENV, "JB_JWT_SECRET": "pinned-jwt-secret-0123456789abcdef0123", "SFMC_EID": "555"}
    env.update({"ROKT_CLIENT_ID": "p", "ROKT_ACCOUNT_CODE": "p", "SFMC_ACCOUNT_ID": "5"})
    return Runtime(load_settings(env), fake_redis)


@pytest.fixture
def installs():
    return []


@pytest.fixture
def app(runtime, installs):
    app = create_app(runtime)
    app.extensions["rsf.install_data_extensions"] = installs.append
    return app


@pytest.fixture
def tenants(runtime):
    """Two accounts that signed in: A (EID 1) and B (EID 2)."""
    a = runtime.registry.sign_in(eid="1", mid="11", tssd="acme", refresh_token=REFRESH)
    b = runtime.registry.sign_in(eid="2", mid="22", tssd="brand-b", refresh_token="refresh-b")
    runtime.registry.update(b.name, {"rokt_client_id": "b-client", "rokt_client_secret": "b-secret-zzzz"})
    return a.name, b.name


class Browser:
    """A signed-in browser: its session as the sign-in callback leaves it."""

    def __init__(self, app, fake_redis, tenant: str, eid: str) -> None:
        self.client = app.test_client()
        self.csrf = secrets.token_urlsafe(32)
        self.sid = secrets.token_urlsafe(32)
        record = {"tenant": tenant, "eid": eid, "user": "alice", "csrf": self.csrf}
        fake_redis.set(keys.app_session(hashed(self.sid)), json.dumps(record))
        self.client.set_cookie(SESSION_COOKIE_NAME, self.sid, domain="localhost")
        self.bodies: list[str] = []

    def get(self, path, **kwargs):
        answer = self.client.get(path, base_url=BASE, **kwargs)
        self.bodies.append(answer.get_data(as_text=True))
        return answer

    def post(self, path, data=None, csrf=True, **kwargs):
        form = dict(data or {})
        if csrf is True:
            form["csrf_token"] = self.csrf
        elif csrf:
            form["csrf_token"] = csrf
        answer = self.client.post(path, base_url=BASE, data=form, **kwargs)
        self.bodies.append(answer.get_data(as_text=True))
        return answer


@pytest.fixture
def browser_a(app, fake_redis, tenants):
    return Browser(app, fake_redis, tenants[0], "1")


@pytest.fixture
def browser_b(app, fake_redis, tenants):
    return Browser(app, fake_redis, tenants[1], "2")


def field_errors(html: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in re.findall(r'class="field-error" data-field="([a-z_]+)">([^<]*)<', html):
        found.setdefault(name, []).append(message)
    return found


def test_page_shows_the_form_with_write_only_secrets(browser_a, runtime, tenants):
    runtime.registry.update(tenants[0], COMPLETE)
    answer = browser_a.get("/app/settings")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert 'value="acct-42"' in html and 'value="acme"' in html and 'value="rokt-client"' in html
    assert re.search(r'data-field="rokt_client_secret">set<', html)
    assert re.search(r'data-field="sfmc_client_secret">not set<', html)
    assert ROKT_SECRET not in html and JWT_SECRET not in html
    assert "https://rsf.example/t/sfmc-1/webhooks/rokt" in html
    assert 'name="csrf_token" value="' + browser_a.csrf in html


def test_save_updates_the_registry_and_activates(browser_a, runtime, tenants):
    answer = browser_a.post("/app/settings", COMPLETE)
    assert answer.status_code == 200, field_errors(answer.get_data(as_text=True))
    tenant = runtime.registry.get(tenants[0])
    assert tenant.rokt_client_secret == ROKT_SECRET and tenant.jb_jwt_secret == JWT_SECRET
    assert tenant.rokt_account_id == "acct-42"
    assert tenant.sfmc_auth_mode == SfmcAuthMode.REFRESH_TOKEN
    assert tenant.status == TenantStatus.ACTIVE  # nothing missing now
    assert ROKT_SECRET not in answer.get_data(as_text=True)
    browser_a.post("/app/settings", {**COMPLETE, "reporting_time_zone": "Europe/London"})
    assert runtime.registry.get(tenants[0]).reporting_time_zone == "Europe/London"


def test_empty_secret_keeps_the_stored_one(browser_a, runtime, tenants):
    browser_a.post("/app/settings", COMPLETE)
    answer = browser_a.post(
        "/app/settings",
        {**COMPLETE, "rokt_client_secret": "", "jb_jwt_secret": "", "rokt_account_code": "new"},
    )
    assert answer.status_code == 200
    tenant = runtime.registry.get(tenants[0])
    assert tenant.rokt_client_secret == ROKT_SECRET and tenant.jb_jwt_secret == JWT_SECRET
    assert tenant.rokt_account_code == "new"


def test_server_to_server_client_switches_the_auth_mode(browser_a, runtime, tenants):
    answer = browser_a.post("/app/settings", {**COMPLETE, "sfmc_client_id": "s2s", "sfmc_client_secret": ""})
    assert answer.status_code == 400
    assert field_errors(answer.get_data(as_text=True)) == {
        "sfmc_client_secret": ["required with an SFMC client id"]
    }
    answer = browser_a.post(
        "/app/settings", {**COMPLETE, "sfmc_client_id": "s2s", "sfmc_client_secret": SFMC_SECRET}
    )
    assert answer.status_code == 200
    tenant = runtime.registry.get(tenants[0])
    assert (
        tenant.sfmc_auth_mode == SfmcAuthMode.CLIENT_CREDENTIALS and tenant.sfmc_client_secret == SFMC_SECRET
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sfmc_account_id": "12ab"}, "sfmc_account_id"),
        ({"jb_jwt_secret": "short"}, "jb_jwt_secret"),
        ({"rokt_account_code": "a b"}, "rokt_account_code"),
        ({"rokt_client_id": "x" * 300}, "rokt_client_id"),
        ({"rokt_client_secret": "bad\x01"}, "rokt_client_secret"),
        ({"name": "sfmc-2"}, "name"),  # the tenant comes from the session, never the form
        ({"sfmc_eid": "2"}, "sfmc_eid"),
        ({"reporting_time_zone": "Mars/Olympus_Mons"}, "reporting_time_zone"),
        ({"reporting_time_zone": "../../etc/passwd"}, "reporting_time_zone"),
    ],
)
def test_bad_input_rerenders_with_the_fields_message(browser_a, runtime, tenants, changes, field):
    before = runtime.registry.get(tenants[0])
    answer = browser_a.post("/app/settings", {**COMPLETE, **changes})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert field in field_errors(html)
    assert runtime.registry.get(tenants[0]) == before
    assert ROKT_SECRET not in html and JWT_SECRET not in html  # not echoed back


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
def test_every_post_needs_the_csrf_token(browser_a, runtime, tenants, installs, path, csrf):
    before = runtime.registry.get(tenants[0])
    answer = browser_a.post(path, COMPLETE, csrf=csrf)
    assert answer.status_code == 403
    assert runtime.registry.get(tenants[0]) == before
    assert installs == []
    assert dataextensions.install_progress(runtime.redis, tenants[0])["state"] == "never"
    assert runtime.redis.get(keys.settings_check(tenants[0])) is None


def test_csrf_header_is_accepted_for_fetch_calls(browser_a, tenants, installs):
    answer = browser_a.client.post("/app/install", base_url=BASE, headers={"X-CSRF-Token": browser_a.csrf})
    assert answer.status_code == 202
    assert installs == [tenants[0]]


def test_another_sessions_csrf_token_is_refused(browser_a, browser_b, tenants, installs):
    assert browser_a.post("/app/install", csrf=browser_b.csrf).status_code == 403
    assert installs == []


def test_a_session_of_tenant_a_never_reaches_tenant_b(browser_a, runtime, tenants):
    a, b = tenants
    b_before = runtime.registry.get(b)
    for path in ("/app/settings", f"/app/settings?tenant={b}", f"/app/install/status?tenant={b}"):
        html = browser_a.get(path).get_data(as_text=True)
        assert b not in html and "b-client" not in html
    browser_a.post(f"/app/settings?tenant={b}", {**COMPLETE, "rokt_account_code": "hijack"})
    browser_a.post("/app/settings", {**COMPLETE, "tenant": b, "rokt_account_code": "hijack2"})
    browser_a.post(f"/app/settings/webhook/rotate?tenant={b}")
    browser_a.post(f"/app/install?tenant={b}")
    assert runtime.registry.get(b) == b_before
    assert runtime.registry.get(a).rokt_account_code == "hijack"  # the query string named B: A changed
    assert dataextensions.install_progress(runtime.redis, b)["state"] == "never"


def test_without_a_session(app, tenants):
    client = app.test_client()
    assert client.get("/app/settings", base_url=BASE).headers["Location"] == "/app/login"
    status = client.get("/app/install/status", base_url=BASE, headers={"Accept": "application/json"})
    assert status.status_code == 401
    assert client.post("/app/settings", base_url=BASE, data={"csrf_token": "x"}).status_code == 403


def test_pinned_tenant_is_read_only(app, fake_redis, runtime):
    pinned = Browser(app, fake_redis, "default", "555")
    html = pinned.get("/app/settings").get_data(as_text=True)
    assert 'id="pinned"' in html and "<fieldset disabled>" in html and 'type="submit">Save' not in html
    before = runtime.registry.get("default")
    assert pinned.post("/app/settings", {**COMPLETE, "rokt_account_code": "x"}).status_code == 403
    assert pinned.post("/app/settings/webhook/rotate").status_code == 403
    assert runtime.registry.get("default") == before
    assert "pinned-jwt-secret" not in "".join(pinned.bodies)


class FakeClient:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def check_credentials(self) -> None:
        if self.error is not None:
            raise self.error


def without_times(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "checkedAt"}


def test_test_connection_says_which_failed_and_why(browser_a, runtime, tenants, monkeypatch):
    runtime.registry.update(tenants[0], COMPLETE)
    monkeypatch.setattr(runtime, "rokt", lambda name: FakeClient(None))
    refused = PermanentError("SFMC token: HTTP 401: invalid client credentials", status=401)
    monkeypatch.setattr(runtime, "sfmc", lambda name: FakeClient(refused))
    answer = browser_a.client.post(
        "/app/settings/test", base_url=BASE, headers={"X-CSRF-Token": browser_a.csrf}
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["ok"] is False
    assert without_times(body["rokt"]) == {"ok": True, "reason": ""}
    assert without_times(body["sfmc"]) == {
        "ok": False,
        "reason": "SFMC token: HTTP 401: invalid client credentials",
    }
    stored = json.loads(runtime.redis.get(keys.settings_check(tenants[0])))
    assert stored["sfmc"]["ok"] is False and stored["sfmc"]["checkedAt"] > 0
    assert [row["state"] for row in body["tokens"]] == ["ok", "failed"]
    assert body["status"] == "active" and body["missing"] == []
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert re.search(r'data-vendor="rokt">Rokt: OK \(checked 20\d\d-', html)
    assert re.search(
        'data-vendor="sfmc">Marketing Cloud: failed \u2013 SFMC token: HTTP 401: invalid client '
        r"credentials \(checked 20\d\d-",
        html,
    )


def test_test_connection_never_answers_an_exceptions_text(browser_a, runtime, tenants, monkeypatch):
    runtime.registry.update(tenants[0], COMPLETE)
    monkeypatch.setattr(runtime, "rokt", lambda name: FakeClient(RuntimeError(f"boom {ROKT_SECRET}")))
    monkeypatch.setattr(
        runtime, "sfmc", lambda name: FakeClient(RetryableError("connection failed: POST /v2/token"))
    )
    body = browser_a.post("/app/settings/test").get_json()
    assert without_times(body["rokt"]) == {"ok": False, "reason": "unexpected error (RuntimeError)"}
    assert body["sfmc"]["reason"] == "connection failed: POST /v2/token"
    assert ROKT_SECRET not in json.dumps(body)


def test_webhook_secret_is_shown_once_after_rotation(browser_a, runtime, tenants):
    answer = browser_a.post("/app/settings/webhook/rotate")
    assert answer.status_code == 200
    secret = runtime.registry.get(tenants[0]).rokt_webhook_secret
    html = answer.get_data(as_text=True)
    assert secret in html and "72 hours" in html
    assert secret not in browser_a.get("/app/settings").get_data(as_text=True)
    again = browser_a.post("/app/settings/webhook/rotate").get_data(as_text=True)
    tenant = runtime.registry.get(tenants[0])
    assert tenant.rokt_webhook_secret_previous == secret and secret not in again


def test_install_queues_once_and_reports_progress(browser_a, runtime, tenants, installs):
    first = browser_a.post("/app/install", headers={"Accept": "application/json"})
    assert first.status_code == 202 and first.get_json()["state"] == "queued"
    assert installs == [tenants[0]]
    second = browser_a.post("/app/install", headers={"Accept": "application/json"})
    assert second.status_code == 409 and installs == [tenants[0]]
    status = browser_a.get("/app/install/status")
    assert status.get_json()["state"] == "queued"


def test_install_that_cannot_be_queued_is_not_left_queued(app, browser_a, runtime, tenants):
    def broken(_name):
        raise ConnectionError("broker down")

    app.extensions["rsf.install_data_extensions"] = broken
    answer = browser_a.client.post("/app/install", base_url=BASE, headers={"X-CSRF-Token": browser_a.csrf})
    assert answer.status_code == 503
    assert dataextensions.install_progress(runtime.redis, tenants[0])["state"] == "failed"


def test_status_panel_names_a_data_extension_an_old_install_lacks(browser_a, runtime, tenants):
    """Installed before the performance DE existed: the panel says so (its rows wait for it)."""
    from pipeline.delivery.performance_rows import PERFORMANCE_DE

    config = runtime.tenant(tenants[0])
    steps = [
        {"name": f"data extension {de.name} ({de.key_of(config)})", "result": "exists"}
        for de in dataextensions.DATA_EXTENSIONS
        if de is not PERFORMANCE_DE
    ]
    progress = {"state": "done", "steps": steps, "error": "", "updatedAt": 1.0}
    runtime.redis.set(keys.install_progress(tenants[0]), json.dumps(progress))
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert 'id="status-installed">installed<span id="status-not-installed" class="bad">' in html
    assert ", without Rokt Calendar Performance: Install again</span>" in html
    progress["steps"].append({"name": f"data extension {PERFORMANCE_DE.name} (k)", "result": "created"})
    runtime.redis.set(keys.install_progress(tenants[0]), json.dumps(progress))
    assert "status-not-installed" not in browser_a.get("/app/settings").get_data(as_text=True)


def test_status_panel(browser_a, runtime, tenants):
    a = tenants[0]
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert 'id="status-installed">not installed' in html
    assert 'id="contact-builder" hidden' in html
    assert "Last webhook received</dt><dd>never" in html
    runtime.redis.set(keys.last_webhook(a), "1767225600")
    runtime.redis.set(keys.last_execute(a), "1767225660.5")
    for item in ("x1", "x2"):
        record_dead_letter(
            runtime.redis,
            a,
            item,
            stage=Stage.RENDER,
            error_class="permanent",
            reason="r",
            attempts=1,
            payload={},
        )
    runtime.redis.set(
        keys.install_progress(a), json.dumps({"state": "done", "steps": [], "error": "", "updatedAt": 1.0})
    )
    Refusals(runtime.redis, a, "sfmc", "digest").refused("SFMC refused the refresh token")
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert "2026-01-01 00:00:00 UTC" in html and "2026-01-01 00:01:00 UTC" in html
    assert 'id="status-dead-letters">2<' in html
    assert 'id="status-installed">installed' in html
    assert 'id="contact-builder" hidden' not in html and "Contact Builder" in html
    assert "SubscriberExternalId" in html
    assert 'id="reconnect"' in html and "SFMC refused the refresh token" in html
    assert 'id="status-reconnect">rejected: writes wait<' in html
    assert 'id="status-tenant">pending' in html


def test_status_panel_shows_who_may_frame_the_pages(browser_a, runtime, tenants):
    """The held list, as the browser is told it: any stack while none is known, then the stack's
    own hosts, then a tenant's own override."""
    a = tenants[0]
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert "<code>https://*.exacttarget.com</code> <code>https://*.marketingcloudapps.com</code>" in html
    assert 'id="framing-source">any Marketing Cloud stack' in html
    runtime.registry.sign_in(eid="1", mid="11", tssd="acme", refresh_token=REFRESH, stack="s4")
    html = browser_a.get("/app/settings").get_data(as_text=True)
    app_sources = (
        "<code>https://mc.s4.exacttarget.com</code> <code>https://*.s4.marketingcloudapps.com</code>"
    )
    assert f'id="framing-app">App Settings: {app_sources}</span>' in html
    jb = "<code>https://jbinteractions.s4.marketingcloudapps.com</code>"
    assert f'id="framing-activity">Activity: {jb}</span>' in html
    assert 'id="framing-source">Marketing Cloud stack s4<' in html
    runtime.registry.update(a, {"frame_origins": "https://mc.example.test"})
    html = browser_a.get("/app/settings").get_data(as_text=True)
    assert 'id="framing-activity">Activity: <code>https://mc.example.test</code></span>' in html
    assert 'id="framing-source">set for this tenant (frame_origins)<' in html


def test_no_secret_in_any_answer_or_log(browser_a, runtime, tenants, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(
        runtime, "rokt", lambda name: FakeClient(PermanentError("Rokt token request rejected"))
    )
    monkeypatch.setattr(runtime, "sfmc", lambda name: FakeClient(None))
    browser_a.get("/app/settings")
    browser_a.post("/app/settings", {**COMPLETE, "sfmc_client_id": "s2s", "sfmc_client_secret": SFMC_SECRET})
    browser_a.post("/app/settings", {**COMPLETE, "sfmc_account_id": "bad", "sfmc_client_secret": SFMC_SECRET})
    browser_a.post("/app/settings/test")
    browser_a.post("/app/install")
    browser_a.get("/app/install/status")
    browser_a.get("/app/settings")
    browser_a.get("/app/static/app.js")
    browser_a.get("/app/logout")
    secrets_ = (ROKT_SECRET, SFMC_SECRET, JWT_SECRET, REFRESH, APP_SECRET, "b-secret-zzzz", browser_a.sid)
    for body in browser_a.bodies:
        for secret in secrets_:
            assert secret not in body
    for secret in secrets_:
        assert secret not in caplog.text


def json_post(browser, path, token):
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["X-CSRF-Token"] = token
    return browser.client.post(path, base_url=BASE, headers=headers)


@pytest.mark.parametrize("path", [*POSTS, "/app/settings/check"])
def test_a_refusal_says_what_happened_and_still_refuses(app, fake_redis, browser_a, runtime, tenants, path):
    """A stale token (signed in again elsewhere), an ended session, no token at all: each refused
    alike (nothing changes), each answered in words the page shows, naming the field at fault."""
    before = runtime.registry.get(tenants[0])
    stale = json_post(browser_a, path, "token-of-an-earlier-sign-in")
    assert stale.status_code == 403
    assert stale.get_json()["code"] == "signed_in_elsewhere"
    assert stale.get_json()["field"] == "csrf_token" and stale.get_json()["signIn"] == "/app/login"
    assert "signed in again in another tab" in stale.get_json()["message"]
    assert json_post(browser_a, path, None).get_json()["code"] == "csrf_missing"
    assert "signIn" not in json_post(browser_a, path, None).get_json()
    fake_redis.delete(keys.app_session(hashed(browser_a.sid)))  # idle past its lifetime
    ended = json_post(browser_a, path, browser_a.csrf)
    assert ended.status_code == 403 and ended.get_json()["code"] == "session_ended"
    assert "your session ended" in ended.get_json()["message"]
    assert runtime.registry.get(tenants[0]) == before
    assert dataextensions.install_progress(runtime.redis, tenants[0])["state"] == "never"
    assert runtime.redis.get(keys.settings_check(tenants[0])) is None


def test_a_refused_save_never_echoes_what_was_sent(browser_a, runtime, tenants):
    before = runtime.registry.get(tenants[0])
    answer = browser_a.post("/app/settings", {**COMPLETE, "rokt_account_code": "typed-code"}, csrf="stale")
    html = answer.get_data(as_text=True)
    assert answer.status_code == 403 and "Not saved: you signed in again in another tab" in html
    assert "typed-code" not in html and ROKT_SECRET not in html and JWT_SECRET not in html
    assert 'href="/app/login"' in html
    assert runtime.registry.get(tenants[0]) == before


def test_the_session_check_answers_ok_with_the_pages_token(browser_a):
    assert json_post(browser_a, "/app/settings/check", browser_a.csrf).get_json() == {"ok": True}


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/app/settings/check?action=save", "Your changes are kept: sign in again, then Save."),
        ("/app/settings/check", "Your changes in the form are kept: sign in again, then try again."),
        ("/app/settings/test", "Your changes in the form are kept: sign in again, then try again."),
    ],
)
def test_a_refusal_is_worded_for_what_was_asked(browser_a, path, words):
    message = json_post(browser_a, path, "stale").get_json()["message"]
    assert message.startswith("Not saved: " if "save" in path else "Not done: ") and message.endswith(words)


def test_still_missing_names_the_forms_labels(browser_a):
    html = browser_a.get("/app/settings").get_data(as_text=True)
    missing = re.search(r'<p class="notice" id="missing">(.*?)</p>', html, re.S).group(1)
    assert '<a href="#jb_jwt_secret">Package JWT signing secret</a>' in missing
    assert '<a href="#rokt_client_id">Rokt OAuth client ID</a>' in missing
    assert ">jb_jwt_secret<" not in missing and "rokt_client_secret," not in missing
    assert '<label for="jb_jwt_secret">Package JWT signing secret</label>' in html  # the same words


def test_test_connection_names_what_is_not_set_without_asking_the_vendor(browser_a, runtime, monkeypatch):
    asked = []
    monkeypatch.setattr(runtime, "rokt", lambda name: asked.append(name) or FakeClient(None))
    monkeypatch.setattr(runtime, "sfmc", lambda name: FakeClient(None))
    body = json_post(browser_a, "/app/settings/test", browser_a.csrf).get_json()
    assert body["rokt"]["reason"] == "not set: Rokt OAuth client ID, Rokt OAuth client secret"
    assert body["rokt"]["ok"] is False and body["sfmc"]["ok"] is True and asked == []
    assert body["status"] == "pending"
    assert {m["field"] for m in body["missing"]} >= {"jb_jwt_secret", "rokt_account_code"}
    assert "Package JWT signing secret" in [m["label"] for m in body["missing"]]


def test_a_save_that_changes_credentials_forgets_their_last_check(browser_a, runtime, tenants, monkeypatch):
    browser_a.post("/app/settings", COMPLETE)
    monkeypatch.setattr(runtime, "rokt", lambda name: FakeClient(None))
    monkeypatch.setattr(runtime, "sfmc", lambda name: FakeClient(None))
    json_post(browser_a, "/app/settings/test", browser_a.csrf)
    html = browser_a.post("/app/settings", {**COMPLETE, "rokt_client_secret": "another-rokt-secret-xyz"})
    html = html.get_data(as_text=True)
    assert 'data-vendor="rokt">Rokt: not checked since its settings changed<' in html
    assert re.search(r'data-vendor="sfmc">Marketing Cloud: OK \(checked ', html)  # untouched: kept
    assert 'data-autorun="1"' in html  # and app.js checks again at once


def test_a_required_setting_cannot_be_blanked_on_an_active_tenant(browser_a, runtime, tenants):
    browser_a.post("/app/settings", COMPLETE)
    before = runtime.registry.get(tenants[0])
    assert before.status == TenantStatus.ACTIVE
    answer = browser_a.post("/app/settings", {**COMPLETE, "rokt_account_code": ""})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert field_errors(html) == {
        "rokt_account_code": ["required while the tenant is active: journeys send with it"]
    }
    assert re.search(r'id="rokt_account_code"[^>]*aria-describedby="err-rokt_account_code-1 ', html)
    assert re.search(r'id="rokt_account_code"[^>]*aria-invalid="true"', html)
    assert 'id="badge">active<' in html
    assert runtime.registry.get(tenants[0]) == before


def test_an_error_about_a_setting_without_an_input_is_tied_to_the_input_that_caused_it(
    app, fake_redis, runtime
):
    """Signed in without an offline refresh token, on server-to-server credentials: emptying the
    client id would leave SFMC calls nothing to authenticate with."""
    tenant = runtime.registry.sign_in(eid="7", mid="77", tssd="acme", refresh_token=None)
    browser = Browser(app, fake_redis, tenant.name, "7")
    s2s = {**COMPLETE, "sfmc_account_id": "77", "sfmc_client_id": "s2s", "sfmc_client_secret": SFMC_SECRET}
    assert browser.post("/app/settings", s2s).status_code == 200
    assert runtime.registry.get(tenant.name).status == TenantStatus.ACTIVE
    answer = browser.post("/app/settings", {**s2s, "sfmc_client_id": ""})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    (message,) = field_errors(html)["sfmc_client_id"]
    assert message.startswith("Marketing Cloud sign-in (sign out, then open the app again): required while")
    assert re.search(r'id="sfmc_client_id"[^>]*aria-invalid="true"', html)
