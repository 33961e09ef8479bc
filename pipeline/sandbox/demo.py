"""`rokt-sfmc demo`: the whole stack on embedded defaults, one journey through it, a report.

Starts (as child processes) a bundled Redis when REDIS_URL is unset or unreachable, the
sandbox simulators, the web app under gunicorn, a Celery worker and beat; creates a tenant
and a template; seeds subscriptions; drives contacts through execute like Journey Builder;
waits until every execution is terminal; reports from the simulators' own state.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import dispatch
from pipeline.ledger import Ledger
from pipeline.reconcile import reconcile
from pipeline.replay import PERMANENT, list_dead_letters, replay
from pipeline.runtime import Runtime
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, jbsim, processes, sandbox_env
from pipeline.sandbox.chaos import Chaos, ChaosHooks
from pipeline.settings import Tenant, get_settings, load_settings
from pipeline.store import PREFIX, redis_client
from pipeline.templates import create_template

DEMO_TENANT = "demo"
STATUS_DE_KEY = "RoktCalendarEventStatus"
SUBSCRIPTION_DE_KEY = "RoktCalendarSubscription"


def tenants_toml(values: dict[str, str], rate_limits: dict[str, tuple[float, float]]) -> str:
    """A TENANTS_FILE of sandbox tenants: name -> (Rokt, SFMC) requests per second."""
    lines = []
    for tenant, (rokt_rate, sfmc_rate) in rate_limits.items():
        lines.append(f"[tenants.{tenant}]")
        for name, value in sorted(values.items()):
            lines.append(f"{name.lower()} = {json.dumps(value)}")
        lines.append(f"rokt_rate_limit = {rokt_rate}")
        lines.append(f"sfmc_rate_limit = {sfmc_rate}")
        lines.append(f"sfmc_status_de_key = {json.dumps(STATUS_DE_KEY)}")
        lines.append(f"sfmc_subscription_de_key = {json.dumps(SUBSCRIPTION_DE_KEY)}")
    return "\n".join(lines) + "\n"


def _state(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/__sandbox__/state", timeout=10).json()


def _rows(sfmc_url: str, de_key: str) -> list[dict[str, Any]]:
    response = requests.get(f"{sfmc_url}/__sandbox__/rows", params={"de": de_key}, timeout=30)
    return response.json()["rows"]


def _status_rows(sfmc_url: str) -> list[dict[str, Any]]:
    return _rows(sfmc_url, STATUS_DE_KEY)


def _settled(
    ledger: Ledger,
    status_rows: list[dict[str, Any]],
    sub_rows: list[dict[str, Any]],
    executions: int,
    subscriptions: int,
    leaving: list[jbsim.Contact],
    rokt_url: str,
    sfmc_url: str,
) -> bool:
    """Every execution terminal and confirmed where accepted, every release and webhook done."""
    if ledger.open_count(DEMO_TENANT) or len(status_rows) < executions:
        return False
    if any(row["Status"] == "accepted" for row in status_rows):
        return False  # Rokt's SubscriptionEventAdded not processed yet
    if len(sub_rows) < subscriptions or sum(1 for r in sub_rows if r.get("RemovedDateTime")) < len(leaving):
        return False
    if _state(rokt_url)["webhooks_pending"]:
        return False
    # every contact released from its journey's wait at least once (a re-driven execution may
    # be released once with its final status, or twice)
    return _state(sfmc_url)["released_unique_contacts"] >= len(status_rows)


def subscription_report(rokt_state: dict[str, Any], sub_rows: list[dict[str, Any]]) -> dict[str, int]:
    matches = Counter(row.get("ContactMatch") for row in sub_rows)
    return {
        "webhooks_sent": rokt_state["webhooks_created"],
        "webhooks_received": rokt_state["webhooks_delivered"],
        "duplicates_dropped": rokt_state["webhooks_delivered"] - rokt_state["webhooks_created"],
        "rows": len(sub_rows),
        "matched": matches.get("matched", 0),
        "created": matches.get("created", 0),
        "unsubscribed": sum(1 for row in sub_rows if row.get("RemovedDateTime")),
    }


def build_report(
    contacts: list[jbsim.Contact],
    drive: jbsim.DriveResult,
    elapsed: float,
    rokt_state: dict[str, Any],
    sfmc_state: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every count comes from the simulators' state, not from the pipeline's own bookkeeping."""
    terminal = {"accepted", "confirmed", "no_subscription", "missing_field", "failed", "removed"}
    outcomes = Counter(row.get("Status") for row in rows)
    finished = {row["ContactKey"] for row in rows if row.get("Status") in terminal}
    return {
        "contacts": len(contacts),
        "elapsed_s": round(elapsed, 2),
        "contacts_per_hour": round(len(contacts) / elapsed * 3600) if elapsed else 0,
        "execute": {
            "sent": drive.sent,
            "ok": drive.ok,
            "non_200": drive.non_200,
            "duplicates_sent": drive.duplicates_sent,
            "p50_ms": round(drive.percentile(50), 1),
            "p99_ms": round(drive.percentile(99), 1),
        },
        "outcomes": {name: outcomes.get(name, 0) for name in sorted(terminal)},
        "rokt": {
            "event_posts": rokt_state["event_posts"],
            "repeated_event_posts": rokt_state["repeated_event_posts"],
            "calendar_entries": rokt_state["calendar_entries"],
            "duplicate_calendar_entries": rokt_state["duplicate_calendar_entries"],
            "token_requests": rokt_state["token_requests"],
            "throttled": rokt_state["throttled"],
            "max_posts_in_any_1s_window": rokt_state["max_posts_in_any_1s_window"],
        },
        "sfmc": {
            "status_rows": len(rows),
            "rowset_calls": sfmc_state["rowset_calls"],
            "max_rows_per_rowset": sfmc_state["max_rows_per_rowset"],
            "token_requests": sfmc_state["token_requests"],
            "release_calls": sfmc_state["release_calls"],
            "released_contacts": sfmc_state["released_contacts"],
            "released_unique_contacts": sfmc_state["released_unique_contacts"],
        },
        "lost": sum(1 for c in contacts if c.key not in finished),
    }


