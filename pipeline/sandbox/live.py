"""`rokt-sfmc sandbox up`: the whole stack on loopback for a person to click through, until Ctrl-C.

One `Stack` (stack.py) as `rokt-sfmc demo` runs it: a bundled Redis unless REDIS_URL answers, the
simulators, the web app under gunicorn, worker-render (prefork) and worker-rokt (threads), beat,
Flower and the exporter, with the app's sign-in pointed at the SFMC simulator. Beside it, in this
process, a host server on `http://localhost:<port>` (another site than the app's 127.0.0.1, as
Marketing Cloud is) serving the pages of `hosts/`: `/mc` frames App Settings, `/jb` plays Journey
Builder around the activity and keeps what Done saves in the state directory, where
`rokt-sfmc jb-simulate` finds it. A follower thread points the Rokt simulator's webhooks at the
tenant App Settings' sign-in created, so confirmations ("Added to calendar") arrive by themselves.

The state directory (default `.sandbox`, or ROKT_SFMC_SANDBOX_DIR) holds `env` (the settings of
this run, for commands in another shell), `activity.json` (the last saved activity),
`schema.json` (the entry source the JB page answers with) and `processes.json` (the children's pids).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from flask import Flask, Response, jsonify, redirect, request, send_file

from pipeline.infra import keys
from pipeline.infra.redis_clients import redis_client, redis_location
from pipeline.sandbox import SANDBOX_EID, jbsim, processes, sandbox_app_env
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.hosts import HOSTS
from pipeline.sandbox.monitoring import start_exporter
from pipeline.sandbox.stack import Stack
from pipeline.settings import Tenant
from pipeline.web.activity import STATIC_ROOT

STATE_DIR_ENV = "ROKT_SFMC_SANDBOX_DIR"
DEFAULT_STATE_DIR = ".sandbox"
ENV_FILE = "env"
ACTIVITY_FILE = "activity.json"
SCHEMA_FILE = "schema.json"
PROCESSES_FILE = "processes.json"
FLOWER_USER = "sandbox"
READY_LINE = "Ready: Ctrl-C stops everything."
# Journey Builder's hosts, answered to the activity's requestEndpoints (docs/vendors/sfmc-app.md §A.4)
ENDPOINTS = {
    "restHost": "mc-sandbox.rest.marketingcloudapis.com",
    "fuelapiRestHost": "https://mc-sandbox.rest.marketingcloudapis.com/",
    "authTSSD": "https://mc-sandbox.auth.marketingcloudapis.com/",
    "stackKey": "S0",
}
_EXECUTE_PATH = re.compile(r"/t/([^/]+)/activity/execute$")


def say(text: str, *, error: bool = False) -> None:
    """A line for the person at the terminal, at once (the tests read it from a pipe too)."""
    stream = sys.stderr if error else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def state_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def write_private(path: Path, text: str) -> None:
    """Readable by its owner only: the env file carries the run's Redis URL and SECRET_KEY."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: narrow it first
    with os.fdopen(fd, "w") as out:
        out.write(text)


