"""The whole stack on loopback, as child processes: a Redis, the simulators, the web app, Celery
workers, beat and Flower, with one TENANTS_FILE. `rokt-sfmc demo`, `make bench` and the integration
tests all run on it.

Starting it also points this process's settings at it (REDIS_URL, TENANTS_FILE, ...), so the
caller can claim and enqueue executions, reconcile and replay the way the service does;
stop() puts the environment back.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

import requests
from celery.utils.nodenames import host_format

from pipeline.infra import dispatch
from pipeline.infra.queues import RENDER_WORKER_QUEUES, ROKT_WORKER_QUEUES
from pipeline.infra.redis_clients import liveness_client, redis_client
from pipeline.journeys import intake
from pipeline.journeys.executions import new_execution
from pipeline.journeys.templates import create_template
from pipeline.sandbox import jbsim, processes, sandbox_app_env, sandbox_env
from pipeline.sandbox.common import ServerThread
from pipeline.settings import Tenant, get_settings, load_settings
from pipeline.tenancy import handles as runtime_module
from pipeline.tenancy.handles import Runtime
from schemas.jb_execute import ExecuteSchema

_TENANT_FIELDS = {f.name: f for f in fields(Tenant) if f.name != "name"}
_EXECUTE_SCHEMA = ExecuteSchema()


def tenant_default(name: str) -> Any:
    """The default of a Tenant field (settings.py writes each default once)."""
    return _TENANT_FIELDS[name].default


DEFAULT_ROKT_RATE: float = tenant_default("rokt_rate_limit")
# threads of a worker-rokt instance (compose's -c): Rokt calls in flight at once per instance
ROKT_THREADS = 64


def tenants_toml(values: Mapping[str, str], tenants: Mapping[str, Mapping[str, Any]]) -> str:
    """A TENANTS_FILE. Every tenant gets the sandbox settings `values` (env-var names, as
    `sandbox_env` gives them), then its own entries (Tenant field names: rate limits, account
    code, data-extension keys, ...); what neither sets takes the Tenant field default."""
    lines = []
    for name, own in tenants.items():
        unknown = sorted(set(own) - set(_TENANT_FIELDS))
        if unknown:
            raise ValueError(f"tenant {name!r}: no Tenant field {', '.join(unknown)}")
        table = {key.lower(): value for key, value in values.items()} | dict(own)
        lines.append(f"[tenants.{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in sorted(table.items()))
    return "\n".join(lines) + "\n"


def reset_process_caches(*, read_settings: bool = True) -> None:
    """Settings, Redis clients and the producer app are cached per process; start afresh.

    Without `read_settings` (a stack stopping: the environment is the caller's again, which may
    hold no complete settings) celeryconfig is only dropped, to be read at its next import."""
    get_settings.cache_clear()
    redis_client.cache_clear()
    liveness_client.cache_clear()
    dispatch._producer.cache_clear()
    runtime_module._runtime = None
    if not read_settings:
        sys.modules.pop("celeryconfig", None)
        return
    import celeryconfig  # reads the settings when first imported: only once the env is ours

    importlib.reload(celeryconfig)


# what each running Stack found in this process's environment before it set its own values
_CHANGED_ENVIRON: list[dict[str, str | None]] = []


def environ_outside_stacks() -> dict[str, str]:
    """This process's environment as it was before the Stacks still running here set theirs: for a
    child that is not part of them (a demo of its own, started by a test beside a running stack)."""
    environ = dict(os.environ)
    for saved in reversed(_CHANGED_ENVIRON):
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
    return environ


class Stack:
    """The processes of one run and the helpers every caller needs.

    `tenants`: tenant name -> its own TENANTS_FILE entries (see `tenants_toml`); none: no
    TENANTS_FILE, every tenant comes from the registry (signed up as an admin would).
    `reuse_redis_url`: a Redis to use when it answers (the demo honours REDIS_URL); otherwise,
    and by default, a bundled redis-server of our own on a free port.
    `web`: "gunicorn" (as deployed), "thread" (in this process, so the app logs here) or None.
    `env`: more variables for every process of the stack, this one included.
    `redis_tls`: the bundled Redis speaks TLS only (a throw-away CA and certificates in the run
    dir, a client certificate required; RedisTLSUnavailable without a TLS-capable redis-server)
    and `redis_password` (default: a random one with TLS) is required: every process gets
    `rediss://:<password>@127.0.0.1:<port>/0?ssl_...` as REDIS_URL.
    `redis_options`: more redis-server options for the bundled Redis (e.g. `--appendfsync always`).
    `broker_url`: the Celery broker of every process (BROKER_URL, e.g. a RabbitMQ vhost); by
    default the broker is the stack's Redis.
    """

    def __init__(
        self,
        run_dir: Path,
        tenants: Mapping[str, Mapping[str, Any]],
        *,
        reuse_redis_url: str | None = None,
        web: Literal["gunicorn", "thread"] | None = None,
        env: Mapping[str, str] | None = None,
        worker_name: str = "worker",
        worker_concurrency: int = 4,
        redis_tls: bool = False,
        redis_password: str | None = None,
        redis_options: Sequence[str] = (),
        broker_url: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.tenants = tenants
        self.worker_name = worker_name
        self.worker_concurrency = worker_concurrency
        self.workers: list[processes.Child] = []
        self.restarts = 0  # processes restarted by check_alive(supervise=True)
        self.redis_bundled = False
        self.web_url = ""
        self._reuse_redis_url = reuse_redis_url
        self._web_mode = web
        self._extra_env = dict(env or {})
        self._redis_child: processes.Child | None = None
        self._redis_port = 0
        self.redis_tls: processes.RedisTLS | None = None
        self._want_redis_tls = redis_tls
        self.redis_password = redis_password or (secrets.token_urlsafe(24) if redis_tls else None)
        self.redis_options = tuple(redis_options)
        self.broker_url = broker_url
        self._sandbox: processes.Child | None = None
        self._web: processes.Child | None = None
        self._web_thread: ServerThread | None = None
        self._beat: processes.Child | None = None
        self._flower: processes.Child | None = None
        self._saved_environ: dict[str, str | None] = {}
        self._generation = 0
        self._worker_specs: dict[str, tuple[int, tuple[str, ...], str, str]] = {}
        self._lock = threading.RLock()  # the chaos thread replaces workers beside the watcher

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Redis, the simulators, the tenants file, this process's settings, the web app;
        workers and beat are the caller's choice (start_workers, start_beat)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._reuse_redis_url and processes.redis_reachable(self._reuse_redis_url):
            self.redis_url = self._reuse_redis_url
        else:
            self._redis_port = processes.free_port()
            if self._want_redis_tls:
                self.redis_tls = processes.make_tls_files(self.run_dir / "redis-tls")
            self._redis_child, self.redis_url = self._start_redis()
            self.redis_bundled = True
        self._sandbox, self.rokt_url, self.sfmc_url = processes.start_sandbox(self.run_dir)
        self.values = sandbox_env(self.rokt_url, self.sfmc_url)
        ours = {"REDIS_URL": self.redis_url, **sandbox_app_env(self.rokt_url, self.sfmc_url)}
        ours["HISTORY_URL"] = f"sqlite:///{self.run_dir / 'history.sqlite3'}"  # env may say PostgreSQL
        if self.broker_url:
            ours["BROKER_URL"] = self.broker_url
        if self.tenants:  # pinned tenants; without them every tenant signs up (the registry)
            self.tenants_file = self.run_dir / "tenants.toml"
            self.tenants_file.write_text(tenants_toml(self.values, self.tenants))
            ours["TENANTS_FILE"] = str(self.tenants_file)
        web_port = processes.free_port() if self._web_mode else 0
        if web_port:
            self.web_url = f"http://127.0.0.1:{web_port}"
            ours["PUBLIC_BASE_URL"] = self.web_url
        ours.update(self._extra_env)
        self.env = {**os.environ, **ours}
        self._saved_environ = {name: os.environ.get(name) for name in ours}
        os.environ.update(ours)
        _CHANGED_ENVIRON.append(self._saved_environ)
        reset_process_caches()
        self.redis = redis_client(self.redis_url)
        self.runtime = Runtime(load_settings(self.env), self.redis)
        if self._web_mode == "gunicorn":
            self._web = processes.start_web(self.run_dir, self.env, web_port)
        elif self._web_mode == "thread":
            from pipeline.web import create_app  # Flask and the app only where it runs in-process

            self._web_thread = ServerThread(create_app(), "127.0.0.1", web_port).start()

    def stop(self) -> None:
        """Every process, the last started first; then this process's environment as it was.
        Safe to call more than once."""
        self.stop_workers()
        for child in (self._flower, self._beat, self._web, self._sandbox, self._redis_child):
            if child is not None:
                child.stop()
        self._flower = self._beat = self._web = self._sandbox = self._redis_child = None
        if self._web_thread is not None:
            self._web_thread.stop()
            self._web_thread = None
        if self._saved_environ:
            _CHANGED_ENVIRON[:] = [saved for saved in _CHANGED_ENVIRON if saved is not self._saved_environ]
            for name, value in self._saved_environ.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_environ = {}
            reset_process_caches(read_settings=False)

    # -- workers, beat, Redis ------------------------------------------------------------
    def start_workers(
        self,
        count: int = 1,
        concurrency: int | None = None,
        *,
        app: str = "tasks",
        queues: Sequence[str] = (),
        wait: bool = True,
        pool: str = "prefork",
    ) -> list[processes.Child]:
        """`count` worker instances (as separate containers would be), each -c `concurrency`
        (default: the stack's) on Celery's `pool`; with `wait`, returns once each has logged
        that it is ready."""
        started = []
        with self._lock:
            for _ in range(count):
                self._generation += 1
                name = f"{self.worker_name}-{self._generation}"
                concurrency_ = concurrency or self.worker_concurrency
                started.append(self._start_worker(name, concurrency_, queues, app, pool))
            self.workers.extend(started)
        if wait:
            for worker in started:
                self.wait_worker_ready(worker)
        return started

    def start_split_workers(
        self,
        render: int = 1,
        rokt: int = 1,
        *,
        render_concurrency: int | None = None,
        rokt_concurrency: int = ROKT_THREADS,
        wait: bool = True,
    ) -> list[processes.Child]:
        """The workers as compose runs them: `render` prefork instances for every queue but the
        Rokt stage's (worker-render) and `rokt` threads-pool instances for it (worker-rokt)."""
        started = self.start_workers(render, render_concurrency, queues=RENDER_WORKER_QUEUES, wait=False)
        started += self.start_workers(
            rokt, rokt_concurrency, queues=ROKT_WORKER_QUEUES, pool="threads", wait=False
        )
        if wait:
            for worker in started:
                self.wait_worker_ready(worker)
        return started

    def workers_serving(self, queue: str) -> list[processes.Child]:
        """The running workers that consume the shared `queue` (a worker without -Q serves all)."""
        with self._lock:
            return [w for w in self.workers if queue in (self._worker_specs[w.name][1] or (queue,))]

    def _start_worker(
        self, name: str, concurrency: int, queues: Sequence[str], app: str, pool: str = "prefork"
    ) -> processes.Child:
        child = processes.start_worker(self.run_dir, self.env, name, concurrency, queues, app, pool)
        self._worker_specs[child.name] = (concurrency, tuple(queues), app, pool)
        return child

    def _replace_worker(self, dead: processes.Child) -> processes.Child:
        """A new process under the dead one's name (and so its hostname, `<name>@<host>`), as
        a restarted container keeps its `--hostname`: Flower and `inspect` see the same worker."""
        spec = self._worker_specs.get(dead.name, (self.worker_concurrency, (), "tasks", "prefork"))
        child = self._start_worker(dead.name, *spec)
        self.workers.append(child)
        return child

    @staticmethod
    def wait_worker_ready(worker: processes.Child, timeout: float = 60) -> None:
        processes.wait_until(lambda: " ready." in worker.output(), timeout, worker.name, worker)

    def worker_hostnames(self) -> dict[str, str]:
        """Worker name -> its Celery hostname (`-n <name>@%h`), for the running workers."""
        with self._lock:
            return {worker.name: host_format(f"{worker.name}@%h") for worker in self.workers}

    def stop_workers(self) -> None:
        with self._lock:
            workers, self.workers = self.workers, []
        for worker in reversed(workers):
            worker.stop(timeout=10)

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    def kill_and_replace_worker(self) -> None:
        """SIGKILL a whole worker (main process and pool), the oldest, and start another."""
        with self._lock:
            if self.workers:
                victim = self.workers.pop(0)
                victim.kill()
                victim.stop(timeout=5)
                self._replace_worker(victim)
            else:
                self.start_workers(wait=False)

    def start_beat(self) -> None:
        self._beat = processes.start_beat(self.run_dir, self.env)

    def restart_redis(
        self, down_seconds: float = 0, ping_timeout: float = 60, *, crash: bool = False
    ) -> float | None:
        """Stop the bundled Redis (SIGTERM: it fsyncs its AOF; with `crash`, SIGKILL: it loads
        whatever of its AOF had reached the kernel), wait `down_seconds`, start it again
        on its port. With workers running, then waits (up to `ping_timeout`) until every worker
        that was running answers `inspect ping` again and returns how long that took after Redis
        was back (`ping_timeout` when some never did: the caller decides whether that fails);
        None without a bundled Redis or without workers."""
        if self._redis_child is None:
            return None
        expected = self.worker_hostnames()
        if crash:
            self._redis_child.kill(signal.SIGKILL)
        self._redis_child.stop()
        time.sleep(down_seconds)
        self._redis_child, _url = self._start_redis()
        if not expected:
            return None
        return self.wait_workers_answer_ping(expected, ping_timeout)

    def _start_redis(self) -> tuple[processes.Child, str]:
        return processes.start_redis(
            self.run_dir,
            self._redis_port,
            password=self.redis_password,
            tls=self.redis_tls,
            extra_options=self.redis_options,
        )

    def ping_workers(self, timeout: float = 1.0) -> set[str]:
        """The hostnames of the workers that answer `inspect ping` within `timeout` (none while
        Redis is away)."""
        try:
            replies = dispatch.producer().control.ping(timeout=timeout)
        except Exception:  # Redis restarting: nobody answers yet
            time.sleep(timeout)
            return set()
        return {name for reply in replies or [] for name in reply}

    def wait_workers_answer_ping(
        self, expected: Mapping[str, str] | None = None, timeout: float = 60
    ) -> float:
        """Seconds until every worker (`expected`: worker name -> hostname; default all running)
        has answered a ping. A worker that died meanwhile counts only once its replacement (same
        name, same hostname) answers. Returns `timeout` if some never answered."""
        expected = self.worker_hostnames() if expected is None else expected
        started = time.monotonic()
        answered: set[str] = set()
        while time.monotonic() - started < timeout:
            answered |= self.ping_workers()
            if set(expected.values()) <= answered:
                return time.monotonic() - started
        return timeout

    def start_flower(self, port: int | None = None) -> str:
        """Flower (`celery flower`, with `FLOWER_BASIC_AUTH` from the stack's env when given);
        returns its base URL."""
        port = port or processes.free_port()
        self._flower = processes.start_flower(self.run_dir, self.env, port)
        return f"http://127.0.0.1:{port}"

    @property
    def redis_process(self) -> processes.Child | None:
        """The bundled redis-server (None when the stack reuses another Redis)."""
        return self._redis_child

    @property
    def flower_process(self) -> processes.Child | None:
        return self._flower

    def children(self) -> list[processes.Child]:
        """Every child process running now (Redis, simulators, web, workers, beat, Flower)."""
        with self._lock:
            workers = list(self.workers)
        others = (self._redis_child, self._sandbox, self._web, self._beat, self._flower)
        return [child for child in (*others, *workers) if child is not None and child.alive()]

    @property
    def flower_auth(self) -> tuple[str, str] | None:
        return processes.flower_auth(self.env)

    def check_alive(self, supervise: bool = False) -> None:
        """A dead worker, beat, web app or sandbox is an error; with `supervise`, a dead worker
        or beat is restarted as a supervisor would (compose's `restart: unless-stopped`): a
        worker can die on a Redis restart."""
        with self._lock:
            for worker in list(self.workers):
                if not worker.alive():
                    if not supervise:
                        raise RuntimeError(f"{worker.name} died:\n{worker.tail()}")
                    self.workers.remove(worker)
                    self.restarts += 1
                    self._replace_worker(worker)
        if self._beat is not None and not self._beat.alive():
            if not supervise:
                raise RuntimeError(f"beat died:\n{self._beat.tail()}")
            self.restarts += 1
            self.start_beat()
        for child in (self._web, self._sandbox):
            if child is not None and not child.alive():
                raise RuntimeError(f"{child.name} died:\n{child.tail()}")

    def wait(
        self,
        check: Callable[[], bool],
        timeout: float,
        what: str,
        *,
        interval: float = 0.3,
        supervise: bool = False,
    ) -> float:
        """Poll until check() is true, every process still alive (or, with `supervise`,
        restarted); returns the monotonic time it became true."""
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return time.monotonic()
            self.check_alive(supervise)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
            time.sleep(interval)

    # -- the simulators ------------------------------------------------------------------
    def rokt_state(self) -> dict[str, Any]:
        return requests.get(f"{self.rokt_url}/__sandbox__/state", timeout=30).json()

    def sfmc_state(self) -> dict[str, Any]:
        return requests.get(f"{self.sfmc_url}/__sandbox__/state", timeout=30).json()

    def rows(self, tenant: str, de: str | None = None) -> list[dict[str, Any]]:
        """The rows of a data extension at the SFMC simulator (default: the tenant's status DE)."""
        response = requests.get(
            f"{self.sfmc_url}/__sandbox__/rows", params={"de": de or self.status_de_key(tenant)}, timeout=30
        )
        return response.json()["rows"]

    def faults(self, simulator: Literal["rokt", "sfmc"], **values: float) -> None:
        url = self.rokt_url if simulator == "rokt" else self.sfmc_url
        requests.post(f"{url}/__sandbox__/faults", json=values, timeout=5).raise_for_status()

    def reset_simulators(self) -> None:
        """Both simulators empty, without faults."""
        for url in (self.rokt_url, self.sfmc_url):
            requests.post(f"{url}/__sandbox__/reset", timeout=30).raise_for_status()

    def seed_sfmc_contacts(self, keys: list[str]) -> None:
        """Contacts that exist in SFMC already (a subscription of theirs is `matched`)."""
        requests.post(
            f"{self.sfmc_url}/__sandbox__/contacts", json={"contactKeys": keys}, timeout=30
        ).raise_for_status()

    def webhooks_to(self, tenant: str, secret: str | None = None, **settings: Any) -> None:
        """Point the Rokt simulator's webhook delivery at our receiver for this tenant, signed with
        `secret` (default: the sandbox's, which pinned tenants have); with `mode="path"` the URL
        carries `secret` as its path token (default: the sandbox's path token, not the HMAC key)."""
        default = (
            self.values["ROKT_WEBHOOK_PATH_TOKEN"] if settings.get("mode") == "path" else self.webhook_secret
        )
        body = {
            "url": f"{self.web_url}/t/{tenant}/webhooks/rokt",
            "secret": secret or default,
            **settings,
        }
        requests.post(f"{self.rokt_url}/__sandbox__/webhooks", json=body, timeout=5).raise_for_status()

    # -- tenants and executions ----------------------------------------------------------
    @property
    def jwt_secret(self) -> str:
        return self.values["JB_JWT_SECRET"]

    @property
    def webhook_secret(self) -> str:
        return self.values["ROKT_WEBHOOK_SECRET"]

    def tenant(self, name: str) -> Tenant:
        return self.runtime.tenant(name)

    def add_tenant(self, name: str, **entries: Any) -> Tenant:
        """A brand added at run time, as App Settings or `rokt-sfmc tenants add` would: the
        sandbox's credentials, a Rokt account and data extensions of its own (`Status_<name>`,
        `Subs_<name>`) unless `entries` say otherwise. Returns once the web app serves it (within
        TENANT_REFRESH_SECONDS); an existing one is left as it is."""
        if self.runtime.registry.get(name) is None:
            values = {key.lower(): value for key, value in self.values.items()}
            own = {
                "rokt_account_code": name,
                "sfmc_status_de_key": f"Status_{name}",
                "sfmc_subscription_de_key": f"Subs_{name}",
            }
            self.runtime.registry.add(name, {**values, **own, **entries})
        if self.web_url:
            config = f"{self.web_url}/t/{name}/activity/config.json"
            self.wait(
                lambda: requests.get(config, timeout=5).status_code == 200, 15, f"web app serving {name}"
            )
        return self.runtime.tenant(name)

    def status_de_key(self, tenant: str) -> str:
        return self.tenant(tenant).sfmc_status_de_key

    def subscription_de_key(self, tenant: str) -> str:
        return self.tenant(tenant).sfmc_subscription_de_key

    def execute_url(self, tenant: str) -> str:
        return f"{self.web_url}/t/{tenant}/activity/execute"

    def prepare(
        self,
        tenant: str,
        contacts: list[jbsim.Contact],
        journey_id: str | None = None,
        release_key: str = "",
        release_on: str = "accepted",
    ) -> list[dict[str, Any]]:
        """The demo template, the contacts' subscriptions seeded at the tenant's Rokt account,
        the activity saved as the UI saves it (a new activity each call, from this stack's
        config.json) and one Journey Builder execute payload per contact, resolved from it."""
        template = create_template(self.redis, tenant, jbsim.DEMO_TEMPLATE)
        jbsim.seed_subscriptions(self.rokt_url, self.tenant(tenant).rokt_account_code, contacts)
        journey_id = journey_id or f"journey-{tenant}"
        activity = self.saved_activity(tenant, template["id"], release_key, release_on)
        return [jbsim.execute_payload(c, activity, journey_id, jbsim.DEMO_EVENT_KEY) for c in contacts]

    def saved_activity(
        self, tenant: str, template_id: str, release_key: str = "", release_on: str = "accepted"
    ) -> dict[str, Any]:
        """The demo activity (`jbsim.demo_activity`) as the UI saves it for `tenant`, on this
        stack's own config.json (rendered in-process: the benchmarks run no web app here)."""
        return jbsim.demo_activity(
            template_id,
            jbsim.DEMO_EVENT_KEY,
            release_key,
            config=jbsim.activity_config(self.runtime.settings, tenant),
            activity_id=f"activity-{tenant}-{time.time_ns()}",
            release_on=release_on,
        )

    def enqueue(self, tenant: str, payloads: list[dict[str, Any]]) -> list[str]:
        """What execute does after the JWT check (validate, claim: the claim appends to the
        intake stream), then what the pump does (publish the render tasks) so they are in the
        broker on return, whether workers run or not; returns the execution ids."""
        ids = []
        for payload in payloads:
            execution, record = new_execution(_EXECUTE_SCHEMA.load(payload))
            self.runtime.ledger.claim(tenant, execution, record)
            ids.append(execution)
        self.pump_intake([tenant])
        return ids

    def pump_intake(self, tenants: Sequence[str]) -> int:
        """Publish the tenants' new intake entries from this process (a pump of its own, as a
        worker's would); entries a worker's pump holds stay its. Returns how many."""
        pump = intake.Pump(self.redis, "stack", dispatch.enqueue_execution, lambda: tenants)
        return pump.drain()

    def wait_terminal(self, tenant: str, expected_rows: int, timeout: float = 90) -> list[dict[str, Any]]:
        """Every execution of the tenant terminal and at least `expected_rows` status rows in
        SFMC; returns the rows."""
        rows: list[dict[str, Any]] = []

        def done() -> bool:
            nonlocal rows
            rows = self.rows(tenant)
            return len(rows) >= expected_rows and self.runtime.ledger.open_count(tenant) == 0

        try:
            self.wait(done, timeout, f"{expected_rows} terminal rows of {tenant}")
        except TimeoutError as exc:
            logs = "\n".join(worker.tail(60) for worker in self.workers)
            raise TimeoutError(f"{len(rows)}/{expected_rows} rows after {timeout}s\n{logs}") from exc
        return rows
