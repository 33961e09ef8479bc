"""Sign-in to App Settings: the authorization-code flow against the SFMC simulator on loopback,
the server-side session and its cookie, logout, and the attacks on each."""

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipeline.infra import keys
from pipeline.sandbox import SANDBOX_EID, sandbox_app_env
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.sfmc import APP_CLIENT_SECRET, SfmcSimulator
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import SfmcAuthMode, TenantStatus
from pipeline.web import create_app
from pipeline.web.app_auth import SIGNIN_COOKIE
from pipeline.web.app_session import SESSION_COOKIE_NAME, hashed
from pipeline.web.origins import PAGE_POLICY

BASE = "https://localhost"
TENANT = f"sfmc-{SANDBOX_EID}"


@pytest.fixture(scope="module")
def sim_server():
    sim = SfmcSimulator()
    server = ServerThread(sim.app).start()
    yield sim, server.url
    server.stop()


@pytest.fixture
def sim(sim_server):
    simulator, _url = sim_server
    with simulator.lock:
        simulator.reset()
    return simulator


@pytest.fixture
def app_runtime(sim_server, sim, fake_redis):
    _simulator, url = sim_server
    env = {
        "REDIS_URL": "redis://unused:6379/0",
        "PUBLIC_BASE_URL": BASE,
        **sandbox_app_env("http://127.0.0.1:9", url),
    }
    return Runtime(load_settings(env), fake_redis)


@pytest.fixture
def app(app_runtime):
    return create_app(app_runtime)


@pytest.fixture
def browser(app):
    return app.test_client()


def start(browser) -> str:
    """GET /app/login; the simulator's authorize URL it redirects to."""
    answer = browser.get("/app/login", base_url=BASE)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"]


def authorize(url: str) -> str:
    """What the simulator redirects the browser to: our callback (path and query)."""
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == BASE
    return f"{location.path}?{location.query}"


def callback(browser, path: str):
    return browser.get(path, base_url=BASE)


def sign_in(browser):
    answer = callback(browser, authorize(start(browser)))
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/app/settings"
    return answer


def set_cookie_headers(answer, name: str) -> list[str]:
    return [v for v in answer.headers.getlist("Set-Cookie") if v.startswith(f"{name}=")]


def session_id(browser) -> str | None:
    cookie = browser.get_cookie(SESSION_COOKIE_NAME, domain="localhost")
    return cookie.value if cookie else None


def with_callback_args(path: str, **changes: str) -> str:
    parts = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + "?" + "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in query.items())


def test_login_starts_the_code_flow(browser, app_runtime, fake_redis):
    location = urlsplit(start(browser))
    settings = app_runtime.settings
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == settings.sfmc_app_auth_base_url + "/v2/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == settings.sfmc_app_client_id
    assert query["redirect_uri"] == BASE + "/app/oauth/callback"
    assert query["scope"] == settings.sfmc_app_scopes
    state_id = query["state"].split(".")[0]
    (member,) = fake_redis.zrange(keys.login_states(), 0, -1)
    assert state_id not in member  # kept as a digest
    assert fake_redis.zrange(keys.login_states_by_address(), 0, -1) == [member]
    assert 0 < fake_redis.ttl(keys.login_states()) <= 600
    nonce = browser.get_cookie(SIGNIN_COOKIE, domain="localhost").value
    assert nonce != query["state"]
    assert session_id(browser) is None  # no session before sign-in


def test_signin_cookie_attributes(browser):
    answer = browser.get("/app/login", base_url=BASE)
    (header,) = set_cookie_headers(answer, SIGNIN_COOKIE)
    attributes = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"secure", "httponly", "partitioned", "path", "samesite", "max-age"} <= attributes
    assert "domain" not in attributes
    assert "SameSite=None" in header and "Path=/" in header


def test_sign_in_creates_a_pending_tenant_and_a_session(browser, app_runtime, sim, fake_redis):
    answer = sign_in(browser)
    tenant = app_runtime.registry.get(TENANT)
    assert tenant is not None and tenant.status == TenantStatus.PENDING
    assert (tenant.sfmc_eid, tenant.sfmc_tssd, tenant.sfmc_account_id) == (
        SANDBOX_EID,
        "sandbox",
        "100000001",
    )
    assert tenant.sfmc_auth_mode == SfmcAuthMode.REFRESH_TOKEN
    assert app_runtime.registry.has_refresh_token(TENANT)  # the offline scope's refresh token
    assert set_cookie_headers(answer, SIGNIN_COOKIE)  # the sign-in cookie is cleared
    page = browser.get("/app/settings", base_url=BASE)
    assert page.status_code == 200
    assert TENANT in page.get_data(as_text=True)
    assert sim.state()["userinfo_calls"] == 1


def test_session_cookie_attributes_exactly(browser):
    answer = sign_in(browser)
    (header,) = set_cookie_headers(answer, SESSION_COOKIE_NAME)
    value, *attributes = [part.strip() for part in header.split(";")]
    assert re.fullmatch(rf"{re.escape(SESSION_COOKIE_NAME)}=[A-Za-z0-9_-]{{43}}", value)
    assert sorted(attributes) == sorted(["Secure", "HttpOnly", "Path=/", "SameSite=None", "Partitioned"])


