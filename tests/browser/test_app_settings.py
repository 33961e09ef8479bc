"""The app an admin opens in Marketing Cloud, in a real browser, framed from another site.

A stand-in for Marketing Cloud's AppExchange page (pipeline/sandbox/hosts/mc.html) is served on
`http://localhost:<port>` and iframes `http://127.0.0.1:<port>/app/login`: a different site
(CHIPS keys the partitioned cookies by the top-level site, `http://localhost`). Both are loopback
names Chromium treats as potentially trustworthy, so it accepts the `__Host-`, `Secure`,
`SameSite=None`, `Partitioned` cookies over plain http there, exactly as the product sets them.
The sign-in runs against the SFMC simulator inside the iframe; the stack has no TENANTS_FILE, so
the tenant is the one that sign-in creates. Then: settings saved, Test connection with a wrong
and a right Rokt secret, the webhook secret rotated (shown once), the data extensions installed
by a real Celery worker and checked at the simulator against `pipeline.subscriptions.dataextensions`. And the
admin's frictions: "Still missing" and Test connection in the form's words, errors tied to their
fields with focus on the first, a required setting kept on an active tenant, edits kept across a
sign-in in another tab or an ended session. axe-core (tests/browser/a11y.py) checks every screen:
0 serious or critical violations. SAVE_SCREENSHOTS=1 rewrites docs/app/*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, send_file
from playwright.sync_api import expect

from pipeline.infra import keys
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, SANDBOX_EID, SANDBOX_JWT_SECRET, SANDBOX_MID, rokt, sfmc
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.hosts import HOSTS
from pipeline.sandbox.processes import free_port, wait_until
from pipeline.sandbox.stack import Stack
from pipeline.subscriptions.dataextensions import DATA_EXTENSIONS, FOLDER
from pipeline.tenancy.tenants import tenant_name_for_eid
from pipeline.web.app_auth import SIGNIN_COOKIE
from pipeline.web.app_session import SESSION_COOKIE_NAME, hashed
from tests.browser.a11y import violations
from tests.browser.conftest import VIEWPORT, frame_screenshot

pytestmark = pytest.mark.browser

HOST_PAGE = HOSTS / "mc.html"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "app"
WRONG_ROKT_SECRET = "wrong-rokt-secret-typed-by-mistake"
SETTINGS = {
    "rokt_account_id": "acct-browser-test",
    "rokt_account_code": SANDBOX_ACCOUNT_CODE,
    "rokt_client_id": rokt.DEFAULT_CLIENT_ID,
    "rokt_client_secret": WRONG_ROKT_SECRET,
    "sfmc_account_id": SANDBOX_MID,
    "sfmc_client_id": sfmc.DEFAULT_CLIENT_ID,
    "sfmc_client_secret": sfmc.DEFAULT_CLIENT_SECRET,
    "jb_jwt_secret": SANDBOX_JWT_SECRET,
}
# every secret an admin typed: none may come back in any page
TYPED_SECRETS = (
    WRONG_ROKT_SECRET,
    rokt.DEFAULT_CLIENT_SECRET,
    sfmc.DEFAULT_CLIENT_SECRET,
    SANDBOX_JWT_SECRET,
)


class AppEnv:
    """The stack (no pinned tenants, a worker starting), the host page's origin, one browser
    context for the module (its partitioned session cookie carries from test to test)."""

    def __init__(self, stack: Stack, host_url: str, context: Any) -> None:
        self.stack = stack
        self.host_url = host_url
        self.context = context
        self.tenant = tenant_name_for_eid(SANDBOX_EID)

    def open(self, page: Any, path: str = "/app/login"):
        """Marketing Cloud's page, framing the app; returns the app's FrameLocator."""
        page.goto(f"{self.host_url}/?src={self.stack.web_url}{path}")
        return page.frame_locator("#app")

    def shown_html(self, page: Any) -> str:
        """The HTML of the framed app page as the browser holds it now."""
        return page.locator("#app").element_handle().content_frame().content()

    def wait_stored(self, field: str, value: str) -> None:
        """The registry holds `value` (this process re-reads it within TENANT_REFRESH_SECONDS)."""
        registry = self.stack.runtime.registry
        self.stack.wait(lambda: getattr(registry.get(self.tenant), field) == value, 10, f"{field} stored")

    def assert_no_secret(self, page: Any) -> None:
        html = self.shown_html(page) + page.content()
        assert not [secret for secret in TYPED_SECRETS if secret in html]


@pytest.fixture(scope="module")
def app_env(chromium: Path, browser, tmp_path_factory) -> Iterator[AppEnv]:
    host = Flask(__name__)
    host.add_url_rule("/", "host", lambda: send_file(HOST_PAGE))
    host_port = free_port()
    host_url = f"http://localhost:{host_port}"  # another site than the app's 127.0.0.1
    server = ServerThread(host, "127.0.0.1", host_port).start()
    try:
        with Stack(
            tmp_path_factory.mktemp("browser-app-stack"),
            {},
            web="thread",
            env={"MC_ALLOWED_ORIGINS": host_url},
            worker_name="bwapp",
        ) as stack:
            stack.start_workers(1, concurrency=2, wait=False)  # ready by the time the install runs
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            try:
                yield AppEnv(stack, host_url, context)
            finally:
                context.close()
    finally:
        server.stop()


# what Chromium logs for an answer the test provokes on purpose (a refused POST, a refused save)
EXPECTED_STATUS = "the server responded with a status of {}"


@pytest.fixture
def app_page(app_env: AppEnv) -> Iterator[Any]:
    """A new tab of the module's browser; fails the test on any script error, and on any console
    error but the HTTP statuses the test declared in `page.expected_statuses`."""
    page = app_env.context.new_page()
    errors: list[str] = []
    page.expected_statuses = set()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
    finally:
        page.close()
    expected = [EXPECTED_STATUS.format(code) for code in page.expected_statuses]
    unexpected = [e for e in errors if not any(text in e for text in expected)]
    assert not unexpected, f"errors in the page: {unexpected}"


def app_frame(page: Any) -> Any:
    """The framed app as a Frame (for axe and evaluate), not a FrameLocator."""
    return page.locator("#app").element_handle().content_frame()


def described_by(frame: Any, field: str) -> list[str]:
    """The texts `aria-describedby` of the input `field` points at, in order."""
    ids = (frame.locator(f"#{field}").get_attribute("aria-describedby") or "").split()
    return [frame.locator(f"#{i}").inner_text().strip() for i in ids]


def screenshot(page: Any, name: str) -> None:
    """docs/app/<name>.png of the framed app (SAVE_SCREENSHOTS=1 only)."""
    frame_screenshot(page, "app", app_frame(page), SCREENSHOTS / f"{name}.png")


@pytest.fixture(scope="module")
def signed_in(app_env: AppEnv) -> str:
    """The admin opens the app in Marketing Cloud: /app/login in the frame, the simulator's
    /v2/authorize, back to /app/oauth/callback, on to /app/settings, all inside the iframe."""
    page = app_env.context.new_page()
    try:
        frame = app_env.open(page)
        expect(frame.locator("#settings h2")).to_have_text("App Settings", timeout=15_000)
        expect(frame.locator(".bar .who")).to_contain_text(app_env.tenant)
        expect(frame.locator(".bar .badge")).to_have_text("pending")
        assert page.locator("#app").element_handle().content_frame().url == (
            f"{app_env.stack.web_url}/app/settings"
        )
    finally:
        page.close()
    return app_env.tenant


def test_sign_in_inside_the_iframe_uses_partitioned_host_cookies(app_env, signed_in):
    state = app_env.stack.sfmc_state()
    assert state["authorize_calls"] == 1 and state["userinfo_calls"] == 1
    tenant = app_env.stack.runtime.registry.get(signed_in)
    assert tenant is not None and tenant.sfmc_eid == SANDBOX_EID and tenant.sfmc_account_id == SANDBOX_MID
    cookies = {c["name"]: c for c in app_env.context.cookies()}
    assert SIGNIN_COOKIE not in cookies  # the sign-in nonce is used up
    session = cookies[SESSION_COOKIE_NAME]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "None"
    assert session["domain"] == "127.0.0.1" and session["path"] == "/"
    assert session.get("partitionKey") == "http://localhost"  # CHIPS: keyed by the top-level site


def test_a_new_tenant_is_told_what_is_missing_in_the_forms_words(app_env, signed_in, app_page):
    """Nothing filled in yet: "Still missing" names the labels, Test says "not set" (no HTTP 401),
    a refused Save focuses the first invalid field and ties each error to its field."""
    frame = app_env.open(app_page)
    missing = frame.locator("#missing")
    expect(missing).to_contain_text("Package JWT signing secret")
    expect(missing).to_contain_text("Rokt OAuth client ID")
    expect(missing).to_contain_text("Rokt account code")
    assert "jb_jwt_secret" not in missing.inner_text() and "rokt_client_id" not in missing.inner_text()
    expect(missing.locator('a[href="#jb_jwt_secret"]')).to_have_text("Package JWT signing secret")
    assert violations(app_frame(app_page)) == []  # settings, empty
    screenshot(app_page, "settings-pending")

    frame.locator("#test-connection").click()
    result = frame.locator("#test-result")
    not_set = "Rokt: failed \u2013 not set: Rokt OAuth client ID, Rokt OAuth client secret"
    expect(result).to_contain_text(not_set)
    assert "HTTP 401" not in result.inner_text()
    expect(frame.locator('#status-tokens [data-vendor="rokt"]')).to_contain_text("not set: Rokt OAuth")

    frame.locator("#rokt_account_code").fill(SANDBOX_ACCOUNT_CODE)
    frame.locator("#sfmc_account_id").fill("12ab")
    frame.locator("#jb_jwt_secret").fill("short")
    app_page.expected_statuses.add(400)  # the refused Save's answer
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#form-errors")).to_contain_text("Not saved")
    expect(frame.locator("#sfmc_account_id")).to_be_focused()  # the first invalid field
    for field in ("sfmc_account_id", "jb_jwt_secret"):
        expect(frame.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    assert described_by(frame, "sfmc_account_id")[0] == "the business unit's MID: digits only"
    assert described_by(frame, "jb_jwt_secret")[0].startswith("at least 32 characters")
    expect(frame.locator("#rokt_account_id")).not_to_have_attribute("aria-invalid", "true")
    expect(frame.locator("#rokt_account_code")).to_have_value(SANDBOX_ACCOUNT_CODE)  # kept
    expect(frame.locator("#jb_jwt_secret")).to_have_value("")  # a secret never comes back
    assert violations(app_frame(app_page)) == []  # settings, errors shown
    screenshot(app_page, "settings-errors")


def test_settings_saved_and_test_connection_says_which_failed_and_why(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    for name, value in SETTINGS.items():
        frame.locator(f"#{name}").fill(value)
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#saved")).to_have_text("Settings saved.")
    expect(frame.locator(".bar .badge")).to_have_text("active")  # refreshed by the Save
    expect(frame.locator("#status-tenant")).to_have_text("active")
    expect(frame.locator("#missing")).to_have_count(0)
    for name in ("rokt_client_secret", "sfmc_client_secret", "jb_jwt_secret"):
        expect(frame.locator(f'.secret-state[data-field="{name}"]')).to_have_text("set")
        expect(frame.locator(f"#{name}")).to_have_value("")
    expect(frame.locator("#rokt_client_id")).to_have_value(rokt.DEFAULT_CLIENT_ID)
    app_env.assert_no_secret(app_page)

    result = frame.locator("#test-result")  # Test connection runs by itself after a Save
    expect(result).to_have_class("bad")
    expect(result).to_contain_text("Marketing Cloud: OK")
    # app.js joins "failed" and the reason with an en dash
    expect(result).to_contain_text(
        "Rokt: failed \u2013 Rokt token request rejected: HTTP 401 (check client id/secret)"
    )
    tokens = frame.locator("#status-tokens")  # the Tokens row follows the Test, no reload
    expect(tokens.locator('[data-vendor="rokt"]')).to_contain_text("Rokt: failed \u2013 Rokt token request")
    expect(tokens.locator('[data-vendor="sfmc"]')).to_contain_text("Marketing Cloud: OK (checked ")
    assert violations(app_frame(app_page)) == []  # settings filled, a failed test shown

    frame.locator("#rokt_client_secret").fill(rokt.DEFAULT_CLIENT_SECRET)  # fixed; the others kept
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#saved")).to_be_visible()
    expect(result).to_have_text("Rokt: OK · Marketing Cloud: OK")
    expect(result).to_have_class("good")
    expect(tokens.locator('[data-vendor="rokt"]')).to_contain_text("Rokt: OK (checked ")
    expect(tokens.locator(".bad")).to_have_count(0)
    app_env.assert_no_secret(app_page)

    app_page.reload()  # the last check is in the status panel
    expect(tokens.locator('[data-vendor="rokt"]')).to_contain_text("Rokt: OK (checked ")
    expect(tokens.locator('[data-vendor="sfmc"]')).to_contain_text("Marketing Cloud: OK (checked ")
    app_env.wait_stored("rokt_client_secret", rokt.DEFAULT_CLIENT_SECRET)
    app_env.wait_stored("sfmc_client_secret", sfmc.DEFAULT_CLIENT_SECRET)
    app_env.assert_no_secret(app_page)


def test_the_rotated_webhook_secret_is_shown_once(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    expect(frame.locator("#webhook-url")).to_have_text(f"{app_env.stack.web_url}/t/{signed_in}/webhooks/rokt")
    frame.locator("#webhook form button[type=submit]").click()
    shown = frame.locator("#new-webhook-secret code")
    expect(shown).to_be_visible()
    secret = shown.inner_text().strip()
    assert len(secret) >= 32
    app_env.wait_stored("rokt_webhook_secret", secret)

    app_page.reload()
    expect(frame.locator("#webhook .secret-state")).to_have_text("set")
    expect(frame.locator("#new-webhook-secret")).to_have_count(0)
    assert secret not in app_env.shown_html(app_page)
    app_env.assert_no_secret(app_page)


def test_install_data_extensions_turns_the_status_green(app_env, signed_in, app_page):
    for worker in app_env.stack.workers:
        wait_until(lambda w=worker: " ready." in w.tail(200), 60, worker.name, worker)
    frame = app_env.open(app_page)
    expect(frame.locator("#status-installed")).to_have_text("not installed")
    frame.locator("#install").click()
    expect(frame.locator("#install-state")).to_have_text("done", timeout=30_000)
    expect(frame.locator("#install-state")).to_have_class("good")
    expect(frame.locator("#status-installed")).to_have_text("installed")
    expect(frame.locator("#status-installed")).to_have_class("good")
    expect(frame.locator("#contact-builder")).to_be_visible()
    expect(frame.locator("#install-steps li")).to_have_count(1 + len(DATA_EXTENSIONS))
    expect(frame.locator("#install-steps li").first).to_contain_text("created")

    app_page.reload()  # the server-rendered page says the same
    expect(frame.locator("#install-state")).to_have_text("done")
    expect(frame.locator("#install-state")).to_have_class("good")
    expect(frame.locator("#status-installed")).to_have_text("installed")
    expect(frame.locator("#status-installed")).to_have_class("good")
    expect(frame.locator(".bar .badge")).to_have_text("active")
    app_env.assert_no_secret(app_page)
    assert violations(app_frame(app_page)) == []  # after install
    screenshot(app_page, "settings")

    state = app_env.stack.sfmc_state()
    folders = [f for f in state["folders"] if f["name"] == FOLDER.name]
    assert len(folders) == 1 and folders[0]["content_type"] == "dataextension"
    tenant = app_env.stack.runtime.registry.get(signed_in)
    definitions = state["data_extension_definitions"]
    assert set(definitions) == {de.key_of(tenant) for de in DATA_EXTENSIONS}
    for de in DATA_EXTENSIONS:
        stored = definitions[de.key_of(tenant)]
        assert stored["name"] == de.name and stored["category_id"] == folders[0]["id"]
        assert stored["is_sendable"] == bool(de.sendable_field)
        assert stored["sendable_field"] == de.sendable_field
        assert [f["name"] for f in stored["fields"]] == [c.name for c in de.columns]
        for field, column in zip(stored["fields"], de.columns, strict=True):
            assert (field["type"], field["is_primary_key"]) == (column.type, column.primary_key), field
            if column.length is not None:
                assert field["max_length"] == column.length, field


def test_a_required_setting_cannot_be_blanked_on_an_active_tenant(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    expect(frame.locator(".bar .badge")).to_have_text("active")
    frame.locator("#rokt_account_code").fill("")
    frame.locator("#rokt_account_id").fill("acct-while-refused")
    app_page.expected_statuses.add(400)  # the refused Save's answer
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#rokt_account_code")).to_be_focused()
    expect(frame.locator("#rokt_account_code")).to_have_attribute("aria-invalid", "true")
    assert described_by(frame, "rokt_account_code")[0].startswith("required while the tenant is active")
    expect(frame.locator("#form-errors")).to_contain_text("Rokt account code: required while")
    expect(frame.locator(".bar .badge")).to_have_text("active")
    tenant = app_env.stack.runtime.registry.get(signed_in)
    assert tenant.rokt_account_code == SANDBOX_ACCOUNT_CODE and tenant.rokt_account_id != "acct-while-refused"
    assert violations(app_frame(app_page)) == []


def refused_then_kept(app_env: AppEnv, page: Any, frame: Any, said: str, account_id: str) -> None:
    """The session no longer holds this page: Test, Install and Save each say `said` inline with a
    "Sign in again" link, nothing changes, the form keeps what was typed; after the sign-in the
    edits come back (the secret only by name) and one Save stores them."""
    page.expected_statuses.add(403)
    registry = app_env.stack.runtime.registry
    before = registry.get(app_env.tenant)
    frame.locator("#test-connection").click()
    expect(frame.locator("#test-result")).to_contain_text(said)
    expect(frame.locator("#test-result a")).to_have_text("Sign in again now")
    frame.locator("#install").click()
    expect(frame.locator("#install-state")).to_contain_text(said)
    frame.locator("#webhook form button[type=submit]").click()  # a rotation: refused inline too
    expect(frame.locator("#webhook .form-problem")).to_contain_text(said)
    expect(frame.locator("#webhook .form-problem")).to_contain_text("Not done: ")
    expect(frame.locator("#install-state")).to_contain_text("Not done: ")
    frame.locator("#settings form button[type=submit]").click()
    problem = frame.locator("#save-problem")
    expect(problem).to_contain_text(said)
    expect(problem).to_contain_text("Not saved: ")
    expect(problem).to_contain_text("Your changes are kept: sign in again, then Save.")
    expect(frame.locator("#settings h2")).to_have_text("App Settings")  # the form is still there
    expect(frame.locator("#rokt_account_id")).to_have_value(account_id)
    assert "Request refused" not in app_env.shown_html(page)
    assert registry.get(app_env.tenant) == before
    assert violations(app_frame(page)) == []  # the refusal, inline
    screenshot(page, "settings-session-refused")

    problem.locator("a", has_text="Sign in again now").click()
    restored = frame.locator("#restored")
    expect(restored).to_contain_text("Your unsaved changes are back in the form (Rokt Calendar account ID)")
    expect(restored).to_contain_text("type Rokt OAuth client secret again")
    expect(frame.locator("#rokt_account_id")).to_have_value(account_id)
    expect(frame.locator("#rokt_account_id")).to_be_focused()
    expect(frame.locator("#rokt_client_secret")).to_have_value("")
    app_env.assert_no_secret(page)
    assert violations(app_frame(page)) == []  # back after the sign-in, edits restored
    screenshot(page, "settings-restored")
    frame.locator("#rokt_client_secret").fill(rokt.DEFAULT_CLIENT_SECRET)
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#saved")).to_be_visible()
    app_env.wait_stored("rokt_account_id", account_id)
    assert "draft" not in app_frame(page).evaluate("() => document.cookie")  # kept edits: gone once used


def test_a_sign_in_in_another_tab_keeps_the_edits(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    frame.locator("#rokt_account_id").fill("acct-edited-in-tab-1")
    frame.locator("#rokt_client_secret").fill(WRONG_ROKT_SECRET)
    other = app_env.context.new_page()
    try:  # the admin opens the app again in a second tab: a new session id and CSRF token
        expect(app_env.open(other).locator("#settings h2")).to_have_text("App Settings", timeout=15_000)
    finally:
        other.close()
    refused_then_kept(app_env, app_page, frame, "you signed in again in another tab", "acct-edited-in-tab-1")


def test_an_ended_session_keeps_the_edits(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    frame.locator("#rokt_account_id").fill("acct-edited-after-expiry")
    frame.locator("#rokt_client_secret").fill(WRONG_ROKT_SECRET)
    sid = {c["name"]: c for c in app_env.context.cookies()}[SESSION_COOKIE_NAME]["value"]
    assert app_env.stack.runtime.redis.delete(keys.app_session(hashed(sid))) == 1  # idle past its lifetime
    refused_then_kept(app_env, app_page, frame, "your session ended", "acct-edited-after-expiry")


def test_signed_out_and_error_pages_are_accessible(app_env, browser):
    """The screens without a session, in a browser that never signed in."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page = context.new_page()
        frame = app_env.open(page, "/app/logout")
        expect(frame.locator("h1")).to_have_text("Signed out")
        assert violations(app_frame(page)) == []
        screenshot(page, "signed-out")
        frame = app_env.open(page, "/app/oauth/callback?state=not-one-we-issued")
        expect(frame.locator("h1")).to_have_text("Sign-in failed")
        expect(frame.locator("#sign-in-again")).to_be_visible()
        assert violations(app_frame(page)) == []
        screenshot(page, "error")
    finally:
        context.close()
