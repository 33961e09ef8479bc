"""The app an admin opens in Marketing Cloud, in a real browser, framed from another site.

A stand-in for Marketing Cloud's AppExchange page (apphost/host.html) is served on
`http://localhost:<port>` and iframes `http://127.0.0.1:<port>/app/login`: a different site
(CHIPS keys the partitioned cookies by the top-level site, `http://localhost`). Both are loopback
names Chromium treats as potentially trustworthy, so it accepts the `__Host-`, `Secure`,
`SameSite=None`, `Partitioned` cookies over plain http there, exactly as the product sets them.
The sign-in runs against the SFMC simulator inside the iframe; the stack has no TENANTS_FILE, so
the tenant is the one that sign-in creates. Then: settings saved, Test connection with a wrong
and a right Rokt secret, the webhook secret rotated (shown once), the data extensions installed
by a real Celery worker and checked at the simulator against `pipeline.dataextensions`.
SAVE_SCREENSHOTS=1 rewrites docs/app/settings.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, send_file
from playwright.sync_api import expect

from pipeline.dataextensions import DATA_EXTENSIONS, FOLDER
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, SANDBOX_EID, SANDBOX_JWT_SECRET, SANDBOX_MID, rokt, sfmc
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.processes import free_port, wait_until
from pipeline.sandbox.stack import Stack
from pipeline.tenants import tenant_name_for_eid
from pipeline.web.app_auth import SIGNIN_COOKIE
from pipeline.web.app_session import SESSION_COOKIE_NAME
from tests.browser.conftest import VIEWPORT, frame_screenshot

pytestmark = pytest.mark.browser

HOST_PAGE = Path(__file__).resolve().parent / "apphost" / "host.html"
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


@pytest.fixture
def app_page(app_env: AppEnv) -> Iterator[Any]:
    page = app_env.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"errors in the page: {errors}"


def screenshot(page: Any, name: str) -> None:
    """docs/app/<name>.png of the framed app (SAVE_SCREENSHOTS=1 only)."""
    frame = page.locator("#app").element_handle().content_frame()
    frame_screenshot(page, "app", frame, SCREENSHOTS / f"{name}.png")


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


def test_settings_saved_and_test_connection_says_which_failed_and_why(app_env, signed_in, app_page):
    frame = app_env.open(app_page)
    for name, value in SETTINGS.items():
        frame.locator(f"#{name}").fill(value)
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#saved")).to_have_text("Settings saved.")
    for name in ("rokt_client_secret", "sfmc_client_secret", "jb_jwt_secret"):
        expect(frame.locator(f'.secret-state[data-field="{name}"]')).to_have_text("set")
        expect(frame.locator(f"#{name}")).to_have_value("")
    expect(frame.locator("#rokt_client_id")).to_have_value(rokt.DEFAULT_CLIENT_ID)
    app_env.assert_no_secret(app_page)

    frame.locator("#test-connection").click()
    result = frame.locator("#test-result")
    expect(result).to_have_class("bad")
    expect(result).to_contain_text("Marketing Cloud: OK")
    # app.js joins "failed" and the reason with an en dash
    expect(result).to_contain_text(
        "Rokt: failed \u2013 Rokt token request rejected: HTTP 401 (check client id/secret)"
    )

    frame.locator("#rokt_client_secret").fill(rokt.DEFAULT_CLIENT_SECRET)  # fixed; the others kept
    frame.locator("#settings form button[type=submit]").click()
    expect(frame.locator("#saved")).to_be_visible()
    frame.locator("#test-connection").click()
    expect(result).to_have_text("Rokt: OK · Marketing Cloud: OK")
    expect(result).to_have_class("good")
    app_env.assert_no_secret(app_page)

    app_page.reload()  # the last check is in the status panel
    expect(frame.locator("#status-tokens")).to_contain_text("Rokt OK, Marketing Cloud OK")
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