def test_session_data_lives_in_redis_under_a_hash(browser, fake_redis):
    sign_in(browser)
    sid = session_id(browser)
    assert fake_redis.exists(keys.app_session(hashed(sid)))
    assert not any(sid in key for key in fake_redis.keys("*"))
    assert 0 < fake_redis.ttl(keys.app_session(hashed(sid))) <= 8 * 3600


def test_session_id_is_new_after_sign_in(browser, fake_redis):
    """Session fixation: an id set before sign-in (planted, say) is worthless after it."""
    planted = "p" * 43
    fake_redis.set(keys.app_session(hashed(planted)), '{"note": "before sign-in"}')
    browser.set_cookie(SESSION_COOKIE_NAME, planted, domain="localhost")
    sign_in(browser)
    assert session_id(browser) not in (None, planted)
    assert not fake_redis.exists(keys.app_session(hashed(planted)))


def test_login_with_a_session_signs_in_again_and_replaces_the_session(browser, sim):
    """An agency user opens the app from another enterprise: the session of the first one must
    not carry over (the cookie partition is Marketing Cloud's, shared by every account)."""
    sign_in(browser)
    first = session_id(browser)
    answer = browser.get("/app/login", base_url=BASE)
    assert answer.status_code == 302 and "/v2/authorize?" in answer.headers["Location"]
    sign_in(browser)
    assert session_id(browser) not in (None, first)


def test_forged_state_is_refused_before_anything_else(browser, app_runtime, sim):
    path = authorize(start(browser))
    answer = callback(browser, with_callback_args(path, state="forged-" + "x" * 40))
    assert answer.status_code == 400
    assert sim.counters.token_requests == 0
    assert app_runtime.registry.get(TENANT) is None
    assert session_id(browser) is None


def test_missing_state_is_refused(browser, sim):
    path = authorize(start(browser))
    parts = urlsplit(path)
    query = "&".join(p for p in parts.query.split("&") if not p.startswith("state="))
    assert callback(browser, f"{parts.path}?{query}").status_code == 400
    assert sim.counters.token_requests == 0


def test_replayed_state_is_refused(browser, sim):
    path = authorize(start(browser))
    assert callback(browser, path).status_code == 302
    requests_after_first = sim.counters.token_requests
    again = callback(browser, path)
    assert again.status_code == 400
    assert sim.counters.token_requests == requests_after_first


def test_state_from_another_browser_is_refused(app, sim, app_runtime):
    """Login CSRF: the attacker's callback URL opened in the victim's browser."""
    attacker, victim = app.test_client(), app.test_client()
    path = authorize(start(attacker))
    answer = callback(victim, path)  # no sign-in cookie at all
    assert answer.status_code == 400
    assert sim.counters.token_requests == 0
    assert session_id(victim) is None
    assert callback(attacker, path).status_code == 400  # and the state is used up


def test_state_with_another_browsers_nonce_is_refused(app, sim):
    attacker, victim = app.test_client(), app.test_client()
    path = authorize(start(attacker))
    start(victim)  # the victim has a sign-in cookie of its own
    assert callback(victim, path).status_code == 400
    assert sim.counters.token_requests == 0


@pytest.mark.parametrize(
    "tssd", ["evil.com/x", "a.b", "Sandbox", "a" * 64, "", "sandbox\n", "evil.com#", "x y"]
)
def test_tssd_must_be_one_dns_label(browser, sim, app_runtime, tssd):
    path = authorize(start(browser))
    answer = callback(browser, with_callback_args(path, tssd=tssd))
    assert answer.status_code == 400
    assert sim.counters.token_requests == 0
    assert app_runtime.registry.get(TENANT) is None


def test_another_accounts_tssd_fails_at_sfmc(browser, sim):
    path = authorize(start(browser))
    answer = callback(browser, with_callback_args(path, tssd="other-account"))
    assert answer.status_code == 502
    assert APP_CLIENT_SECRET not in answer.get_data(as_text=True)
    assert session_id(browser) is None


def test_refused_code_is_a_502_page_without_secrets(browser, sim):
    path = authorize(start(browser))
    answer = callback(browser, with_callback_args(path, code="not-a-code"))
    assert answer.status_code == 502
    body = answer.get_data(as_text=True)
    assert "invalid_grant" in body
    assert APP_CLIENT_SECRET not in body
    assert session_id(browser) is None


def test_sfmc_error_answer_is_shown_and_nothing_is_exchanged(browser, sim):
    path = authorize(start(browser))
    answer = callback(browser, with_callback_args(path, error="access_denied"))
    assert answer.status_code == 403
    assert "access_denied" in answer.get_data(as_text=True)
    assert sim.counters.token_requests == 0


