"""`rokt-sfmc demo`: the whole stack on embedded defaults, one journey through it, a report.

Starts (as child processes) a bundled Redis when REDIS_URL is unset or unreachable, the
sandbox simulators, the web app under gunicorn, a Celery worker and beat; creates a tenant
and a template; seeds subscriptions; drives contacts through execute like Journey Builder;
waits until every execution is terminal; reports from the simulators' own state.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import jbsim, processes
from pipeline.ledger import Ledger
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, sandbox_env
from pipeline.store import PREFIX, redis_client
from pipeline.templates import create_template

DEMO_TENANT = "demo"
STATUS_DE_KEY = "RoktCalendarEventStatus"


def _tenants_toml(values: dict[str, str], rate_limit: float) -> str:
    lines = [f"[tenants.{DEMO_TENANT}]"]
    for name, value in sorted(values.items()):
        lines.append(f"{name.lower()} = {json.dumps(value)}")
    lines.append(f"rokt_rate_limit = {rate_limit}")
    lines.append(f"sfmc_status_de_key = {json.dumps(STATUS_DE_KEY)}")
    return "\n".join(lines) + "\n"


def _state(base_url: str) -> dict[str, Any]:
    return requests.get(f"{base_url}/__sandbox__/state", timeout=10).json()


def _status_rows(sfmc_url: str) -> list[dict[str, Any]]:
    response = requests.get(f"{sfmc_url}/__sandbox__/rows", params={"de": STATUS_DE_KEY}, timeout=30)
    return response.json()["rows"]


def build_report(
    contacts: list[jbsim.Contact],
    drive: jbsim.DriveResult,
    elapsed: float,
    rokt_state: dict[str, Any],
    sfmc_state: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every count comes from the simulators' state, not from the pipeline's own bookkeeping."""
    terminal = {"accepted", "confirmed", "no_subscription", "missing_field", "failed"}
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
        },
        "lost": sum(1 for c in contacts if c.key not in finished),
    }


def print_report(console: Console, report: dict[str, Any]) -> None:
    table = Table(title=f"rokt-sfmc demo: {report['contacts']} contacts in {report['elapsed_s']} s")
    table.add_column("area")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("throughput", "contacts/hour", f"{report['contacts_per_hour']:,}")
    for area in ("execute", "outcomes", "rokt", "sfmc"):
        for name, value in report[area].items():
            table.add_row(area, name, str(value))
    table.add_row("result", "lost", str(report["lost"]), style="bold red" if report["lost"] else "bold green")
    console.print(table)


def run_demo(contacts_count: int, report_path: Path, rate_limit: float = 50.0, workers: int = 8) -> dict:
    console = Console()
    run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-demo-"))
    children: list[processes.Child] = []
    try:
        redis_url = os.environ.get("REDIS_URL", "")
        if processes.redis_reachable(redis_url):
            console.print(f"Redis: using REDIS_URL ({redis_url.rsplit('@', 1)[-1]})")
        else:
            redis_child, redis_url = processes.start_redis(run_dir)
            children.append(redis_child)
            console.print(f"Redis: started the bundled redis-server ({redis_url})")

        rokt_port, sfmc_port, web_port = (processes.free_port() for _ in range(3))
        rokt_url, sfmc_url = f"http://127.0.0.1:{rokt_port}", f"http://127.0.0.1:{sfmc_port}"
        sandbox = processes.Child(
            "sandbox",
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "sandbox",
                "--rokt-port",
                str(rokt_port),
                "--sfmc-port",
                str(sfmc_port),
            ],
            dict(os.environ),
            run_dir,
        )
        children.append(sandbox)
        for url in (rokt_url, sfmc_url):
            processes.wait_until(
                lambda u=url: processes.http_ok(f"{u}/__sandbox__/state"), 20, "sandbox", sandbox
            )

        tenant_values = sandbox_env(rokt_url, sfmc_url)
        tenants_file = run_dir / "tenants.toml"
        tenants_file.write_text(_tenants_toml(tenant_values, rate_limit))
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "TENANTS_FILE": str(tenants_file),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        }
        requests.post(f"{rokt_url}/__sandbox__/faults", json={"rate_limit": rate_limit}, timeout=5)

        r = redis_client(redis_url)
        for key in r.scan_iter(f"{PREFIX}:{DEMO_TENANT}:*", count=1000):
            r.delete(key)
        children.append(processes.start_web(run_dir, env, web_port))
        children.append(processes.start_worker(run_dir, env, "demo-worker", concurrency=workers))
        children.append(processes.start_beat(run_dir, env))
        console.print(f"Stack up: web :{web_port}, worker (c={workers}), beat, sandbox; logs in {run_dir}")

        template = create_template(r, DEMO_TENANT, jbsim.DEMO_TEMPLATE)
        contacts = jbsim.make_contacts(contacts_count)
        jbsim.seed_subscriptions(rokt_url, SANDBOX_ACCOUNT_CODE, contacts)
        journey = f"demo-journey-{int(time.time())}"
        activity = f"demo-activity-{os.getpid()}-{int(time.time())}"
        payloads = [
            jbsim.execute_payload(c, template["id"], journey, activity, jbsim.RELEASE_EVENT_KEY)
            for c in contacts
        ]
        ledger = Ledger(r)
        started = time.monotonic()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            sending = progress.add_task("execute (JB, 50 concurrent)", total=len(payloads))
            finishing = progress.add_task("terminal status rows in SFMC", total=len(payloads))
            drive_result = jbsim.drive(
                f"http://127.0.0.1:{web_port}/t/{DEMO_TENANT}/activity/execute",
                tenant_values["JB_JWT_SECRET"],
                payloads,
                on_done=lambda: progress.advance(sending),
            )
            deadline = time.monotonic() + max(120, contacts_count / rate_limit * 4)
            while time.monotonic() < deadline:
                rows = len(_status_rows(sfmc_url))
                progress.update(finishing, completed=rows)
                released = _state(sfmc_url)["released_contacts"]  # every demo contact waits on one
                if ledger.open_count(DEMO_TENANT) == 0 and rows >= drive_result.ok and released >= rows:
                    break
                for child in children:
                    if not child.alive():
                        raise RuntimeError(f"{child.name} died:\n{child.tail()}")
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # Rokt lands calendar entries shortly after its 202
        report = build_report(
            contacts, drive_result, elapsed, _state(rokt_url), _state(sfmc_url), _status_rows(sfmc_url)
        )
        print_report(console, report)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"Report written to {report_path}")
        return report
    finally:
        for child in reversed(children):
            child.stop()
