"""`rokt-sfmc demo`: the whole stack on embedded defaults, one journey through it, a report.

Starts (as child processes) a bundled Redis when REDIS_URL is unset or unreachable, the
sandbox simulators, the web app under gunicorn, a Celery worker and beat; creates a tenant
and a template; subscribes contacts; saves the activity as our UI does (from the served
config.json) and drives contacts through execute like Journey Builder, each execute's
inArguments resolved from that saved activity; waits until every execution is terminal;
reports from the simulators' own state. Then the events' life after sending (`after_send`): a
subscriber or two take the event out of their calendar, the template is corrected through the
API for the events already sent, a second, smaller activity's event is cancelled, and every
simulated calendar is compared with what the ledger says it should hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from pipeline.infra import dispatch, keys
from pipeline.infra.redis_clients import redis_location
from pipeline.journeys.render import render_event
from pipeline.journeys.templates import create_template
from pipeline.sandbox import SANDBOX_ACCOUNT_CODE, SANDBOX_EID, SANDBOX_JWT_SECRET, SANDBOX_MID, jbsim, rokt
from pipeline.sandbox.appadmin import AppAdmin
from pipeline.sandbox.chaos import Chaos, ChaosHooks
from pipeline.sandbox.monitoring import ALERT_RULES, Prometheus, Scraper, prometheus_binary, start_exporter
from pipeline.sandbox.postgres import Postgres
from pipeline.sandbox.stack import DEFAULT_ROKT_RATE, ROKT_THREADS, Stack
from pipeline.stores import performance
from pipeline.stores.ledger import Execution
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep.reconcile import reconcile
from pipeline.upkeep.replay import list_dead_letters, replay
from pipeline.vocabulary import HELD_STATES, TERMINAL_STATES, ErrorClass, OutboxKind, State


def sign_up(stack: Stack, console: Console, rate_limit: float) -> str:
    """The brand's admin installs the app: signs in to App Settings (the OAuth flow against the
    SFMC simulator), saves the settings, tests the connection, rotates the webhook secret into
    Rokt's management centre and installs the data extensions; all through the web app's own
    routes (`appadmin`). Returns the tenant the sign-in created."""
    admin = AppAdmin(stack.web_url)
    admin.sign_in()
    tenant = stack.runtime.registry.by_eid(SANDBOX_EID)
    if tenant is None:
        raise RuntimeError("sign-in created no tenant")
    # the operator's part (`tenants update`): the account's rate, and this run's simulators (a
    # reused Redis may hold an earlier run's tenant, pointing at simulators long gone)
    here = {
        "rokt_api_base_url": stack.rokt_url,
        "sfmc_auth_base_url": stack.runtime.settings.tssd_auth_url(tenant.sfmc_tssd),
        "rokt_rate_limit": rate_limit,
    }
    stack.runtime.registry.update(tenant.name, here)
    time.sleep(stack.runtime.settings.tenant_refresh_seconds)  # every process sees a change this soon
    admin.save_settings(
        {
            "rokt_account_id": "sandbox-account",
            "rokt_account_code": SANDBOX_ACCOUNT_CODE,
            "rokt_client_id": rokt.DEFAULT_CLIENT_ID,
            "rokt_client_secret": rokt.DEFAULT_CLIENT_SECRET,
            "sfmc_account_id": SANDBOX_MID,
            "jb_jwt_secret": SANDBOX_JWT_SECRET,
        }
    )
    check = admin.test_connection()
    if not check["ok"]:
        raise RuntimeError(f"test connection failed: {check}")
    webhook_secret = admin.rotate_webhook_secret()
    stack.webhooks_to(tenant.name, secret=webhook_secret, duplicate_rate=0.05, reorder_ms=200)
    progress = admin.install_data_extensions()
    if progress.get("state") != "done":
        raise RuntimeError(f"data extensions not installed: {progress}")
    created = sum(1 for step in progress["steps"] if step["result"] == "created")
    console.print(
        f"Signed up in App Settings as tenant {tenant.name!r} (enterprise {SANDBOX_EID}): settings saved, "
        f"both vendors' tokens OK, webhook secret rotated, data extensions installed ({created} created)"
    )
    return tenant.name


def configure_activity(
    stack: Stack,
    tenant: str,
    template_id: str,
    activity_id: str,
    template: Mapping[str, Any] = jbsim.DEMO_TEMPLATE,
) -> dict[str, Any]:
    """What a marketer does in Journey Builder: JB reads our config.json, drops the activity on
    the canvas, and our UI saves it (`jbsim.demo_activity`: FirstName and "Home City" mapped,
    released once at confirmation). Executes are resolved from this saved activity."""
    response = requests.get(f"{stack.web_url}/t/{tenant}/activity/config.json", timeout=10)
    response.raise_for_status()
    return jbsim.demo_activity(
        template_id,
        jbsim.DEMO_EVENT_KEY,
        jbsim.RELEASE_EVENT_KEY,
        config=response.json(),
        activity_id=activity_id,
        template=template,
    )


def _settled(
    stack: Stack,
    tenant: str,
    status_rows: list[dict[str, Any]],
    sub_rows: list[dict[str, Any]],
    executions: int,
    subscriptions: int,
    leaving: list[jbsim.Contact],
) -> bool:
    """Every execution terminal and confirmed where accepted, every release and webhook done."""
    if stack.runtime.ledger.open_count(tenant) or len(status_rows) < executions:
        return False
    if any(row["Status"] == State.ACCEPTED for row in status_rows):
        return False  # Rokt's SubscriptionEventAdded not processed yet
    if len(sub_rows) < subscriptions or sum(1 for r in sub_rows if r.get("RemovedDateTime")) < len(leaving):
        return False
    if stack.rokt_state()["webhooks_pending"]:
        return False
    # every contact released from its journey's wait (releaseOn "confirmed": once, at
    # confirmation or at its final outcome)
    return stack.sfmc_state()["released_unique_contacts"] >= len(status_rows)


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
    terminal = TERMINAL_STATES
    outcomes = Counter(row.get("Status") for row in rows)
    finished = {row["ContactKey"] for row in rows if row.get("Status") in terminal}
    return {
        "contacts": len(contacts),
        "elapsed_s": round(elapsed, 2),
        "contacts_per_hour": round(len(contacts) / elapsed * 3600) if elapsed else 0,
        "execute": drive.summary(),
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
            "refresh_grants": sfmc_state["refresh_grants"],
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
    for area in (
        "execute",
        "outcomes",
        "rokt",
        "sfmc",
        "subscriptions",
        "history",
        "ops",
        "after_send",
        "report",
    ):
        for name, value in report.get(area, {}).items():
            table.add_row(area, name, str(value))
    table.add_row("result", "lost", str(report["lost"]), style="bold red" if report["lost"] else "bold green")
    console.print(table)


def _history_env(postgres: Postgres | None = None) -> dict[str, str]:
    """The demo's own PostgreSQL when it started one; else HISTORY_URL when the caller set one
    (PostgreSQL, say); the stack's SQLite file otherwise."""
    if postgres is not None:
        return {"HISTORY_URL": postgres.url}
    return {"HISTORY_URL": os.environ["HISTORY_URL"]} if os.environ.get("HISTORY_URL") else {}