def test_logout_ends_the_session_on_the_server(app, browser, fake_redis):
    sign_in(browser)
    sid = session_id(browser)
    answer = browser.get("/app/logout", base_url=BASE)
    assert answer.status_code == 200
    assert "Signed out" in answer.get_data(as_text=True)
    assert not fake_redis.exists(keys.app_session(hashed(sid)))
    (header,) = set_cookie_headers(answer, SESSION_COOKIE_NAME)
    assert "Max-Age=0" in header and "Partitioned" in header and "Secure" in header
    # the old cookie, replayed from elsewhere, no longer works
    thief = app.test_client()
    thief.set_cookie(SESSION_COOKIE_NAME, sid, domain="localhost")
    assert thief.get("/app/settings", base_url=BASE).status_code == 302
    assert (
        thief.get("/app/install/status", base_url=BASE, headers={"Accept": "application/json"}).status_code
        == 401
    )


def test_a_session_of_a_vanished_enterprise_ends(browser, app_runtime, fake_redis):
    """The session names a tenant whose enterprise changed: it is not that tenant's any more."""
    sign_in(browser)
    sid = session_id(browser)
    app_runtime.registry.update(TENANT, {"sfmc_eid": "999"})
    assert browser.get("/app/settings", base_url=BASE).status_code == 302
    assert not fake_redis.exists(keys.app_session(hashed(sid)))


def test_sign_in_logs_no_secret(browser, caplog, app_runtime, sim):
    caplog.set_level(logging.DEBUG)
    sign_in(browser)
    refresh = app_runtime.registry.refresh_token(TENANT)
    text = caplog.text
    assert "app sign-in: tenant" in text
    for secret in (APP_CLIENT_SECRET, refresh, "sandbox.admin@example.com", session_id(browser)):
        assert secret not in text


@pytest.mark.parametrize(
    "path",
    [
        "/app/login",
        "/app/logout",
        "/app/oauth/callback",
        "/app/settings",
        "/app/nowhere",
        "/app/static/app.css",
    ],
)
def test_every_app_answer_is_framed_by_marketing_cloud_only(browser, path):
    answer = browser.get(path, base_url=BASE)
    assert answer.headers["Content-Security-Policy"] == (
        PAGE_POLICY + "; frame-ancestors https://*.exacttarget.com https://*.marketingcloudapps.com"
    )
    assert answer.headers["Cache-Control"] == "no-store"
    assert "X-Frame-Options" not in answer.headers


def test_framing_policy_on_signed_in_pages_and_posts(browser):
    sign_in(browser)
    for answer in (
        browser.get("/app/settings", base_url=BASE),
        browser.post("/app/settings", base_url=BASE, data={}),  # refused (no CSRF token)
        browser.get("/app/install/status", base_url=BASE),
    ):
        policy = answer.headers["Content-Security-Policy"]
        assert policy.startswith(PAGE_POLICY + "; frame-ancestors ") and "script-src 'self';" in policy
        assert answer.headers["Cache-Control"] == "no-store"


def test_signed_in_pages_are_framed_by_the_tenants_own_stack_only(browser, app_runtime, sim):
    """The sign-in's userinfo names the stack (S4): the tenant records it, and its pages may be
    framed by that stack's Marketing Cloud only; the sign-in's own pages still by any stack's
    (the next admin to open the app may belong to another account)."""
    with sim.lock:
        sim.mc_user["stack"] = "S4"
    sign_in(browser)
    assert app_runtime.registry.get(TENANT).sfmc_stack == "s4"
    own = PAGE_POLICY + "; frame-ancestors https://mc.s4.exacttarget.com https://*.s4.marketingcloudapps.com"
    for answer in (
        browser.get("/app/settings", base_url=BASE),
        browser.get("/app/install/status", base_url=BASE),
    ):
        assert answer.headers["Content-Security-Policy"] == own
    anyone = PAGE_POLICY + "; frame-ancestors https://*.exacttarget.com https://*.marketingcloudapps.com"
    assert browser.get("/app/login", base_url=BASE).headers["Content-Security-Policy"] == anyone


def test_a_sign_in_naming_no_stack_keeps_the_known_one(app_runtime):
    registry = app_runtime.registry
    registry.sign_in(eid="77", mid="78", tssd="acme", refresh_token=None, stack="s4")
    tenant = registry.sign_in(eid="77", mid="78", tssd="acme", refresh_token=None)
    assert tenant.sfmc_stack == "s4"
    assert (
        registry.sign_in(eid="77", mid="78", tssd="acme", refresh_token=None, stack="s7").sfmc_stack == "s7"
    )


def test_routes_outside_app_keep_their_own_policy(browser):
    answer = browser.get("/t/x/activity/settings.json", base_url=BASE)
    assert "exacttarget" not in answer.headers.get("Content-Security-Policy", "")


def test_state_keys_expire_and_hold_no_session(browser, fake_redis):
    start(browser)
    # the two sets, and the deployment's salt that names the address in them
    assert sorted(fake_redis.keys("*")) == sorted(
        [keys.login_states(), keys.login_states_by_address(), keys.privacy_salt()]
    )
    assert not fake_redis.keys(keys.app_session("*"))
    assert 0 < fake_redis.ttl(keys.login_states()) <= 600
    assert 0 < fake_redis.ttl(keys.login_states_by_address()) <= 600
