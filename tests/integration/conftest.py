"""Real parts: a redis-server of our own on a free port, Celery worker processes, the
sandbox simulators (their own process, as in production the vendors are) and the web app
served over HTTP on loopback.

Workers are started once per session; each test uses its own tenant (own Redis keys, own
Rokt account and data extension at the simulators), so tests never see each other's data.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.ledger import Ledger
from pipeline.sandbox import jbsim, processes, sandbox_env
from pipeline.sandbox.common import ServerThread
from pipeline.store import redis_client
from pipeline.templates import create_template

TENANTS = {
    # name: rokt_rate_limit
    "chain": 50,
    "dedupe": 50,
    "limit": 20,
    "auth": 50,
    "faults": 50,
    "crash": 20,
    "subs": 50,
    "hooks": 50,
    "confirm": 50,
    "backfill": 50,
    "dlq": 50,
    "recon": 50,
}


def status_de(tenant: str) -> str:
    return f"Status_{tenant}"


def subscription_de(tenant: str) -> str:
    return f"Subs_{tenant}"


@dataclass
class Stack:
    redis_url: str
    rokt_url: str
    sfmc_url: str
    web_url: str
    secret: str
    webhook_secret: str
    workers: list[processes.Child]
    run_dir: Path
    env: dict[str, str]

    @property
    def ledger(self) -> Ledger:
        return Ledger(redis_client(self.redis_url))

    def rows(self, tenant: str, de: str | None = None) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.sfmc_url}/__sandbox__/rows",
            params={"de": de or status_de(tenant)},
            timeout=10,
        )
        return response.json()["rows"]

    def webhooks_to(self, tenant: str, **settings: Any) -> None:
        """Point the Rokt simulator's webhook delivery at our receiver for this tenant."""
        body = {"url": f"{self.web_url}/t/{tenant}/webhooks/rokt", "secret": self.webhook_secret, **settings}
        requests.post(f"{self.rokt_url}/__sandbox__/webhooks", json=body, timeout=5).raise_for_status()

    def rokt_state(self) -> dict[str, Any]:
        return requests.get(f"{self.rokt_url}/__sandbox__/state", timeout=10).json()

    def sfmc_state(self) -> dict[str, Any]:
        return requests.get(f"{self.sfmc_url}/__sandbox__/state", timeout=10).json()

    def faults(self, simulator: str, **values: float) -> None:
        url = self.rokt_url if simulator == "rokt" else self.sfmc_url
        requests.post(f"{url}/__sandbox__/faults", json=values, timeout=5).raise_for_status()

    def execute_url(self, tenant: str) -> str:
        return f"{self.web_url}/t/{tenant}/activity/execute"

    def prepare(self, tenant: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
        """Template, subscriptions at the Rokt simulator, and one JB payload per contact."""
        template = create_template(redis_client(self.redis_url), tenant, jbsim.DEMO_TEMPLATE)
        contacts = jbsim.make_contacts(count, seed)
        jbsim.seed_subscriptions(self.rokt_url, tenant, contacts)
        activity = f"act-{tenant}-{time.time_ns()}"
        return [jbsim.execute_payload(c, template["id"], f"journey-{tenant}", activity) for c in contacts]

    def wait_terminal(self, tenant: str, expected_rows: int, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.rows(tenant)
            if len(rows) >= expected_rows and self.ledger.open_count(tenant) == 0:
                return rows
            for worker in self.workers:
                assert worker.alive(), worker.tail()
            time.sleep(0.3)
        logs = "\n".join(w.tail(60) for w in self.workers)
        raise AssertionError(f"{len(rows)}/{expected_rows} rows after {timeout}s\n{logs}")


def cli(stack: Stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `rokt-sfmc ARGS` against the session's stack."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=stack.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _tenants_toml(values: dict[str, str]) -> str:
    lines = []
    for name, rate in TENANTS.items():
        lines.append(f"[tenants.{name}]")
        for key, value in sorted(values.items()):
            if key == "ROKT_ACCOUNT_CODE":
                value = name
            lines.append(f"{key.lower()} = {json.dumps(value)}")
        lines.append(f"rokt_rate_limit = {rate}")
        if name == "backfill":  # thousands of contact look-ups: the sandbox has no SFMC limit
            lines.append("sfmc_rate_limit = 2000")
        lines.append(f"sfmc_status_de_key = {json.dumps(status_de(name))}")
        lines.append(f"sfmc_subscription_de_key = {json.dumps(subscription_de(name))}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("stack")
    redis_child, redis_url = processes.start_redis(run_dir)
    sandbox, rokt_url, sfmc_url = processes.start_sandbox(run_dir)
    values = sandbox_env(rokt_url, sfmc_url)
    tenants_file = run_dir / "tenants.toml"
    tenants_file.write_text(_tenants_toml(values))
    env = {**os.environ, "REDIS_URL": redis_url, "TENANTS_FILE": str(tenants_file), "LOG_LEVEL": "INFO"}

    # everything this process logs (web app, simulators) goes to a file the log test reads
    log_handler = logging.FileHandler(run_dir / "test-process.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(log_handler)
    logging.getLogger().setLevel(logging.INFO)
    saved = {k: os.environ.get(k) for k in ("REDIS_URL", "TENANTS_FILE")}
    os.environ.update(REDIS_URL=redis_url, TENANTS_FILE=str(tenants_file))
    _reset_process_caches()

    from pipeline.web import create_app

    web = ServerThread(create_app()).start()
    workers = [processes.start_worker(run_dir, env, f"w{i}", concurrency=4) for i in range(2)]
    stack = Stack(
        redis_url,
        rokt_url,
        sfmc_url,
        web.url,
        values["JB_JWT_SECRET"],
        values["ROKT_WEBHOOK_SECRET"],
        workers,
        run_dir,
        env,
    )
    try:
        processes.wait_until(lambda: _workers_ready(workers), 60, "celery workers")
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop()
        web.stop()
        sandbox.stop()
        redis_child.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reset_process_caches()
        logging.getLogger().removeHandler(log_handler)


def _workers_ready(workers: list[processes.Child]) -> bool:
    for worker in workers:
        if not worker.alive():
            raise RuntimeError(worker.tail())
    return all("ready." in worker.log_path.read_text(errors="replace") for worker in workers)


def _reset_process_caches() -> None:
    """Settings, Redis clients and the producer app are cached per process; start afresh."""
    import celeryconfig
    from pipeline import dispatch, runtime, settings, store

    settings.get_settings.cache_clear()
    store.redis_client.cache_clear()
    dispatch._producer.cache_clear()
    runtime._runtime = None
    importlib.reload(celeryconfig)


@pytest.fixture(autouse=True)
def fresh_simulators(stack: Stack) -> Iterator[None]:
    """Each test starts with empty simulators and no faults."""
    for url in (stack.rokt_url, stack.sfmc_url):
        requests.post(f"{url}/__sandbox__/reset", timeout=30).raise_for_status()
    yield
