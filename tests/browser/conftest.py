"""Real-browser tests of the activity UI: Debian's Chromium driven by Playwright for Python.

A page on its own loopback port (so its origin differs from the web app's) plays Journey
Builder: it iframes `/t/<tenant>/activity/...` and speaks real Postmonger (the vendored file)
with it (pipeline/sandbox/hosts/jb.js, which `rokt-sfmc sandbox up` serves too). The web app, Redis
and the simulators run as `pipeline.sandbox.stack.Stack` with `JB_ALLOWED_ORIGINS` set to the host
page's origin; the fuel2token the host hands the UI is registered at the SFMC simulator, whose
tokenContext the web app checks.

Without /usr/bin/chromium every test here is skipped (`make test` installs it); Playwright never
downloads a browser of its own. SAVE_SCREENSHOTS=1 rewrites docs/activity/*.png.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request, send_file

from pipeline.sandbox import jbsim
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.hosts import HOSTS
from pipeline.sandbox.live import ENDPOINTS
from pipeline.sandbox.processes import free_port
from pipeline.sandbox.stack import Stack
from pipeline.web.activity import STATIC_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TENANT = "ui"
HOST_FILES = HOSTS
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "activity"
VIEWPORT = {"width": 1000, "height": 720}


class JbHost:
    """The Journey Builder stand-in's files, and a sink for the Rokt simulator's webhooks (the
    SubscriptionEventAdded webhook carries the very event Rokt received)."""

    def __init__(self) -> None:
        self.webhooks: list[dict[str, Any]] = []
        app = Flask(__name__)
        app.add_url_rule("/", "host", lambda: send_file(HOST_FILES / "jb.html"))
        app.add_url_rule("/jb.js", "host_js", lambda: send_file(HOST_FILES / "jb.js"))
        app.add_url_rule(
            "/postmonger.js", "postmonger", lambda: send_file(STATIC_ROOT / "js" / "postmonger.js")
        )
        app.add_url_rule("/rokt-webhooks", "webhooks", self._webhook, methods=["POST"])
        self.app = app

    def _webhook(self):
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            self.webhooks.append(body)
        return jsonify(ok=True)


@dataclass
class UiEnv:
    stack: Stack
    host: JbHost
    host_url: str
    tenant: str = TENANT
    _workers: bool = field(default=False, repr=False)

    @property
    def app_origin(self) -> str:
        return self.stack.web_url

    def url(self, page: str = "index.html") -> str:
        return f"{self.stack.web_url}/t/{self.tenant}/activity/{page}"

    def config(self) -> dict[str, Any]:
        """config.json as the web app serves it (what JB builds the activity from)."""
        response = requests.get(self.url("config.json"), timeout=10)
        response.raise_for_status()
        return response.json()

    def new_activity(self, activity_id: str = "") -> dict[str, Any]:
        """The activity JB sends in `initActivity` for a fresh drop on the canvas."""
        return jbsim.journey_activity(self.config(), activity_id or str(uuid.uuid4()))

    def fuel2token(self) -> str:
        """A token as JB hands the UI, registered at the SFMC simulator for the tenant's MID."""
        token = "jb-" + secrets.token_urlsafe(18)
        mid = self.stack.tenant(self.tenant).sfmc_account_id
        response = requests.post(
            f"{self.stack.sfmc_url}/__sandbox__/jb-tokens", json={"token": token, "mid": mid}, timeout=10
        )
        response.raise_for_status()
        return token

    def start_workers(self) -> None:
        if not self._workers:
            self.stack.start_workers(1, concurrency=2)
            self._workers = True

    def stop_workers(self) -> None:
        """No worker: the tasks sent meanwhile wait in the broker until start_workers (an event
        job started now stays where it is, so a test can see it running)."""
        self.stack.stop_workers()
        self._workers = False

    def open(
        self,
        page,
        activity: dict[str, Any],
        *,
        schema: dict[str, Any] | None,
        file: str = "index.html",
        trigger_event_definition: dict[str, Any] | None = None,
        interaction: dict[str, Any] | None = None,
        wait: bool = True,
    ):
        """Load the host page, which iframes the UI and answers it; returns the iframe's
        FrameLocator once the UI has its activity, token, templates and schema (with `wait`).
        A reply given as None is never sent."""
        page.goto(self.host_url + "/")
        page.evaluate(
            "config => startJB(config)",
            {
                "src": self.url(file),
                "appOrigin": self.app_origin,
                "activity": activity,
                "tokens": {
                    "token": "legacy-token",
                    "fuel2token": self.fuel2token(),
                    "expires": int(time.time() * 1000) + 3_600_000,
                    "stackKey": "S0",
                },
                "endpoints": ENDPOINTS,
                "schema": schema,
                "triggerEventDefinition": trigger_event_definition,
                "interaction": interaction,
            },
        )
        frame = page.frame_locator("#activity")
        if wait:
            frame.locator('#app[aria-busy="false"]').wait_for(timeout=20_000)
        return frame