def env_text(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (as `env_text` writes them); blank lines and # comments skipped."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value
    return values


def activity_tenant(activity: Mapping[str, Any]) -> tuple[str, str]:
    """The tenant and execute URL of a saved activity: JB posts executes to the URL config.json
    declared (`arguments.execute.url`, `/t/<tenant>/activity/execute`)."""
    url = str(((activity.get("arguments") or {}).get("execute") or {}).get("url") or "")
    found = _EXECUTE_PATH.search(url)
    if not found:
        raise ValueError("the activity has no execute URL of ours (arguments.execute.url)")
    return found.group(1), url


def signed_in_tenant(stack: Stack) -> Tenant | None:
    """The tenant the SFMC simulator's account signs in as (App Settings creates it)."""
    return stack.runtime.registry.by_eid(SANDBOX_EID)


class HostServer:
    """Marketing Cloud's and Journey Builder's pages around our frames, on their own origin."""

    def __init__(self, stack: Stack | None, state: Path, port: int = 0) -> None:
        """`port` 0 binds a free one (`port` then says which); `stack` may be given later."""
        self.stack, self.state = stack, state
        app = Flask(__name__)
        app.add_url_rule("/", "index", self.index)
        app.add_url_rule("/mc", "mc", self.mc)
        app.add_url_rule("/jb", "jb", self.jb)
        app.add_url_rule("/jb.js", "jb_js", lambda: send_file(HOSTS / "jb.js"))
        app.add_url_rule(
            "/postmonger.js", "postmonger", lambda: send_file(STATIC_ROOT / "js" / "postmonger.js")
        )
        app.add_url_rule("/jb/context", "context", self.context)
        app.add_url_rule("/jb/activity", "save", self.save, methods=["POST"])
        app.add_url_rule("/jb/schema", "schema", self.save_schema, methods=["POST"])
        self.app = app
        # bound now, before the stack picks its own free ports: bound only at start, the port could
        # be handed to the stack's web server meanwhile (seen in CI: both on one port)
        self.server: ServerThread | None = ServerThread(app, "127.0.0.1", port)
        self.port = self.server.server.port
        self.origin = f"http://localhost:{self.port}"

    def start(self) -> HostServer:
        assert self.server is not None, "a stopped host server does not start again"
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is None:
            return
        if self.server.thread.is_alive():
            self.server.stop()
        else:  # never served: its socket only
            self.server.server.server_close()
        self.server = None

    # -- pages ---------------------------------------------------------------------------
    def index(self) -> Response:
        links = (
            '<li><a href="/mc">Marketing Cloud: App Settings</a></li>'
            '<li><a href="/jb">Journey Builder: the activity</a></li>'
        )
        return Response(
            f"<!doctype html><title>rokt-sfmc sandbox</title><ul>{links}</ul>", mimetype="text/html"
        )

    def mc(self):
        if not request.args.get("src"):
            return redirect(f"/mc?src={self.stack.web_url}/app/login")
        return send_file(HOSTS / "mc.html")

    def jb(self) -> Response:
        page = (
            (HOSTS / "jb.html").read_text(encoding="utf-8").replace("<body>", '<body data-sandbox="live">', 1)
        )
        return Response(page, mimetype="text/html")

    # -- what the JB page asks -----------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        path = self.state / SCHEMA_FILE
        return json.loads(path.read_text()) if path.exists() else jbsim.entry_schema()

    def saved(self, tenant: str) -> dict[str, Any] | None:
        """The last activity saved for `tenant` (None when the last one was another tenant's)."""
        path = self.state / ACTIVITY_FILE
        if not path.exists():
            return None
        activity = json.loads(path.read_text())
        try:
            return activity if activity_tenant(activity)[0] == tenant else None
        except ValueError:
            return None

    def context(self):
        """What JB hands the activity: the tenant's saved activity (or a fresh drop on the canvas
        with `new`), a fuel2token the SFMC simulator knows for its MID, endpoints and the schema."""
        name = request.args.get("tenant") or ""
        tenant = self.stack.runtime.registry.get(name) if name else signed_in_tenant(self.stack)
        if tenant is None:
            return jsonify(error=f"No tenant yet: sign in to App Settings first ({self.origin}/mc)."), 409
        web = self.stack.web_url
        saved = None if request.args.get("new") else self.saved(tenant.name)
        activity = saved
        if activity is None:
            config = requests.get(f"{web}/t/{tenant.name}/activity/config.json", timeout=10)
            if config.status_code != 200:
                return jsonify(error=f"config.json of {tenant.name}: HTTP {config.status_code}"), 502
            activity = jbsim.journey_activity(config.json(), str(uuid.uuid4()))
        token = "jb-" + secrets.token_urlsafe(18)
        registered = requests.post(
            f"{self.stack.sfmc_url}/__sandbox__/jb-tokens",
            json={"token": token, "mid": tenant.sfmc_account_id},
            timeout=10,
        )
        registered.raise_for_status()
        return jsonify(
            tenant=tenant.name,
            appOrigin=web,
            activityBase=f"{web}/t/{tenant.name}/activity/",
            activity=activity,
            saved=saved is not None,
            tokens={
                "token": "sandbox-legacy-token",
                "fuel2token": token,
                "expires": int(time.time() * 1000) + 3_600_000,
                "stackKey": "S0",
            },
            endpoints=ENDPOINTS,
            schema=self.schema(),
            triggerEventDefinition=None,
            interaction=None,
        )

    def save(self):
        """Done: the activity as the UI sent it with updateActivity, kept for jb-simulate."""
        activity = request.get_json(silent=True)
        if not isinstance(activity, dict) or not activity.get("id"):
            return jsonify(error="an activity object with an id"), 400
        try:
            activity_tenant(activity)
        except ValueError as exc:
            return jsonify(error=str(exc)), 400
        text = json.dumps(activity, indent=2, ensure_ascii=False) + "\n"
        path = self.state / ACTIVITY_FILE
        path.write_text(text, encoding="utf-8")
        kept = self.state / "activities" / (re.sub(r"[^A-Za-z0-9_.-]", "_", str(activity["id"])) + ".json")
        kept.parent.mkdir(exist_ok=True)
        kept.write_text(text, encoding="utf-8")
        say(f"Activity {activity.get('name') or activity['id']!r} saved to {path}")
        return jsonify(path=str(path.resolve()))

    def save_schema(self):
        body = request.get_json(silent=True)
        items = body.get("schema") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("name"), str)
            for i in items
        ):
            return jsonify(error='{"schema": [{"key": "Event.<key>.<Field>", "name": "<Field>", ...}]}'), 400
        (self.state / SCHEMA_FILE).write_text(json.dumps(body, indent=2) + "\n")
        return jsonify(ok=True)