def print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"rokt-sfmc demo: {report['contacts']} contacts in {report['elapsed_s']} s")
    table.add_column("area")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("throughput", "contacts/hour", f"{report['contacts_per_hour']:,}")
    for area in ("execute", "outcomes", "rokt", "sfmc", "subscriptions"):
        for name, value in report[area].items():
            table.add_row(area, name, str(value))
    table.add_row("result", "lost", str(report["lost"]), style="bold red" if report["lost"] else "bold green")
    console.print(table)


class DemoStack:
    """The child processes of one demo run, and how to break them (for --chaos)."""

    def __init__(self, run_dir: Path, console: Console) -> None:
        self.run_dir = run_dir
        self.console = console
        self.children: list[processes.Child] = []
        self.redis_child: processes.Child | None = None
        self.redis_port = 0
        self.workers: list[processes.Child] = []
        self.worker_env: dict[str, str] = {}
        self.worker_concurrency = 8
        self._generation = 0
        self.restarts = 0  # processes restarted after dying under chaos

    def start_redis(self) -> str:
        redis_url = os.environ.get("REDIS_URL", "")
        if processes.redis_reachable(redis_url):
            self.console.print(f"Redis: using REDIS_URL ({redis_url.rsplit('@', 1)[-1]})")
            return redis_url
        self.redis_port = processes.free_port()
        self.redis_child, redis_url = processes.start_redis(self.run_dir, self.redis_port)
        self.console.print(f"Redis: started the bundled redis-server ({redis_url})")
        return redis_url

    def start_worker(self) -> None:
        self._generation += 1
        worker = processes.start_worker(
            self.run_dir,
            self.worker_env,
            f"demo-worker-{self._generation}",
            concurrency=self.worker_concurrency,
        )
        self.workers.append(worker)

    def kill_and_replace_worker(self) -> None:
        if self.workers:
            victim = self.workers.pop(0)
            victim.kill()  # SIGKILL to the whole process group: main process and pool
            victim.stop(timeout=5)
        self.start_worker()

    def restart_redis(self) -> None:
        if self.redis_child is None:
            return
        self.redis_child.stop()  # SIGTERM: Redis fsyncs its AOF and exits
        self.redis_child, _url = processes.start_redis(self.run_dir, self.redis_port)

    def check_alive(self, supervise: bool = False) -> None:
        """A dead process is an error, or under chaos, restarted as a supervisor would
        (compose's `restart: unless-stopped`): a worker can die on a Redis restart."""
        for child in list(self.workers):
            if not child.alive():
                if not supervise:
                    raise RuntimeError(f"{child.name} died:\n{child.tail()}")
                self.workers.remove(child)
                self.restarts += 1
                self.start_worker()
        for index, child in enumerate(self.children):
            if not child.alive():
                if not supervise or child.name != "beat":
                    raise RuntimeError(f"{child.name} died:\n{child.tail()}")
                self.restarts += 1
                self.children[index] = processes.start_beat(self.run_dir, self.worker_env)

    def stop(self) -> None:
        for child in reversed([*self.children, *self.workers]):
            child.stop()
        if self.redis_child is not None:
            self.redis_child.stop()