def updates(page) -> list[dict[str, Any]]:
    """Every `updateActivity` payload the UI sent to the JB host, in order."""
    return page.evaluate("() => jb.updates")


def triggered(page) -> list[str]:
    """Every Postmonger event the UI sent to the JB host, in order."""
    return page.evaluate("() => jb.triggered")


def jb_send(page, event: str, payload: Any = None) -> None:
    """Journey Builder sends `event` (clickedNext, clickedBack, gotoStep, ...) to the UI."""
    page.evaluate("([name, payload]) => jbSend(name, payload)", [event, payload])


def activity_frame(page):
    """The UI's frame as a Frame (for evaluate), not a FrameLocator."""
    return next(f for f in page.frames if "/activity/" in f.url)


def screenshot(page, name: str) -> None:
    """docs/activity/<name>.png of the iframe, only with SAVE_SCREENSHOTS=1 (CI keeps them)."""
    frame_screenshot(page, "activity", activity_frame(page), SCREENSHOTS / f"{name}.png")


def frame_screenshot(page, iframe_id: str, frame, path: Path) -> None:
    """`path`: the iframe `#iframe_id` as tall as its document (the whole step, not only what fits
    the host page), only with SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") != "1":
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.evaluate("() => window.scrollTo(0, 0)")
    height = max(VIEWPORT["height"], frame.evaluate("() => document.documentElement.scrollHeight"))
    set_height = "([id, h]) => { document.getElementById(id).style.height = h + 'px'; }"
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.evaluate(set_height, [iframe_id, height])
    page.wait_for_timeout(200)  # layout and fonts settle
    page.locator(f"#{iframe_id}").screenshot(path=str(path))
    page.evaluate(set_height, [iframe_id, VIEWPORT["height"]])
    page.set_viewport_size(VIEWPORT)


@pytest.fixture(scope="package")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} not found: the browser tests drive Debian's Chromium; "
            "`make test` installs it (apt-get install chromium)"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def ui(chromium: Path, tmp_path_factory) -> Iterator[UiEnv]:
    """One stack for the activity module (module scope: never beside another module's stack, such
    as test_app_settings.py's; a Stack points this process's settings at itself)."""
    host_port = free_port()
    host_url = f"http://127.0.0.1:{host_port}"
    tenants = {
        TENANT: {
            "rokt_account_code": TENANT,
            "sfmc_status_de_key": f"Status_{TENANT}",
            "sfmc_subscription_de_key": f"Subs_{TENANT}",
        }
    }
    host = JbHost()
    server = ServerThread(host.app, "127.0.0.1", host_port).start()
    try:
        with Stack(
            tmp_path_factory.mktemp("browser-stack"),
            tenants,
            web="thread",
            env={"JB_ALLOWED_ORIGINS": host_url},
            worker_name="bw",
        ) as stack:
            yield UiEnv(stack, host, host_url)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # only where Chromium exists

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # what our Content-Security-Policy refused (an inline script or style, a foreign file) breaks a
    # screen silently: Chromium says so on the console only
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors or refused content in the page: {errors}"
