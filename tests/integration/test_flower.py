"""Flower against a stack of its own (two workers, remote control on): the Workers API lists both
workers with their active queues, a tenant's queues added after Flower started included; revoke
goes through Flower to the workers; the broker tab counts the queues; and after a Redis restart
every worker answers `inspect ping` again within 30 s, Flower lists them again and new work runs.

SAVE_SCREENSHOTS=1 (with /usr/bin/chromium) rewrites docs/ops/flower-workers.png.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.infra import dispatch
from pipeline.infra.queues import render_queue, rokt_queue
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import status_de, subscription_de

pytestmark = pytest.mark.integration

TENANT = "flower"
LATER = "flower-later"  # signed up after Flower started
PING_WITHIN_S = 30
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "ops" / "flower-workers.png"


def _own(name: str) -> dict[str, Any]:
    return {
        "rokt_account_code": name,
        "sfmc_status_de_key": status_de(name),
        "sfmc_subscription_de_key": subscription_de(name),
    }


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on its own stack: the session one is neither needed nor touched."""


@pytest.fixture(scope="module")
def flower(tmp_path_factory) -> Iterator[tuple[Stack, str]]:
    run_dir = tmp_path_factory.mktemp("flower")
    password = secrets.token_urlsafe(16)
    env = {"FLOWER_BASIC_AUTH": f"ops:{password}", "LOG_LEVEL": "INFO"}
    with Stack(run_dir, {TENANT: _own(TENANT)}, env=env, worker_name="fw") as stack:
        stack.start_workers(2, concurrency=4)
        url = stack.start_flower()
        yield stack, url
    for log in run_dir.glob("*.log"):  # the password reached Flower through its environment only
        assert password not in log.read_text(errors="replace"), log.name


def api(stack: Stack, url: str, path: str, method: str = "GET", **params: Any) -> requests.Response:
    return requests.request(method, f"{url}{path}", params=params, auth=stack.flower_auth, timeout=15)


def flower_workers(stack: Stack, url: str) -> dict[str, set[str]]:
    """Worker hostname -> the names of its active queues, as Flower's API reports them."""
    response = api(stack, url, "/api/workers", refresh="1")
    if response.status_code != 200:
        return {}
    workers = response.json().items()
    return {name: {q["name"] for q in info.get("active_queues") or []} for name, info in workers}


def lists_every_worker(stack: Stack, url: str, queues: set[str]) -> bool:
    listed = flower_workers(stack, url)
    return all(queues <= listed.get(host, set()) for host in stack.worker_hostnames().values())