class WebhookFollower:
    """Points the Rokt simulator's webhooks at the signed-in tenant's receiver, with its current
    secret (or path token in path mode), and follows rotations in App Settings. A tenant without
    a webhook secret gets one, as an admin rotating it into Rokt's management centre would."""

    def __init__(self, stack: Stack, interval: float = 1.0) -> None:
        self.stack, self.interval = stack, interval
        self._stop = threading.Event()
        self._target: tuple[str, str, str] | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-follower", daemon=True)

    def start(self) -> WebhookFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.follow()
            except Exception as exc:  # Redis or a simulator busy: try again at the next tick
                say(f"webhooks: not pointed yet ({type(exc).__name__})", error=True)

    def follow(self) -> None:
        tenant = signed_in_tenant(self.stack)
        if tenant is None:
            return
        if not tenant.rokt_webhook_secret:
            self.stack.runtime.registry.rotate_webhook_secret(tenant.name)
            return  # seen by this process's registry within TENANT_REFRESH_SECONDS
        path_mode = tenant.rokt_webhook_path_mode and bool(tenant.rokt_webhook_path_token)
        secret = tenant.rokt_webhook_path_token if path_mode else tenant.rokt_webhook_secret
        target = (tenant.name, "path" if path_mode else "header", secret)
        if target != self._target:
            self.stack.webhooks_to(tenant.name, secret=secret, mode=target[1])
            self._target = target
            say(f"Rokt simulator webhooks -> tenant {tenant.name} ({target[1]} mode)")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM unwind the stack once; a second signal during the cleanup is ignored."""

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt), signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


SANDBOX_TENANTS = frozenset({f"sfmc-{SANDBOX_EID}", "default"})


def foreign_tenants(redis_url: str | None) -> list[str]:
    """Tenants of another deployment in the Redis at `redis_url`: the sandbox runs workers with
    SANDBOX=1 and the published secrets, which must never take another deployment's queues."""
    if not redis_url or not processes.redis_reachable(redis_url):
        return []  # nothing there, or the bundled Redis is used instead
    client = redis_client(redis_url)
    try:
        return sorted(set(client.hkeys(keys.registry_tenants())) - SANDBOX_TENANTS)
    finally:
        client.close()