def _own_postgres(run_dir: Path, console: Console) -> Postgres:
    """kill-postgres SIGKILLs the store's server, so the demo runs one of its own (Debian's
    binaries, a free port), even when HISTORY_URL names another: it kills only what it started."""
    if os.environ.get("HISTORY_URL", "").startswith("postgresql"):
        console.print("kill-postgres: HISTORY_URL's PostgreSQL is not the demo's to kill; it starts its own")
    postgres = Postgres(run_dir).start()
    console.print(f"History store: the demo's own PostgreSQL on 127.0.0.1:{postgres.port} (kill-postgres)")
    return postgres


def _kill_postgres(postgres: Postgres) -> Callable[[float], None]:
    """The kill-postgres hook: SIGKILL, `down` seconds without a store, then a restart (WAL recovery)."""

    def hook(down: float) -> None:
        postgres.kill()
        time.sleep(down)
        postgres.restart()

    return hook


def history_report(stack: Stack, tenant: str, contacts: int, timeout: float = 60) -> dict[str, Any]:
    """The history store once it caught up: what it holds, and what finished executions still
    cost Redis (records, eventId and contact indexes) per contact."""
    box = stack.runtime.outbox(tenant, OutboxKind.HISTORY)
    deadline = time.monotonic() + timeout
    while box.backlog() and time.monotonic() < deadline:
        time.sleep(0.5)
    store = stack.runtime.history
    r = stack.redis
    redis_bytes = 0
    patterns = (keys.execution(tenant, "*"), keys.event(tenant, "*"), keys.contact_executions(tenant, "*"))
    for pattern in patterns:
        for key in r.scan_iter(pattern, count=1000):
            redis_bytes += int(r.memory_usage(key, samples=0) or 0)
    return {
        "store": store.engine.dialect.name,
        "archived": sum(store.counts(tenant).values()),
        "waiting": box.backlog(),
        "redis_bytes_per_contact": round(redis_bytes / max(1, contacts)),
        "store_bytes": store.size_bytes(),
    }


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
    rate_limit: float = DEFAULT_ROKT_RATE,
    workers: int = 8,
    chaos: tuple[str, ...] = (),
) -> dict:
    console = Console()
    run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-demo-"))
    postgres = _own_postgres(run_dir, console) if "kill-postgres" in chaos else None
    try:
        return _run_demo(console, run_dir, contacts_count, report_path, rate_limit, workers, chaos, postgres)
    finally:
        if postgres is not None:
            postgres.stop()


