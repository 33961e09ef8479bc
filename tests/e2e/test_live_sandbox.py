"""The live sandbox as a person runs it , from README's "Running the parts by hand".

The section's `rokt-sfmc sandbox up` runs as written, as a subprocess in a clean directory (its
state dir lands there); both host pages it prints open in Debian's headless Chromium: the admin
signs in to App Settings inside Marketing Cloud's frame, saves the settings and installs the data
extensions; the marketer creates an event with a `{{Home City}}` placeholder in the Journey
Builder page and presses JB's Done, which saves the activity. The section's `jb-simulate --activity`
line sends 50 contacts through it; the running view counts them "Added to calendar" (the Rokt
simulator's webhooks reach the signed-in tenant without help). Ctrl-C (SIGINT) then stops every
child process. Real Redis, workers, simulators and HTTP throughout; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, SANDBOX_EID, SANDBOX_JWT_SECRET, SANDBOX_MID, jbsim, rokt
from pipeline.sandbox.live import PROCESSES_FILE, READY_LINE
from pipeline.sandbox.stack import environ_outside_stacks
from pipeline.tenancy.tenants import tenant_name_for_eid

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONTACTS = 50
TITLE = "Summer sale in {{Home City}}"
SETTINGS = {
    "rokt_account_id": "acct-live-sandbox",
    "rokt_account_code": SANDBOX_ACCOUNT_CODE,
    "rokt_client_id": rokt.DEFAULT_CLIENT_ID,
    "rokt_client_secret": rokt.DEFAULT_CLIENT_SECRET,
    "sfmc_account_id": SANDBOX_MID,
    "jb_jwt_secret": SANDBOX_JWT_SECRET,
}
# what a fresh shell has not set (the sandbox must bring its own)
UNSET = (
    "REDIS_URL",
    "BROKER_URL",
    "TENANTS_FILE",
    "SECRET_KEY",
    "SANDBOX",
    "JB_JWT_SECRET",
    "PUBLIC_BASE_URL",
)


def readme_commands() -> tuple[list[str], list[str]]:
    """`rokt-sfmc sandbox up` and the `jb-simulate --activity` line, as the section writes them."""
    section = README.read_text().split("## Running the parts by hand\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    up = next(c for c in commands if c[:3] == ["rokt-sfmc", "sandbox", "up"])
    simulate = next(c for c in commands if c[:2] == ["rokt-sfmc", "jb-simulate"] and "--activity" in c)
    return up, simulate


def as_run(argv: list[str]) -> list[str]:
    """`rokt-sfmc ...` with this interpreter's installed console script."""
    script = Path(sys.executable).parent / "rokt-sfmc"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli"]
    return [*head, *argv[1:]]


@dataclass
class LiveSandbox:
    process: subprocess.Popen
    cwd: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        output = "\n".join(self.lines[-40:])
        raise AssertionError(f"no {text!r} from `sandbox up` after {timeout:.0f} s:\n{output}")

    def url(self, name: str) -> str:
        """The URL `sandbox up` printed after `name`."""
        for line in self.lines:
            if line.startswith(name):
                found = re.search(r"https?://\S+", line)
                if found:
                    return found.group(0)
        raise AssertionError(f"`sandbox up` printed no URL for {name!r}")

    @property
    def state(self) -> Path:
        return self.cwd / ".sandbox"


def _read(process: subprocess.Popen, lines: list[str]) -> None:
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))


@pytest.fixture(scope="module")
def live(chromium: Path, tmp_path_factory) -> Iterator[LiveSandbox]:
    up, _simulate = readme_commands()
    cwd = tmp_path_factory.mktemp("clean-checkout-cwd")
    outside = environ_outside_stacks()
    env = {k: v for k, v in outside.items() if k not in UNSET and not k.startswith("ROKT_SFMC_")}
    process = subprocess.Popen(
        as_run(up),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # SIGINT to it alone, as Ctrl-C reaches the foreground command
    )
    sandbox = LiveSandbox(process, cwd, env)
    threading.Thread(target=_read, args=(process, sandbox.lines), daemon=True).start()
    try:
        sandbox.wait_for(READY_LINE, 150)
        yield sandbox
    finally:
        if process.poll() is None:  # a failed test: still stop everything
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                for pid in _child_pids(sandbox):
                    _kill_group(pid)