def run_up(state: Path, *, render_concurrency: int = 2, rokt_threads: int = 16) -> int:
    """Start everything, print the URLs, supervise until Ctrl-C or SIGTERM, stop everything."""
    foreign = foreign_tenants(os.environ.get("REDIS_URL"))
    if foreign:
        say(
            f"error: REDIS_URL holds tenants of another deployment ({', '.join(foreign[:5])}); the sandbox "
            "runs with published secrets: give it a Redis of its own, or unset REDIS_URL for the bundled one",
            error=True,
        )
        return 2
    state.mkdir(parents=True, exist_ok=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the host pages' request log is noise here
    run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-sandbox-"))
    host = HostServer(None, state)  # its port bound first: the stack's free ports cannot take it
    origins = {"MC_ALLOWED_ORIGINS": host.origin, "JB_ALLOWED_ORIGINS": host.origin}
    # Flower's API answers nobody without basic auth; the password is in the env file, never printed
    flower = {processes.FLOWER_AUTH_ENV: f"{FLOWER_USER}:{secrets.token_urlsafe(12)}"}
    stack = Stack(
        run_dir,
        {},  # no pinned tenant: the brand signs in to App Settings
        reuse_redis_url=os.environ.get("REDIS_URL"),
        web="gunicorn",
        env={**origins, **flower},
        worker_name="sandbox-worker",
    )
    host.stack = stack
    follower = WebhookFollower(stack)
    say(f"Starting the sandbox (logs in {run_dir})...")
    try:
        with _interruptible(), stack:
            exporter, exporter_url = start_exporter(run_dir, stack.env)
            if stack.redis_bundled:  # an earlier run's activity names templates gone with its Redis
                (state / ACTIVITY_FILE).unlink(missing_ok=True)
            try:
                _serve(
                    stack,
                    state,
                    host,
                    follower,
                    exporter,
                    exporter_url,
                    {**origins, **flower},
                    render_concurrency,
                    rokt_threads,
                )
            finally:
                follower.stop()
                host.stop()
                exporter.stop()
                for name in (ENV_FILE, PROCESSES_FILE):  # true only while this run lives
                    (state / name).unlink(missing_ok=True)
    except KeyboardInterrupt:
        say("Stopped.")
        return 0
    except (RuntimeError, TimeoutError) as exc:  # a process that would not start, or died
        say(f"error: {exc}", error=True)
        return 1
    finally:
        host.stop()  # its port too, when the stack never started


def _serve(
    stack: Stack,
    state: Path,
    host: HostServer,
    follower: WebhookFollower,
    exporter: processes.Child,
    exporter_url: str,
    own_env: dict[str, str],
    render_concurrency: int,
    rokt_threads: int,
) -> None:
    """The rest of the stack, the state files and the URLs; then supervise until interrupted."""
    started = stack.start_split_workers(
        render_concurrency=render_concurrency, rokt_concurrency=rokt_threads, wait=False
    )
    stack.start_beat()
    flower_url = stack.start_flower()
    host.start()
    settings = {
        "REDIS_URL": stack.redis_url,
        "PUBLIC_BASE_URL": stack.web_url,
        **sandbox_app_env(stack.rokt_url, stack.sfmc_url),
        **own_env,
    }
    write_private(state / ENV_FILE, env_text(settings))
    for worker in started:
        stack.wait_worker_ready(worker)
    pids = {child.name: child.pid for child in [*stack.children(), exporter]}
    (state / PROCESSES_FILE).write_text(json.dumps(pids, indent=2) + "\n")
    follower.start()
    redis_note = "bundled" if stack.redis_bundled else "REDIS_URL"
    lines = [
        ("Marketing Cloud (App Settings)", f"{host.origin}/mc"),
        ("Journey Builder (the activity)", f"{host.origin}/jb"),
        ("web app", stack.web_url),
        (
            "Flower",
            f"{flower_url} (user {FLOWER_USER}, password: {processes.FLOWER_AUTH_ENV} in the env file)",
        ),
        ("exporter", f"{exporter_url}/metrics"),
        ("Rokt simulator", f"{stack.rokt_url}/__sandbox__/state"),
        ("SFMC simulator", f"{stack.sfmc_url}/__sandbox__/state"),
        ("Redis", f"{redis_location(stack.redis_url)} ({redis_note})"),
        ("settings for other shells", str((state / ENV_FILE).resolve())),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        say(f"{name.ljust(width)}  {value}")
    say(READY_LINE)
    while True:
        time.sleep(1)
        stack.check_alive(supervise=True)  # a dead worker or beat restarts; web or simulators: exit
