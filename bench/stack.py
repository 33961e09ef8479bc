"""The processes a benchmark measures, started as in a deployment: a fresh Redis of our own,
the sandbox simulators (one process), gunicorn and Celery workers, each a child process."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from rich.console import Console

from pipeline import dispatch
from pipeline.executions import new_execution
from pipeline.runtime import Runtime
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, jbsim, processes, sandbox_env
from pipeline.sandbox.demo import STATUS_DE_KEY, tenants_toml
from pipeline.settings import get_settings, load_settings
from pipeline.store import redis_client
from pipeline.templates import create_template
from schemas.jb_execute import ExecuteSchema

UNLIMITED = 1_000_000.0  # requests/s: our limiter still runs, but never makes anyone wait
DEFAULT_ROKT_RATE = 50.0  # ROKT_RATE_LIMIT's default
DEFAULT_SFMC_RATE = 40.0
WORKER_CONCURRENCY = 8  # what `make demo` runs; docker-compose runs 16 per container

# tenant -> (Rokt, SFMC) requests per second
TENANTS: dict[str, tuple[float, float]] = {
    "bench": (UNLIMITED, UNLIMITED),
    "rl-ours": (100.0, UNLIMITED),
    "rl-celery": (UNLIMITED, UNLIMITED),
    "fair-a": (DEFAULT_ROKT_RATE, DEFAULT_SFMC_RATE),
    "fair-b": (DEFAULT_ROKT_RATE, DEFAULT_SFMC_RATE),
}
_SCHEMA = ExecuteSchema()
REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchStack:
    def __init__(self, run_dir: Path, console: Console) -> None:
        self.run_dir = run_dir
        self.console = console
        self.children: list[processes.Child] = []
        self.workers: list[processes.Child] = []
        self._generation = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> BenchStack:
        redis_child, self.redis_url = processes.start_redis(self.run_dir)
        self.children.append(redis_child)
        sandbox, self.rokt_url, self.sfmc_url = processes.start_sandbox(self.run_dir)
        self.children.append(sandbox)
        self.tenant_values = sandbox_env(self.rokt_url, self.sfmc_url)
        tenants_file = self.run_dir / "tenants.toml"
        tenants_file.write_text(tenants_toml(self.tenant_values, TENANTS))
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "TENANTS_FILE": str(tenants_file),
            # the baselines' apps live in bench/, which is not installed: workers import it from here
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
        # this process claims and enqueues executions like the web tier does
        os.environ.update(REDIS_URL=self.redis_url, TENANTS_FILE=str(tenants_file))
        get_settings.cache_clear()
        self.redis = redis_client(self.redis_url)
        self.runtime = Runtime(load_settings(self.env), self.redis)
        return self

    def redis_version(self) -> str:
        return str(self.redis.info("server").get("redis_version", ""))

    def reset(self, rokt_rate_limit: float = 0.0) -> None:
        """Between benchmarks: an empty Redis and simulators with no state and no faults."""
        self.stop_workers()
        self.redis.flushdb()
        for url in (self.rokt_url, self.sfmc_url):
            requests.post(f"{url}/__sandbox__/reset", timeout=30).raise_for_status()
        requests.post(
            f"{self.rokt_url}/__sandbox__/faults",
            json={"rate_limit": rokt_rate_limit, "land_delay_ms": 0},
            timeout=5,
        ).raise_for_status()

    def stop(self) -> None:
        self.stop_workers()
        for child in reversed(self.children):
            child.stop()

    # -- workers -------------------------------------------------------------------------
    def start_workers(
        self,
        nodes: int = 1,
        concurrency: int = WORKER_CONCURRENCY,
        app: str = "tasks",
        queues: Sequence[str] = (),
    ) -> list[processes.Child]:
        """`nodes` worker instances (as separate containers would be), each -c `concurrency`;
        returns once every one has logged that it is ready."""
        started = []
        for _ in range(nodes):
            self._generation += 1
            name = f"bench-worker-{self._generation}"
            started.append(processes.start_worker(self.run_dir, self.env, name, concurrency, queues, app))
        for worker in started:
            processes.wait_until(lambda w=worker: " ready." in w.tail(200), 60, worker.name, worker)
        self.workers.extend(started)
        return started

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)
        self.workers = []

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    # -- executions ----------------------------------------------------------------------
    def journey(self, tenant: str, count: int) -> list[dict[str, Any]]:
        """`count` subscribed contacts seeded at the Rokt simulator; their execute payloads."""
        template = create_template(self.redis, tenant, jbsim.DEMO_TEMPLATE)
        contacts = [
            jbsim.Contact(f"{tenant}-{i:07d}", "Ava", f"{tenant}{i}@example.com", "Sydney", True)
            for i in range(count)
        ]
        jbsim.seed_subscriptions(self.rokt_url, SANDBOX_ACCOUNT_CODE, contacts)
        journey, activity = f"bench-{uuid.uuid4()}", f"bench-activity-{uuid.uuid4()}"
        return [
            jbsim.execute_payload(c, template["id"], journey, activity, jbsim.RELEASE_EVENT_KEY)
            for c in contacts
        ]

    def enqueue(self, tenant: str, payloads: list[dict[str, Any]]) -> list[str]:
        """What execute does after the JWT check: validate, claim in the ledger, enqueue."""
        ids = []
        for payload in payloads:
            execution, record = new_execution(_SCHEMA.load(payload))
            if self.runtime.ledger.claim(tenant, execution, record):
                dispatch.enqueue_execution(tenant, execution)
            ids.append(execution)
        return ids

    def open_count(self, tenant: str) -> int:
        return self.runtime.ledger.open_count(tenant)

    def sfmc_state(self) -> dict[str, Any]:
        return requests.get(f"{self.sfmc_url}/__sandbox__/state", timeout=30).json()

    def rokt_state(self) -> dict[str, Any]:
        return requests.get(f"{self.rokt_url}/__sandbox__/state", timeout=30).json()

    def delivered(self, tenant_rows: int) -> bool:
        """Every status row written to SFMC and every contact released from its journey wait."""
        state = self.sfmc_state()
        rows = state["data_extensions"].get(STATUS_DE_KEY, 0)
        return rows >= tenant_rows and state["released_unique_contacts"] >= tenant_rows

    def check_workers(self) -> None:
        for worker in self.workers:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} died:\n{worker.tail()}")


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