def _child_pids(sandbox: LiveSandbox) -> list[int]:
    path = sandbox.state / PROCESSES_FILE
    return list(json.loads(path.read_text()).values()) if path.exists() else []


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _group_alive(pid: int) -> bool:
    """Any process left in the child's process group (a Celery worker's pool children too)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_admin_signs_in_saves_settings_and_installs_the_data_extensions(live, page):
    from playwright.sync_api import expect

    page.goto(live.url("Marketing Cloud (App Settings)"))
    app = page.frame_locator("#app")
    expect(app.locator(".bar .who")).to_contain_text(tenant_name_for_eid(SANDBOX_EID), timeout=20_000)
    for name, value in SETTINGS.items():
        app.locator(f"#{name}").fill(value)
    app.locator("#settings form button[type=submit]").click()
    expect(app.locator("#saved")).to_be_visible(timeout=15_000)
    app.locator("#install").click()
    expect(app.locator("#install-state")).to_have_text("done", timeout=60_000)
    page.reload()
    expect(app.locator(".bar .badge")).to_have_text("active", timeout=15_000)


def test_the_marketer_configures_an_activity_with_home_city_and_jb_done_saves_it(live, page):
    from playwright.sync_api import expect

    page.goto(live.url("Journey Builder (the activity)"))
    frame = page.frame_locator("#activity")
    frame.locator('#app[aria-busy="false"]').wait_for(timeout=30_000)
    frame.locator("#mode-create").click()
    if frame.locator("#tpl-name").count():
        frame.locator("#tpl-name").fill("Summer sale by city")
    frame.locator("#tpl-title").fill(TITLE)
    frame.locator("#tpl-description").fill("Offers near you: https://example.com/sale")
    frame.locator("#tpl-start").fill("2026-12-01T09:00")
    frame.locator("#tpl-end").fill("2026-12-01T10:00")
    frame.locator("#tpl-timezone").fill("Australia/Sydney")
    frame.locator("#tpl-policy").select_option("strict")
    frame.locator("#create-submit").click()
    try:
        expect(frame.locator("#step-2")).to_be_visible(timeout=15_000)
    except AssertionError:
        if "Home City" in frame.locator("#step-1").inner_text():  # the placeholder refused
            pytest.xfail("waiting for placeholders with spaces (issue 20 part B)")
        raise
    row = frame.locator('#mapping-rows tr[data-placeholder="Home City"]')
    expect(row.locator("select.kind")).to_have_value("field")  # matched to the same-named field
    expect(row.locator("select.field")).to_have_value("Home City")
    page.locator("#jb-next").click()  # JB's own footer (clickedNext), as a marketer clicks it
    expect(frame.locator("#step-3")).to_be_visible()
    page.locator("#jb-next").click()  # on the last step: Done
    expect(page.locator("#jb-status")).to_contain_text("Saved", timeout=15_000)

    saved = json.loads((live.state / "activity.json").read_text())
    assert saved == page.evaluate("() => jb.updates[jb.updates.length - 1]")  # what Done sent, kept
    assert saved["metaData"]["isConfigured"] is True
    arguments = {
        k: v for argument in saved["arguments"]["execute"]["inArguments"] for k, v in argument.items()
    }
    binding = rf'\{{\{{Event\.{re.escape(jbsim.DEMO_EVENT_KEY)}\.("Home City"|Home City)\}}\}}'
    assert re.fullmatch(binding, arguments["Home City"]), arguments
    assert arguments["templateId"].startswith("tpl-")


def test_jb_simulate_from_the_readme_and_the_running_view_counts_added_to_calendar(live, page):
    from playwright.sync_api import expect

    activity_file = live.state / "activity.json"
    if not activity_file.exists():
        pytest.fail("no saved activity: the configuration test before this one did not save it")
    _up, simulate = readme_commands()
    assert simulate[simulate.index("--contacts") + 1] == str(CONTACTS)  # run as written
    done = subprocess.run(
        as_run(simulate), cwd=live.cwd, env=live.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] == CONTACTS and summary["non_200"] == 0

    contacts = jbsim.make_contacts(CONTACTS)  # what jb-simulate sent (the same seed)
    calendar = [
        c
        for c in contacts
        if c.has_subscription and c.subscription_id != jbsim.UNKNOWN_SUBSCRIPTION_ID and c.city
    ]
    assert 0 < len(calendar) < CONTACTS  # blank cities end missing_field under the strict policy

    page.goto(live.url("Journey Builder (the activity)") + "?view=running")
    frame = page.frame_locator("#activity")
    added = frame.locator('#counts li[data-state="confirmed"] .count')
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if added.count() and added.inner_text() == str(len(calendar)):
            break
        time.sleep(2)
        if frame.locator("#btn-refresh").count():
            frame.locator("#btn-refresh").click()
    expect(added).to_have_text(str(len(calendar)))
    label = frame.locator('#counts li[data-state="confirmed"]')
    expect(label).to_contain_text("Added to calendar")
    counts = {
        state: int(frame.locator(f'#counts li[data-state="{state}"] .count').inner_text())
        for state in ("queued", "accepted", "confirmed", "no_subscription", "missing_field", "failed")
    }
    assert sum(counts.values()) == CONTACTS, counts
    rokt_state = requests.get(live.url("Rokt simulator"), timeout=10).json()
    assert rokt_state["calendar_entries"] == len(calendar)
    assert rokt_state["webhooks_delivered"] >= len(calendar)


def test_every_printed_url_answers_and_the_env_file_serves_other_shells(live):
    from pipeline.sandbox.live import ENV_FILE, read_env_file

    values = read_env_file(live.state / ENV_FILE)
    assert values["SANDBOX"] == "1" and values["SECRET_KEY"] and values["REDIS_URL"].startswith("redis://")
    assert values["PUBLIC_BASE_URL"] == live.url("web app")
    origin = live.url("Journey Builder (the activity)").removesuffix("/jb")
    assert values["MC_ALLOWED_ORIGINS"] == values["JB_ALLOWED_ORIGINS"] == origin
    assert requests.get(f"{live.url('web app')}/healthz", timeout=10).status_code == 200
    flower = live.url("Flower")
    user, password = values["FLOWER_BASIC_AUTH"].split(":", 1)
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    deadline, seen = time.monotonic() + 30, {}
    while len(seen) < 2 and time.monotonic() < deadline:  # Flower asks the workers (inspect)
        answer = requests.get(
            f"{flower}/api/workers", params={"refresh": "1"}, auth=(user, password), timeout=30
        )
        assert answer.status_code == 200
        seen = answer.json()
    assert len(seen) == 2, seen  # worker-render and worker-rokt
    metrics = requests.get(live.url("exporter"), timeout=10)
    assert metrics.status_code == 200 and "rsf_redis_up 1.0" in metrics.text
    assert password not in "\n".join(live.lines)  # the Flower password is never printed


def test_ctrl_c_stops_every_child(live):
    pids = _child_pids(live)
    assert len(pids) >= 8, pids  # redis, simulators, web, two workers, beat, flower, exporter
    assert all(_group_alive(pid) for pid in pids)
    live.process.send_signal(signal.SIGINT)
    assert live.process.wait(60) == 0, "\n".join(live.lines[-30:])
    left = [pid for pid in pids if _group_alive(pid)]
    assert not left, f"still running after Ctrl-C: {left}"
    assert live.lines[-1] == "Stopped."
    assert not (live.state / "env").exists()  # true only while the sandbox runs
