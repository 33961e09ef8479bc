"""A tenant's activity page in a real browser is framed by its own stack's Journey Builder only.

The stack's web app reads `JB_ALLOWED_ORIGINS=http://jb.{stack}.frame.localhost:<port>`: the
`{stack}` placeholder as the default `https://jbinteractions.{stack}.marketingcloudapps.com` has it,
on loopback names (Chromium resolves every `*.localhost` name to loopback by itself). The tenant's
stack is `s4`, as its sign-in's userinfo (`organization.stackKey: "S4"`) would record it. The same
Journey Builder stand-in (pipeline/sandbox/hosts/jb.html) is served to the browser as
`jb.s4.frame.localhost` (the tenant's own stack: the UI loads and talks Postmonger) and as
`jb.s7.frame.localhost` (another stack: Chromium refuses to render the frame, citing
`frame-ancestors`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.sandbox import jbsim
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.processes import free_port
from pipeline.sandbox.stack import Stack
from tests.browser.conftest import VIEWPORT, JbHost, UiEnv

pytestmark = pytest.mark.browser

TENANT = "framed"
STACK = "s4"
OTHER_STACK = "s7"


def host_url(stack: str, port: int) -> str:
    return f"http://jb.{stack}.frame.localhost:{port}"


@pytest.fixture(scope="module")
def framing(chromium: Path, tmp_path_factory) -> Iterator[tuple[UiEnv, int]]:
    """One stack whose tenant is on stack s4, and the Journey Builder stand-in on a loopback port
    that answers to every `jb.<stack>.frame.localhost` name."""
    port = free_port()
    tenants = {
        TENANT: {
            "rokt_account_code": TENANT,
            "sfmc_status_de_key": f"Status_{TENANT}",
            "sfmc_subscription_de_key": f"Subs_{TENANT}",
            "sfmc_stack": STACK,
        }
    }
    host = JbHost()
    server = ServerThread(host.app, "127.0.0.1", port).start()
    try:
        with Stack(
            tmp_path_factory.mktemp("browser-framing-stack"),
            tenants,
            web="thread",
            env={"JB_ALLOWED_ORIGINS": "http://jb.{stack}.frame.localhost:*"},
            worker_name="bwframe",
        ) as stack:
            yield UiEnv(stack, host, host_url(STACK, port), tenant=TENANT), port
    finally:
        server.stop()


def activity(ui: UiEnv) -> dict[str, Any]:
    return jbsim.journey_activity(ui.config(), str(uuid.uuid4()))


def test_the_tenants_own_stack_frames_its_activity(framing, page):
    """The `page` fixture fails the test on any Content Security Policy refusal in the console."""
    ui, _port = framing
    policy = page.request.get(ui.url()).headers["content-security-policy"]
    assert policy.endswith(f"; frame-ancestors http://jb.{STACK}.frame.localhost:*")
    frame = ui.open(page, activity(ui), schema=jbsim.entry_schema(jbsim.DEMO_EVENT_KEY))
    assert frame.locator("#app").get_attribute("aria-busy") == "false"
    assert page.evaluate("() => jb.triggered").count("ready") >= 1  # Postmonger spoke both ways


def test_another_stacks_journey_builder_is_refused(framing, browser):
    ui, port = framing
    other = UiEnv(ui.stack, ui.host, host_url(OTHER_STACK, port), tenant=TENANT)
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        other.open(page, activity(ui), schema=jbsim.entry_schema(jbsim.DEMO_EVENT_KEY), wait=False)
        deadline = time.monotonic() + 15
        while not any("frame-ancestors" in text for text in console) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        refusal = [text for text in console if "frame-ancestors" in text]
        assert refusal and "violates" in refusal[0] and "blocked" in refusal[0], console
        assert f"http://jb.{STACK}.frame.localhost:*" in refusal[0]

        # nothing of the page ran: the frame settles on Chromium's error page, never on ours (the
        # console refusal can come before the frame's URL changes, so it is polled, not read once)
        def framed_urls() -> list[str]:
            return [f.url for f in page.frames if f is not page.main_frame]

        deadline = time.monotonic() + 15
        while not (framed_urls() and all(u.startswith("chrome-error://") for u in framed_urls())):
            if time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        assert framed_urls() and all(u.startswith("chrome-error://") for u in framed_urls()), framed_urls()
        assert "ready" not in page.evaluate("() => jb.triggered")
    finally:
        context.close()
