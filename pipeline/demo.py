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
SUBSCRIPTION_DE_KEY = "RoktCalendarSubscription"


def _tenants_toml(values: dict[str, str], rate_limit: float) -> str:
    lines = [f"[tenants.{DEMO_TENANT}]"]
    for name, value in sorted(values.items()):
        lines.append(f"{name.lower()} = {json.dumps(value)}")
    lines.append(f"rokt_rate_limit = {rate_limit}")
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
    confirmed = sum(1 for row in status_rows if row["Status"] == "confirmed")
    return _state(sfmc_url)["released_contacts"] >= len(status_rows) + confirmed


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
        ledger = Ledger(r)
        started = time.monotonic()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            sending = progress.add_task("execute (JB, 50 concurrent)", total=len(payloads))
            finishing = progress.add_task("terminal status rows in SFMC", total=len(payloads))
            subscribed = [
                c
                for c in contacts
                if c.subscription_id and c.subscription_id != jbsim.UNKNOWN_SUBSCRIPTION_ID
            ]
            syncing = progress.add_task("subscription rows in SFMC", total=len(subscribed))
            drive_result = jbsim.drive(
                f"http://127.0.0.1:{web_port}/t/{DEMO_TENANT}/activity/execute",
                tenant_values["JB_JWT_SECRET"],
                payloads,
                on_done=lambda: progress.advance(sending),
            )
            # once the journey has run, a few subscribers leave the calendar (Unsubscribe webhooks)
            leaving = subscribed[:: max(1, len(subscribed) // 25)]
            left = False
            deadline = time.monotonic() + max(120, contacts_count / rate_limit * 4)
            while time.monotonic() < deadline:
                status_rows = _status_rows(sfmc_url)
                sub_rows = _rows(sfmc_url, SUBSCRIPTION_DE_KEY)
                progress.update(
                    finishing, completed=sum(1 for row in status_rows if row["Status"] != "accepted")
                )
                progress.update(syncing, completed=len(sub_rows))
                if not left and ledger.open_count(DEMO_TENANT) == 0:
                    for contact in leaving:
                        body = {"id": contact.subscription_id}
                        requests.post(f"{rokt_url}/__sandbox__/unsubscribe", json=body, timeout=10)
                    left = True
                if left and _settled(
                    ledger,
                    status_rows,
                    sub_rows,
                    drive_result.ok,
                    len(subscribed),
                    leaving,
                    rokt_url,
                    sfmc_url,
                ):
                    break
                for child in children:
                    if not child.alive():
                        raise RuntimeError(f"{child.name} died:\n{child.tail()}")
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # Rokt lands calendar entries shortly after its 202
        rokt_state = _state(rokt_url)
        report = build_report(
            contacts, drive_result, elapsed, rokt_state, _state(sfmc_url), _status_rows(sfmc_url)
        )
        report["subscriptions"] = subscription_report(rokt_state, _rows(sfmc_url, SUBSCRIPTION_DE_KEY))
        print_report(console, report)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"Report written to {report_path}")
        return report
    finally:
        for child in reversed(children):
            child.stop()