def _chaos_env(scenarios: tuple[str, ...], backlog_seconds: float) -> dict[str, str]:
    """Under chaos the reconciler must act within the demo's minutes, not production's;
    `queued` counts as stuck only once the rate-limited backlog could have drained."""
    if not scenarios:
        return {}
    return {
        "RECONCILE_QUEUED_AFTER": str(int(8 + backlog_seconds)),
        "RECONCILE_CONFIRM_AFTER": "10",
        "DLQ_RETRY_AFTER": "5",
        "OUTBOX_CLAIM_IDLE_SECONDS": "30",
    }


def run_demo(
    contacts_count: int,
    report_path: Path,
    rate_limit: float = 50.0,
    workers: int = 8,
    chaos: tuple[str, ...] = (),
) -> dict:
    console = Console()
    run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-demo-"))
    stack = DemoStack(run_dir, console)
    try:
        redis_url = stack.start_redis()
        sandbox, rokt_url, sfmc_url = processes.start_sandbox(run_dir)
        stack.children.append(sandbox)
        web_port = processes.free_port()

        tenant_values = sandbox_env(rokt_url, sfmc_url)
        tenants_file = run_dir / "tenants.toml"
        tenants_file.write_text(
            tenants_toml(tenant_values, {DEMO_TENANT: (rate_limit, Tenant.sfmc_rate_limit)})
        )
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "TENANTS_FILE": str(tenants_file),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
            **_chaos_env(chaos, contacts_count / rate_limit),
        }
        requests.post(f"{rokt_url}/__sandbox__/faults", json={"rate_limit": rate_limit}, timeout=5)
        # this process enqueues too (reconcile, replay): point its settings at the same stack
        os.environ.update(
            REDIS_URL=redis_url,
            TENANTS_FILE=str(tenants_file),
            **_chaos_env(chaos, contacts_count / rate_limit),
        )
        get_settings.cache_clear()

        r = redis_client(redis_url)
        for key in r.scan_iter(f"{PREFIX}:{DEMO_TENANT}:*", count=1000):
            r.delete(key)
        stack.children.append(processes.start_web(run_dir, env, web_port))
        stack.worker_env, stack.worker_concurrency = env, workers
        stack.start_worker()
        stack.children.append(processes.start_beat(run_dir, env))
        console.print(f"Stack up: web :{web_port}, worker (c={workers}), beat, sandbox; logs in {run_dir}")

        template = create_template(r, DEMO_TENANT, jbsim.DEMO_TEMPLATE)
        contacts = jbsim.make_contacts(contacts_count)
        requests.post(
            f"{rokt_url}/__sandbox__/webhooks",
            json={
                "url": f"http://127.0.0.1:{web_port}/t/{DEMO_TENANT}/webhooks/rokt",
                "secret": tenant_values["ROKT_WEBHOOK_SECRET"],
                "duplicate_rate": 0.05,
                "reorder_ms": 200,
            },
            timeout=5,
        ).raise_for_status()
        existing = [c.key for c in contacts[::2]]  # half the contacts already exist in SFMC
        requests.post(f"{sfmc_url}/__sandbox__/contacts", json={"contactKeys": existing}, timeout=10)
        console.print("Subscribing contacts through the Rokt simulator (Subscribe webhooks flow)...")
        jbsim.subscribe_contacts(rokt_url, SANDBOX_ACCOUNT_CODE, contacts)
        journey = f"demo-journey-{int(time.time())}"
        activity = f"demo-activity-{os.getpid()}-{int(time.time())}"
        payloads = [
            jbsim.execute_payload(c, template["id"], journey, activity, jbsim.RELEASE_EVENT_KEY)
            for c in contacts
        ]
        subscribed = [
            c for c in contacts if c.subscription_id and c.subscription_id != jbsim.UNKNOWN_SUBSCRIPTION_ID
        ]
        leaving = subscribed[:: max(1, len(subscribed) // 25)]  # unsubscribe after the journey
        runtime = Runtime(load_settings(env), r)
        monkey = None
        if chaos:
            hooks = ChaosHooks(
                rokt_url, sfmc_url, rate_limit, stack.kill_and_replace_worker, stack.restart_redis
            )
            monkey = Chaos(chaos, hooks).start()
            console.print(f"Chaos: {', '.join(chaos)}")
        started = time.monotonic()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            sending = progress.add_task("execute (JB, 50 concurrent)", total=len(payloads))
            finishing = progress.add_task("terminal status rows in SFMC", total=len(payloads))
            syncing = progress.add_task("subscription rows in SFMC", total=len(subscribed))
            drive_result = jbsim.drive(
                f"http://127.0.0.1:{web_port}/t/{DEMO_TENANT}/activity/execute",
                tenant_values["JB_JWT_SECRET"],
                payloads,
                retries=6 if chaos else 2,
                on_done=lambda: progress.advance(sending),
            )
            injected: dict[str, int] = {}
            if monkey is not None:
                time.sleep(10)  # faults go on while the pipeline works through the backlog
                injected = monkey.stop()
            watcher = _Watcher(runtime, stack, progress, finishing, syncing, rokt_url, sfmc_url, chaos)
            deadline = time.monotonic() + max(180, contacts_count / rate_limit * 4) + (240 if chaos else 0)
            watcher.wait(lambda: runtime.ledger.open_count(DEMO_TENANT) == 0, deadline)
            dead_letters = len(list_dead_letters(runtime, DEMO_TENANT))
            replayed = _replay_retryable(runtime) if chaos else 0
            for contact in leaving:
                requests.post(
                    f"{rokt_url}/__sandbox__/unsubscribe", json={"id": contact.subscription_id}, timeout=10
                )
            watcher.wait(
                lambda: _settled(
                    runtime.ledger,
                    watcher.status_rows,
                    watcher.sub_rows,
                    drive_result.ok,
                    len(subscribed),
                    leaving,
                    rokt_url,
                    sfmc_url,
                ),
                deadline,
            )
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # Rokt lands calendar entries shortly after its 202
        rokt_state = _state(rokt_url)
        report = build_report(
            contacts, drive_result, elapsed, rokt_state, _state(sfmc_url), _status_rows(sfmc_url)
        )
        report["subscriptions"] = subscription_report(rokt_state, _rows(sfmc_url, SUBSCRIPTION_DE_KEY))
        if chaos:
            report["chaos"] = {"scenarios": list(chaos), **injected, "supervisor_restarts": stack.restarts}
            report["dead_letters"] = dead_letters
            report["replayed"] = replayed
        print_report(console, report)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"Report written to {report_path}")
        return report
    finally:
        stack.stop()


class _Watcher:
    """Polls the simulators and the ledger, drives progress bars, and (under chaos) runs the
    reconciliation every few seconds instead of waiting for beat's 30-second tick."""

    def __init__(
        self,
        runtime: Runtime,
        stack: DemoStack,
        progress: Progress,
        finishing: TaskID,
        syncing: TaskID,
        rokt_url: str,
        sfmc_url: str,
        chaos: tuple[str, ...],
    ) -> None:
        self.runtime, self.stack, self.progress = runtime, stack, progress
        self.finishing, self.syncing = finishing, syncing
        self.rokt_url, self.sfmc_url, self.chaos = rokt_url, sfmc_url, chaos
        self.status_rows: list[dict[str, Any]] = []
        self.sub_rows: list[dict[str, Any]] = []
        self._last_reconcile = 0.0

    def wait(self, done: Callable[[], bool], deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.status_rows = _status_rows(self.sfmc_url)
                self.sub_rows = _rows(self.sfmc_url, SUBSCRIPTION_DE_KEY)
                finished = sum(1 for row in self.status_rows if row["Status"] != "accepted")
                self.progress.update(self.finishing, completed=finished)
                self.progress.update(self.syncing, completed=len(self.sub_rows))
                if self.chaos and time.monotonic() - self._last_reconcile > 5:
                    reconcile(self.runtime, DEMO_TENANT, dispatch.enqueue_execution, dispatch.enqueue_webhook)
                    self._last_reconcile = time.monotonic()
                if done():
                    return
            except redis.RedisError:
                pass  # Redis restarting under chaos: look again shortly
            self.stack.check_alive(supervise=bool(self.chaos))
            time.sleep(0.5)
        raise TimeoutError("the demo did not settle before its deadline")


def _replay_retryable(runtime: Runtime) -> int:
    """After the faults: replay every dead letter that is not permanent."""
    letters = [d for d in list_dead_letters(runtime, DEMO_TENANT) if d["errorClass"] != PERMANENT]
    report = replay(runtime, DEMO_TENANT, letters, dispatch.enqueue_execution, dispatch.enqueue_webhook)
    return report.replayed