def _run_demo(
    console: Console,
    run_dir: Path,
    contacts_count: int,
    report_path: Path,
    rate_limit: float,
    workers: int,
    chaos: tuple[str, ...],
    postgres: Postgres | None,
) -> dict:
    stack = Stack(
        run_dir,
        {},  # no pinned tenant: the demo's brand signs up in App Settings
        reuse_redis_url=os.environ.get("REDIS_URL"),
        web="gunicorn",
        # this process enqueues too (reconcile, replay): the chaos thresholds apply here as well
        env={**_chaos_env(chaos, contacts_count / rate_limit), **_history_env(postgres)},
        worker_name="demo-worker",
        worker_concurrency=workers,
    )
    with stack, contextlib.ExitStack() as cleanup:
        if stack.redis_bundled:
            console.print(f"Redis: started the bundled redis-server ({redis_location(stack.redis_url)})")
        else:
            console.print(f"Redis: using REDIS_URL ({redis_location(stack.redis_url)})")
        stack.faults("rokt", rate_limit=rate_limit)  # the simulator enforces the account's limit
        # as compose runs them: worker-render (prefork) and worker-rokt (threads)
        stack.start_split_workers(wait=False)
        stack.start_beat()
        console.print(
            f"Stack up: web {stack.web_url}, worker-render (prefork, c={workers}), "
            f"worker-rokt (threads, c={ROKT_THREADS}), beat, sandbox; logs in {run_dir}"
        )
        ops = cleanup.enter_context(_Ops(stack, run_dir, console))
        earlier = stack.runtime.registry.by_eid(SANDBOX_EID)  # a reused Redis holds an earlier run's
        for key in stack.redis.scan_iter(
            keys.tenant_prefix(earlier.name) + "*" if earlier else "-", count=1000
        ):
            stack.redis.delete(key)
        tenant = sign_up(stack, console, rate_limit)
        # its links tracked, so the report counts the clicks the demo makes
        tracked = {**jbsim.DEMO_TEMPLATE, "trackClicks": True}
        template = create_template(stack.redis, tenant, upcoming(tracked, date.today()))
        contacts = jbsim.make_contacts(contacts_count)
        stack.seed_sfmc_contacts([c.key for c in contacts[::2]])  # half the contacts exist in SFMC
        console.print("Subscribing contacts through the Rokt simulator (Subscribe webhooks flow)...")
        account = stack.tenant(tenant).rokt_account_code
        subscriptions = jbsim.subscribe_contacts(stack.rokt_url, account, contacts, len(contacts) // 4)
        journey = f"demo-journey-{int(time.time())}"
        activity = configure_activity(
            stack, tenant, template["id"], f"demo-activity-{os.getpid()}-{int(time.time())}", template
        )
        (run_dir / "activity.json").write_text(json.dumps(activity, indent=2, ensure_ascii=False) + "\n")
        console.print(f"Activity {activity['name']!r} saved as the UI saves it ({run_dir / 'activity.json'})")
        payloads = [jbsim.execute_payload(c, activity, journey, jbsim.DEMO_EVENT_KEY) for c in contacts]
        subscribed = [
            c for c in contacts if c.subscription_id and c.subscription_id != jbsim.UNKNOWN_SUBSCRIPTION_ID
        ]
        leaving = subscribed[:: max(1, len(subscribed) // 25)]  # unsubscribe after the journey
        monkey = None
        if chaos:
            hooks = ChaosHooks(
                stack.rokt_url, stack.sfmc_url, rate_limit, stack.kill_and_replace_worker, stack.restart_redis
            )
            hooks.crash_redis = lambda: stack.restart_redis(crash=True)  # SIGKILL, back from its AOF
            hooks.redis = stack.redis  # redis-full caps its maxmemory
            if postgres is not None:
                hooks.kill_postgres = _kill_postgres(postgres)
            monkey = Chaos(chaos, hooks).start()
            console.print(f"Chaos: {', '.join(chaos)}")
        started = time.monotonic()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            sending = progress.add_task("execute (JB, 50 concurrent)", total=len(payloads))
            finishing = progress.add_task("terminal status rows in SFMC", total=len(payloads))
            syncing = progress.add_task("subscription rows in SFMC", total=subscriptions)
            drive_result = jbsim.drive(
                stack.execute_url(tenant),
                stack.jwt_secret,
                payloads,
                retries=6 if chaos else 2,
                on_done=lambda: progress.advance(sending),
            )
            injected: dict[str, float] = {}
            if monkey is not None:
                time.sleep(10)  # faults go on while the pipeline works through the backlog
                injected = monkey.stop()
            watcher = _Watcher(stack, tenant, progress, finishing, syncing, chaos)
            deadline = time.monotonic() + max(180, contacts_count / rate_limit * 4) + (240 if chaos else 0)
            watcher.wait(lambda: stack.runtime.ledger.open_count(tenant) == 0, deadline)
            dead_letters = len(list_dead_letters(stack.runtime, tenant))
            replayed = _replay_retryable(stack.runtime, tenant) if chaos else 0
            for contact in leaving:
                requests.post(
                    f"{stack.rokt_url}/__sandbox__/unsubscribe",
                    json={"id": contact.subscription_id},
                    timeout=10,
                )
            watcher.wait(
                lambda: _settled(
                    stack,
                    tenant,
                    watcher.status_rows,
                    watcher.sub_rows,
                    drive_result.ok,
                    subscriptions,
                    leaving,
                ),
                deadline,
            )
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # Rokt lands calendar entries shortly after its 202
        rokt_state = stack.rokt_state()
        report = build_report(
            contacts, drive_result, elapsed, rokt_state, stack.sfmc_state(), stack.rows(tenant)
        )
        sub_rows = stack.rows(tenant, stack.subscription_de_key(tenant))
        report["subscriptions"] = subscription_report(rokt_state, sub_rows)
        report["ops"] = ops.figures()
        report["history"] = history_report(stack, tenant, len(contacts))
        if chaos:
            report["chaos"] = {"scenarios": list(chaos), **injected, "supervisor_restarts": stack.restarts}
            report["dead_letters"] = dead_letters
            report["replayed"] = replayed
        else:  # under chaos the run is about recovery: the figures above are what it reports
            report["after_send"] = after_send(
                stack, console, tenant, template, contacts, drive_result, leaving
            )
        second_contacts = report.get("after_send", {}).get("second_activity_contacts", 0)
        report["report"] = channel_report(
            stack,
            console,
            tenant,
            entered=len(drive_result.answers) + second_contacts,
            subscriptions=subscriptions,
            unsubscribes=len(leaving),
        )
        print_report(console, report)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"Report written to {report_path}")
        return report


class _Ops:
    """The operator's view during the run: `rokt-sfmc exporter` as a child process, scraped every
    2 s; and, when Debian's `prometheus` is installed, Prometheus on loopback scraping it with
    the alert rules of deploy/prometheus/alerts.yml (their `for:` durations are minutes, so a
    healthy run ends with none firing)."""

    def __init__(self, stack: Stack, run_dir: Path, console: Console) -> None:
        self.stack, self.run_dir, self.console = stack, run_dir, console
        self.prometheus: Prometheus | None = None
        self.note = ""
        self.started = time.monotonic()

    def __enter__(self) -> _Ops:
        self.exporter, url = start_exporter(self.run_dir, self.stack.env)
        self.scraper = Scraper(url).start()
        if prometheus_binary() is None:
            self.note = "prometheus not installed"
        elif not ALERT_RULES.exists():
            self.note = f"no alert rules at {ALERT_RULES}"
        else:
            self.prometheus = Prometheus(self.run_dir, [url.removeprefix("http://")], interval="2s").start()
            self.note = f"ran on loopback with {ALERT_RULES.name}"
            self.console.print(f"Prometheus: {self.prometheus.url} (alerts: {self.prometheus.url}/alerts)")
        self.console.print(f"Metrics: exporter {url}/metrics scraped every 2 s; prometheus {self.note}")
        return self

    def figures(self) -> dict[str, Any]:
        self.scraper.scrape()  # one at the end, so the figures include the finished run
        since = time.monotonic() - self.started
        firing = self.prometheus.fired(since) if self.prometheus is not None else []
        calls = self.scraper.totals("rsf_vendor_calls_total", "vendor")
        return {
            "metrics_scrapes": self.scraper.scrapes,
            "alerts_fired": len(firing),
            "alerts": ", ".join(firing) or "-",
            "prometheus": self.note,
            # the exporter's count of HTTP requests (token requests included) at the last scrape
            "rokt_calls_counted": int(calls.get("rokt", 0)),
            "sfmc_calls_counted": int(calls.get("sfmc", 0)),
        }

    def __exit__(self, *exc: object) -> None:
        self.scraper.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        self.exporter.stop()


class _Watcher:
    """Polls the simulators and the ledger, drives progress bars, and (under chaos) runs the
    reconciliation every few seconds instead of waiting for beat's 30-second tick."""

    def __init__(
        self,
        stack: Stack,
        tenant: str,
        progress: Progress,
        finishing: TaskID,
        syncing: TaskID,
        chaos: tuple[str, ...],
    ) -> None:
        self.stack, self.tenant, self.progress = stack, tenant, progress
        self.finishing, self.syncing, self.chaos = finishing, syncing, chaos
        self.status_rows: list[dict[str, Any]] = []
        self.sub_rows: list[dict[str, Any]] = []
        self._last_reconcile = 0.0

    def wait(self, done: Callable[[], bool], deadline: float) -> None:
        """Until done() or the deadline; under chaos, dead processes are restarted meanwhile."""
        timeout = max(0.0, deadline - time.monotonic())
        self.stack.wait(
            lambda: self._poll(done), timeout, "the demo to settle", interval=0.5, supervise=bool(self.chaos)
        )

    def _poll(self, done: Callable[[], bool]) -> bool:
        stack = self.stack
        try:
            self.status_rows = stack.rows(self.tenant)
            self.sub_rows = stack.rows(self.tenant, stack.subscription_de_key(self.tenant))
            finished = sum(1 for row in self.status_rows if row["Status"] != State.ACCEPTED)
            self.progress.update(self.finishing, completed=finished)
            self.progress.update(self.syncing, completed=len(self.sub_rows))
            if self.chaos and time.monotonic() - self._last_reconcile > 5:
                reconcile(stack.runtime, self.tenant, dispatch.redrive_execution, dispatch.redrive_webhook)
                self._last_reconcile = time.monotonic()
            return done()
        except (redis.RedisError, SQLAlchemyError):
            return False  # Redis or the history store restarting under chaos: look again shortly


def _replay_retryable(runtime: Runtime, tenant: str) -> int:
    """After the faults: replay every dead letter that is not permanent."""
    letters = [d for d in list_dead_letters(runtime, tenant) if d["errorClass"] != ErrorClass.PERMANENT]
    report = replay(runtime, tenant, letters, dispatch.redrive_execution, dispatch.redrive_webhook)
    return report.replayed


# -- after sending: correct, cancel, and what every calendar holds ------------------------------

SUBSCRIBER_REMOVALS = 2  # contacts who take the event out of their calendar themselves
CORRECTED_TITLE = '🎉 {{FirstName}}, your {{Brand | default: "Rokt"}} summer sale is extended to Sunday'
SECOND_TEMPLATE: dict[str, Any] = {
    "name": "Demo: VIP early access",
    "title": 'VIP early access for {{FirstName | default: "you"}}',
    "description": "One hour before everyone else: https://example.com/sale/vip",
    "start": "2026-11-30T18:00:00",
    "end": "2026-11-30T19:00:00",
    "timezone": "Australia/Sydney",
    "missingFieldPolicy": "strict",
}
SECOND_ACTIVITY_MAX = 20  # contacts of the second activity, whose event the demo cancels


def upcoming(template: Mapping[str, Any], today: date) -> dict[str, Any]:
    """The template with its start and end on the same times of the first Friday at least three
    days after `today` (same span): a correction leaves an event whose end is past as it is, so
    the demo's events must not have ended when it corrects them."""
    start = datetime.fromisoformat(template["start"])
    friday = today + timedelta(days=3 + (4 - (today + timedelta(days=3)).weekday()) % 7)
    moved = {**template, "start": datetime.combine(friday, start.time()).isoformat()}
    if template.get("end"):
        moved["end"] = (
            datetime.fromisoformat(moved["start"]) + (datetime.fromisoformat(template["end"]) - start)
        ).isoformat()
    return moved


class TenantApi:
    """`/t/<tenant>/api/...` as a script calls it: an API key made as `rokt-sfmc api-keys create`
    makes it, sent as a bearer token."""

    def __init__(self, web_url: str, tenant: str, key: str) -> None:
        self.base = f"{web_url}/t/{tenant}/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> dict[str, Any]:
        response = self.session.request(method, self.base + path, json=body, timeout=30)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()


def execution_records(stack: Stack, tenant: str, execution_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """What the ledger holds of each execution: its Redis record while whole there, else the
    history store's (an archived one leaves a tombstone in Redis)."""
    ids = list(execution_ids)
    pipe = stack.redis.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hgetall(keys.execution(tenant, execution_id))
    whole = {
        i: data for i, data in zip(ids, pipe.execute(), strict=True) if data and data.get("archived") != "1"
    }
    archived = [i for i in ids if i not in whole]
    return {**stack.runtime.history.records(tenant, archived), **whole} if archived else whole


# the demo report's `report` section: its names, and the day figures they read (docs/reporting.md)
REPORT_FIGURES = {
    "entered": "entered",
    "sent": "created",
    "in_calendars": "in_calendars",
    "removed": "removed",
    "clicks": "clicks",
    "subscriptions": "subscribed",
    "unsubscribes": "unsubscribed",
}
TRACKED_CLICKS = 5  # tracked links the demo follows, one of them twice


def follow_tracked_links(stack: Stack, tenant: str, wanted: int) -> int:
    """Follow a tracked link of each of `wanted` events found in the calendars, as a subscriber's
    phone does, then tap the last one again at once (a double tap: redirected, counted once);
    returns the clicks that count (the redirects served, less the double tap)."""
    calendars = requests.get(f"{stack.rokt_url}/__sandbox__/calendars", timeout=30).json()
    marker = f"/t/{tenant}/c/"
    links: list[str] = []
    for events in calendars.values():
        for event in events.values():
            text = f"{event.get('description', '')} {event.get('location', '')}"
            found = sorted(word for word in text.split() if marker in word and word.startswith("http"))
            links.extend(found[:1])  # one link an event: clicks on one event within 10 s count once
    chosen = sorted(links)[:wanted]
    counted = 0
    for link in [*chosen, *chosen[-1:]]:
        answer = requests.get(stack.web_url + link[link.index(marker) :], allow_redirects=False, timeout=10)
        counted += answer.status_code == 302
    return counted - min(1, len(chosen))  # the double tap


def channel_report(
    stack: Stack, console: Console, tenant: str, *, entered: int, subscriptions: int, unsubscribes: int
) -> dict[str, Any]:
    """What the channel did, as the app reports it (`GET /api/performance`, the tenant's
    yesterday and today), beside the demo's own counts: what it sent through execute and the
    calendar page, the Rokt simulator's calendar entries, the redirects it was served."""
    clicks = follow_tracked_links(stack, tenant, TRACKED_CLICKS)
    entries = requests.get(f"{stack.rokt_url}/__sandbox__/entries", timeout=30).json()
    own = {
        "entered": entered,
        "sent": len({entry["eventId"] for entry in entries}),
        "in_calendars": sum(1 for entry in entries if entry["landed"]),
        "removed": sum(1 for entry in entries if entry["removedBySubscriber"]),
        "clicks": clicks,
        "subscriptions": subscriptions,
        "unsubscribes": unsubscribes,
    }
    api = TenantApi(stack.web_url, tenant, apikeys.create_key(stack.redis, tenant, "demo: report"))
    today = date.fromisoformat(performance.local_day(stack.tenant(tenant).reporting_time_zone))
    figures: dict[str, int] = {}

    def agrees() -> bool:
        found = api.call("GET", f"/performance?from={today - timedelta(days=1)}&to={today}")
        figures.update({name: found["totals"][figure] for name, figure in REPORT_FIGURES.items()})
        return figures == own

    with contextlib.suppress(TimeoutError):  # a late click or webhook: the report says so
        stack.wait(agrees, 30, "the day figures", interval=0.3)
    matches = figures == own
    console.print(
        f"Report: {figures['entered']} entered, {figures['sent']} sent, {figures['in_calendars']} in "
        f"calendars, {figures['clicks']} clicks; "
        f"{'equal to' if matches else 'DIFFERENT from'} the demo's own counts"
    )
    return {**figures, "matches_demo": matches, **({} if matches else {"demo": own})}


def calendar_mismatches(
    calendars: Mapping[str, Mapping[str, Mapping[str, Any]]],
    records: Mapping[str, Mapping[str, str]],
    templates: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """What differs between the calendars Rokt shows ({subscriptionId: {eventId: event}}) and what
    the ledger says they hold: each execution whose event Rokt holds, in each of its
    subscriptions, with the title it sent (a corrected one, `updated`: the title its template
    renders now, from `templates`); no event of any other execution; nothing the ledger did not
    send. Empty when they match."""
    expected: dict[str, dict[str, str]] = defaultdict(dict)
    ours: set[str] = set()
    problems: list[str] = []
    for execution_id, record in records.items():
        event_id = record.get("eventId", "")
        ours.add(event_id)
        if record.get("status") not in HELD_STATES:
            continue
        title = json.loads(record.get("event") or "{}").get("title", "")
        if record.get("status") == State.UPDATED:
            ex = Execution.from_hash("", execution_id, dict(record))
            template = templates.get(ex.template_id) if ex is not None else None
            now = render_event(template, ex.args, event_id)["title"] if template and ex else None
            if title != now:
                problems.append(f"{execution_id}: updated, but its record holds {title!r}, not {now!r}")
        for subscription_id in json.loads(record.get("subscriptionIds") or "[]"):
            expected[subscription_id][event_id] = title
    for subscription_id in set(expected) | set(calendars):
        shown = {
            event_id: event.get("title", "") for event_id, event in calendars.get(subscription_id, {}).items()
        }
        wanted = expected.get(subscription_id, {})
        for event_id in sorted(set(shown) | set(wanted)):
            if event_id not in wanted:
                why = (
                    "of an execution whose event Rokt no longer holds"
                    if event_id in ours
                    else "the ledger never sent"
                )
                problems.append(f"{subscription_id} shows {event_id}, {why}")
            elif event_id not in shown:
                problems.append(f"{subscription_id} does not show {event_id}")
            elif shown[event_id] != wanted[event_id]:
                problems.append(
                    f"{subscription_id} shows {event_id} as {shown[event_id]!r}, not {wanted[event_id]!r}"
                )
    return problems


def after_send(
    stack: Stack,
    console: Console,
    tenant: str,
    template: dict[str, Any],
    contacts: list[jbsim.Contact],
    drive_result: jbsim.DriveResult,
    unsubscribed: Iterable[jbsim.Contact],
    timeout: float = 120,
) -> dict[str, Any]:
    """The marketer's after-send part, through the API as a script does: a second, smaller
    activity sends its own event and a few subscribers take the first one out of their calendar;
    then the first template's title is corrected for the events already sent (`applyToSent`)
    and the second template's events are cancelled (with the count confirmed); both jobs are
    waited for, and the calendars compared with the ledger."""
    started = time.monotonic()
    api = TenantApi(
        stack.web_url, tenant, apikeys.create_key(stack.redis, tenant, "demo: events after sending")
    )
    sent = {key: answer["executionId"] for key, answer in drive_result.answers.items()}
    records = execution_records(stack, tenant, sent.values())
    gone = {c.key for c in unsubscribed}  # Rokt refuses a new event for an inactive subscription
    confirmed = [
        c
        for c in contacts
        if c.key in sent
        and c.key not in gone
        and records.get(sent[c.key], {}).get("status") == State.CONFIRMED
    ]
    removing = confirmed[:SUBSCRIBER_REMOVALS]
    chosen = confirmed[SUBSCRIBER_REMOVALS:][-min(SECOND_ACTIVITY_MAX, max(1, len(confirmed) // 20)) :]

    second = api.call("POST", "/templates", upcoming(SECOND_TEMPLATE, date.today()), expect=201)
    activity = configure_activity(
        stack, tenant, second["id"], f"demo-vip-{os.getpid()}-{int(time.time())}", second
    )
    payloads = [jbsim.execute_payload(c, activity, f"demo-vip-journey-{int(time.time())}") for c in chosen]
    second_drive = jbsim.drive(stack.execute_url(tenant), stack.jwt_secret, payloads, duplicate_every=0)
    second_ids = [answer["executionId"] for answer in second_drive.answers.values()]
    for contact in removing:
        record = records[sent[contact.key]]
        subscription_id = json.loads(record.get("subscriptionIds") or "[]")[0]
        requests.post(
            f"{stack.rokt_url}/__sandbox__/remove-event",
            json={"subscriptionId": subscription_id, "eventId": record["eventId"]},
            timeout=10,
        ).raise_for_status()

    removed_ids = [sent[c.key] for c in removing]

    def sent_and_removed() -> bool:
        now = execution_records(stack, tenant, [*second_ids, *removed_ids])
        return all(now.get(i, {}).get("status") == State.CONFIRMED for i in second_ids) and all(
            now.get(i, {}).get("status") == State.REMOVED for i in removed_ids
        )

    stack.wait(sent_and_removed, timeout, "the second activity confirmed and the removals seen", interval=0.3)

    current = api.call("GET", f"/templates/{template['id']}")
    correction = api.call(
        "PUT", f"/templates/{template['id']}", {**current, "title": CORRECTED_TITLE, "applyToSent": True}
    )["job"]
    held = api.call("GET", f"/templates/{second['id']}/sent")["held"]
    cancel = api.call(
        "POST",
        f"/templates/{second['id']}/cancel",
        {"reason": "the VIP hour is called off", "confirmCount": held},
        expect=202,
    )
    console.print(
        f"After sending: {SUBSCRIBER_REMOVALS} subscribers removed the event themselves; correcting the "
        f"title of the events sent (job {correction['id']}) and cancelling {held} events of "
        f"{second['name']!r} (job {cancel['id']}), started by {correction['startedBy']}"
    )
    jobs: dict[str, dict[str, Any]] = {}

    def jobs_done() -> bool:
        for job in (correction, cancel):
            jobs[job["id"]] = api.call("GET", f"/event-jobs/{job['id']}")
        return all(job["state"] == "done" for job in jobs.values())

    stack.wait(jobs_done, timeout, "the correction and the cancel jobs", interval=0.3)
    history_box = stack.runtime.outbox(tenant, OutboxKind.HISTORY)

    def settled() -> bool:
        rokt_state = stack.rokt_state()
        return not (
            rokt_state["pending_calendar_changes"] or rokt_state["webhooks_pending"] or history_box.backlog()
        )

    stack.wait(settled, timeout, "the calendars' changes and their webhooks", interval=0.3)
    records = execution_records(stack, tenant, [*sent.values(), *second_ids])
    calendars = requests.get(f"{stack.rokt_url}/__sandbox__/calendars", timeout=30).json()
    corrected = api.call("GET", f"/templates/{template['id']}")
    mismatches = calendar_mismatches(calendars, records, {template["id"]: corrected})
    for problem in mismatches[:10]:
        console.print(f"[red]calendar mismatch[/red]: {problem}")
    done, cancelled = jobs[correction["id"]], jobs[cancel["id"]]
    console.print(
        f"Correction: {done['outcomes']['updated']} events updated, "
        f"{done['outcomes']['unchanged']} unchanged, skipped {done['skipped'] or 'none'}; "
        f"cancel: {cancelled['outcomes']['cancelled']} events deleted; "
        f"calendars {'match' if not mismatches else 'DIFFER from'} the ledger"
    )
    return {
        "corrected": done["outcomes"]["updated"],
        "unchanged": done["outcomes"]["unchanged"],
        "skipped": sum(done["skipped"].values()),
        "cancelled": cancelled["outcomes"]["cancelled"],
        "failed": done["failed"] + cancelled["failed"],
        "removed_by_subscribers": sum(1 for r in records.values() if r.get("status") == State.REMOVED),
        "second_activity_contacts": len(second_ids),
        "calendars_match": not mismatches,
        "elapsed_s": round(time.monotonic() - started, 2),
    }