def test_flower_shows_and_steers_the_workers_and_survives_a_redis_restart(flower: tuple[Stack, str]):
    stack, url = flower
    hosts = set(stack.worker_hostnames().values())
    assert len(hosts) == 2
    assert requests.get(f"{url}/api/workers", timeout=10).status_code == 401  # basic auth on
    assert stack.flower_process is not None
    argv = Path(f"/proc/{stack.flower_process.pid}/cmdline").read_bytes().decode()
    assert "--purge_offline_workers" in argv and "ops:" not in argv  # the password never on argv

    # every worker with its queues, those of a tenant signed up after Flower started included
    stack.add_tenant(LATER)
    queues = {"render", "webhooks", render_queue(TENANT), render_queue(LATER), rokt_queue(LATER)}
    stack.wait(lambda: lists_every_worker(stack, url, queues), 30, "Flower listing both workers' queues")
    active = dispatch.producer().control.inspect(timeout=2).active_queues() or {}
    assert {host for host, qs in active.items() if render_queue(LATER) in {q["name"] for q in qs}} == hosts
    assert stack.ping_workers(timeout=2) == hosts
    for host in hosts:  # the worker detail page (404 without remote control)
        assert api(stack, url, f"/worker/{host}").status_code == 200

    # revoke through Flower reaches every worker
    task_id = f"revoke-me-{uuid.uuid4()}"
    assert api(stack, url, f"/api/task/revoke/{task_id}", method="POST").status_code == 200
    stack.wait(lambda: revoked_everywhere(task_id, hosts), 15, "revoke reaching the workers")

    # the broker tab: a length for each active queue, tenant queues included
    lengths = api(stack, url, "/api/queues/length").json()["active_queues"]
    assert {render_queue(LATER), rokt_queue(LATER), "render"} <= {q["name"] for q in lengths}

    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        save_workers_screenshot(stack, url)

    # Redis restarts (twice) while the workers are busy, which before
    # pipeline/infra/kombu_redis_close.py could
    # kill a worker whose pub/sub socket saw it first: every worker answers ping within 30 s
    for down_seconds in (6, 1):
        stack.enqueue(TENANT, stack.prepare(TENANT, jbsim.make_contacts(30, seed=int(down_seconds))))
        time.sleep(0.5)
        took = stack.restart_redis(down_seconds=down_seconds, ping_timeout=60)
        restarted = time.monotonic()
        dead = [worker for worker in stack.workers if not worker.alive()]
        assert not dead, "\n".join(f"{worker.name} died:\n{worker.tail()}" for worker in dead)
        assert took is not None and took < PING_WITHIN_S, f"workers answered ping only after {took:.1f} s"
        print(f"Redis down {down_seconds} s: every worker answered ping {took:.1f} s after it was back")
        # and Flower lists them again, with their queues
        stack.wait(lambda: lists_every_worker(stack, url, queues), PING_WITHIN_S, "Flower listing them again")
        assert time.monotonic() - restarted < PING_WITHIN_S

    # and work sent after the restart runs, on a queue added at run time
    payloads = stack.prepare(LATER, jbsim.make_contacts(6, seed=12))
    ids = stack.enqueue(LATER, payloads)
    stack.wait(lambda: rendered(stack, ids), 60, "work sent after the restart")


def test_flower_metrics_ask_for_the_basic_auth_and_its_healthcheck_does_not(flower: tuple[Stack, str]):
    """Flower 2.2 alone serves /metrics without auth; deploy/flowerconfig.py (its --conf, from
    start_flower as from compose) puts it behind the basic auth. /healthcheck stays open for
    compose's health check."""
    stack, url = flower
    assert stack.flower_process is not None and stack.flower_auth is not None
    argv = Path(f"/proc/{stack.flower_process.pid}/cmdline").read_bytes().decode().split("\0")
    assert any(arg.startswith("--conf=") and arg.endswith("/deploy/flowerconfig.py") for arg in argv)
    user, password = stack.flower_auth

    def metrics(auth: tuple[str, str] | None) -> requests.Response:
        return requests.get(f"{url}/metrics", auth=auth, timeout=10)

    for auth in (None, (user, "wrong"), ("nobody", password)):
        denied = metrics(auth)
        assert (denied.status_code, denied.text) == (401, "Access denied"), auth
        assert denied.headers.get("WWW-Authenticate") == 'Basic realm="flower"'
    allowed = metrics((user, password))
    assert allowed.status_code == 200 and allowed.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE flower_events_total counter" in allowed.text  # Prometheus text format
    health = requests.get(f"{url}/healthcheck", timeout=10)
    assert (health.status_code, health.text) == (200, "OK")


def revoked_everywhere(task_id: str, hosts: set[str]) -> bool:
    revoked = dispatch.producer().control.inspect(timeout=1).revoked() or {}
    return all(task_id in revoked.get(host, []) for host in hosts)


def rendered(stack: Stack, execution_ids: list[str]) -> bool:
    logs = "".join(worker.output() for worker in stack.workers)
    return all(f"render_event[{execution}:render] succeeded" in logs for execution in execution_ids)


def save_workers_screenshot(stack: Stack, url: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"SAVE_SCREENSHOTS=1 needs {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS

    user, password = stack.flower_auth or ("", "")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 560},
                device_scale_factor=1,
                http_credentials={"username": user, "password": password},
            )
            page = context.new_page()
            page.goto(f"{url}/workers")
            page.wait_for_selector("#workers-table tbody tr", timeout=15_000)
            page.wait_for_timeout(1500)  # the table's first refresh
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
