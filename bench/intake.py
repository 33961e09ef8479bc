"""`intake`: execute under gunicorn, beside a bare Flask endpoint.

POST execute (valid JWTs, a distinct execution per request) under gunicorn, against
a bare Flask endpoint under the identical gunicorn configuration, at 1, 10 and 50 connections, on
the Redis broker (`intake`) and on RabbitMQ (`intake_rabbitmq`, a vhost of its own on
RABBITMQ_URL; null with the reason when it is not reachable).

Execute claims the execution, which appends it to the tenant's intake stream in the same Lua
call; a pump (`python -m pipeline.journeys.intake`, the code each render worker runs) publishes the
render tasks meanwhile, as in production. Baseline beside it: the previous design, where
execute published the render task itself (`bench/direct_app.py`). After each level the benchmark
waits until the pump has emptied the stream and counts the render messages in the broker
against the 200s answered (`lost` must be 0). No worker runs: the messages queue up, as during
a journey's burst.

Load generator: wrk (C, from Debian's package; `make bench` installs it when missing), with a
Lua script that sends pre-signed JWT bodies, each connection thread its own share of them.

`measure_execute(stack, connections, seconds)` and `measure_bare(...)` measure one level on any
stack (bench/durability.py uses them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, TENANTS, reset
from bench.procs import cpu_seconds
from pipeline.infra.queues import render_queue
from pipeline.infra.redis_clients import redis_client
from pipeline.journeys import intake
from pipeline.journeys.templates import create_template
from pipeline.sandbox import jbsim, processes, rabbitmq
from pipeline.sandbox.stack import Stack
from pipeline.settings import is_amqp

TENANT = "bench"
CONCURRENCY = (1, 10, 50)
PATH = f"/t/{TENANT}/activity/execute"
WEB_WORKERS = 2  # gunicorn --workers (gthread, 16 threads each), as `make demo` runs it
# enough distinct executions for the fastest level we have seen, per second of a run
TOKENS_PER_SECOND = 2_500
BARE_APP = "bench.bare_app:app"
DIRECT_APP = "bench.direct_app:app"
DRAIN_TIMEOUT = 300.0

# wrk's report of a run, one JSON line (the scripts of bench/intake.py and bench/redirect.py end with it)
WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""
WRK_SCRIPT = (
    r"""
-- args: bodies file, thread count. Each thread sends its own lines: no execution repeats
-- across threads, and within one only after the file's share is used up (reported).
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  local nthreads = tonumber(args[2])
  bodies = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then bodies[#bodies + 1] = line end
    i = i + 1
  end
  idx = 0
  wrk.headers["Content-Type"] = "application/jwt"
end
function request()
  idx = idx % #bodies + 1
  return wrk.format("POST", nil, nil, bodies[idx])
end
"""
    + WRK_DONE
)


def wrk_version() -> str:
    binary = shutil.which("wrk")
    if not binary:
        return "wrk not installed"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0].split("Copyright")[0].strip() if first else "wrk"


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: `make bench` installs it (apt-get install wrk)")
    seconds = 4 if quick else 15
    reset(stack)
    template = create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)
    bodies = {
        c: _signed_bodies(stack, template["id"], f"c{c}", seconds * TOKENS_PER_SECOND) for c in CONCURRENCY
    }
    results = {"intake": _broker_case(stack, bodies, seconds, "redis")}
    results["intake_rabbitmq"] = _rabbitmq_case(stack, bodies, seconds)
    return results


def _broker_case(stack: Stack, bodies: dict[int, Path], seconds: int, broker: str) -> dict[str, Any]:
    """Every level with each app: execute (+ the pump), the previous direct-send design, bare."""
    measured = {}
    for name, app, pump in (("execute", processes.WEB_APP, True), ("direct_send", DIRECT_APP, False)):
        reset(stack)  # the same bodies are new executions again
        create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)
        measured[name] = _levels(stack, app, bodies, seconds, pump=pump, count_published=True)
    measured["bare_flask"] = _levels(stack, BARE_APP, bodies, seconds)
    figures: dict[str, Any] = {
        "broker": broker,
        "load_generator": wrk_version(),
        "gunicorn": f"--workers {WEB_WORKERS} --worker-class gthread --threads 16",
        "seconds_per_level": seconds,
        **{name: {f"c{c}": levels[c] for c in CONCURRENCY} for name, levels in measured.items()},
    }
    top = f"c{CONCURRENCY[-1]}"
    ours, direct, bare = figures["execute"][top], figures["direct_send"][top], figures["bare_flask"][top]
    figures["ratio"] = round(ours["rps"] / bare["rps"], 3)
    figures["p99_ratio"] = round(ours["p99_ms"] / bare["p99_ms"], 3)
    figures["direct_send_ratio"] = round(direct["rps"] / bare["rps"], 3)
    figures["direct_send_p99_ratio"] = round(direct["p99_ms"] / bare["p99_ms"], 3)
    figures["lost"] = sum(
        figures[n][f"c{c}"]["lost"] for n in ("execute", "direct_send") for c in CONCURRENCY
    )
    return figures


def _rabbitmq_case(stack: Stack, bodies: dict[int, Path], seconds: int) -> dict[str, Any]:
    """The same on a stack whose broker is a RabbitMQ vhost of its own (its own Redis too)."""
    try:
        with rabbitmq.temporary_vhost("rsf-bench-intake") as url:
            env = {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            }
            run_dir = stack.run_dir / "intake-rabbitmq"
            run_dir.mkdir(exist_ok=True)
            with Stack(
                run_dir, {TENANT: TENANTS[TENANT]}, env=env, worker_name="bench-amqp", broker_url=url
            ) as amqp:
                return _broker_case(amqp, bodies, seconds, "rabbitmq")
    except rabbitmq.RabbitMQUnavailable as exc:
        return {"broker": "rabbitmq", "ratio": None, "p99_ratio": None, "reason": str(exc)}


def measure_execute(stack: Stack, connections: int, seconds: int, *, pump: bool = True) -> dict[str, Any]:
    """Execute at `connections` for `seconds` under gunicorn on `stack` (its Redis, its broker),
    distinct signed executions, with an intake pump running (`pump`); {rps, p50_ms, p99_ms, ...}."""
    template = create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)
    bodies = _signed_bodies(stack, template["id"], f"m{connections}", seconds * TOKENS_PER_SECOND)
    return _levels(stack, processes.WEB_APP, {connections: bodies}, seconds, pump=pump)[connections]


def measure_bare(stack: Stack, connections: int, seconds: int) -> dict[str, Any]:
    """The bare Flask endpoint under the same gunicorn configuration; {rps, p50_ms, p99_ms, ...}."""
    template = create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)
    bodies = _signed_bodies(stack, template["id"], f"b{connections}", seconds * TOKENS_PER_SECOND)
    return _levels(stack, BARE_APP, {connections: bodies}, seconds)[connections]


def _levels(
    stack: Stack,
    app: str,
    bodies: dict[int, Path],
    seconds: int,
    *,
    pump: bool = False,
    count_published: bool = False,
) -> dict[int, dict[str, Any]]:
    """`app` under gunicorn, warmed up, then wrk at each level of `bodies` (connections -> file);
    with `pump`, an intake pump runs beside it and each level waits until it emptied the stream
    (`drain_s`: seconds after the load ended); with `count_published`, render messages in the
    broker against the 200s answered (`published`, `lost`). CPU (user + system) of the gunicorn
    process tree per request and of the pump per execute, for sizing (docs/scaling.md)."""
    script = stack.run_dir / "execute.lua"
    script.write_text(WRK_SCRIPT)
    warm_up = _signed_bodies(stack, _any_template(stack), f"warm-up-{uuid.uuid4().hex[:6]}", 3_000)
    port = processes.free_port()
    pumper = _start_pump(stack) if pump else None
    web = processes.start_web(stack.run_dir, stack.env, port, WEB_WORKERS, app=app)
    measured: dict[int, dict[str, Any]] = {}
    try:
        url = f"http://127.0.0.1:{port}{PATH}"
        _wrk(url, script, warm_up, 10, 1)  # warm up: imports, connection pools, caches
        for connections, path in bodies.items():
            _wait_drained(stack, pumper)
            before = _queue_depth(stack) if count_published else 0
            web_cpu = cpu_seconds([web.pid])
            pump_cpu = cpu_seconds([pumper.pid]) if pumper is not None else 0.0
            figures = _wrk(url, script, path, connections, seconds)
            ended = time.monotonic()
            web_cpu = cpu_seconds([web.pid]) - web_cpu
            figures["web_cpu_ms_per_request"] = round(web_cpu * 1000 / max(1, figures["requests"]), 3)
            if pumper is not None:
                _wait_drained(stack, pumper)
                figures["drain_s"] = round(time.monotonic() - ended, 2)
                pump_cpu = cpu_seconds([pumper.pid]) - pump_cpu
                figures["pump_cpu_ms_per_execute"] = round(pump_cpu * 1000 / max(1, figures["requests"]), 3)
            if count_published:
                # a body wrk sent again (its share used up) is a JB retry: 200, nothing to publish
                new = figures["requests"] - figures["non_2xx"] - figures["repeated_executions"]
                figures["published"] = _queue_depth(stack) - before
                figures["lost"] = max(0, new - figures["published"])
            measured[connections] = figures
    finally:
        web.stop()
        if pumper is not None:
            pumper.stop()
    return measured


def _any_template(stack: Stack) -> str:
    return create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)["id"]


def _start_pump(stack: Stack) -> processes.Child:
    argv = [sys.executable, "-m", "pipeline.journeys.intake", f"bench-pump@{uuid.uuid4().hex[:6]}"]
    return processes.Child("intake-pump", argv, stack.env, stack.run_dir)


def _wait_drained(stack: Stack, pumper: processes.Child | None) -> None:
    """Until the tenant's intake stream is empty (no pump: nothing to wait for)."""
    if pumper is None:
        return
    processes.wait_until(
        lambda: intake.backlog(stack.redis, TENANT)["waiting"] == 0, DRAIN_TIMEOUT, "intake drained", pumper
    )


def _queue_depth(stack: Stack) -> int:
    """Render messages of the tenant waiting in the broker."""
    queue = render_queue(TENANT)
    url = stack.broker_url or stack.redis_url
    if is_amqp(url):
        from pipeline.infra.broker import ready_counts

        return int(ready_counts(url, [queue])[queue] or 0)
    return int(redis_client(url).llen(queue))


def _signed_bodies(stack: Stack, template_id: str, label: str, count: int) -> Path:
    """`count` JWT-signed execute bodies of distinct executions (one journey per file)."""
    secret = stack.jwt_secret
    journey = f"intake-{label}-{uuid.uuid4()}"
    activity = stack.saved_activity(TENANT, template_id, jbsim.RELEASE_EVENT_KEY)  # as the UI saves it
    lines = []
    for index in range(count):
        contact = jbsim.Contact(f"I{label}-{index:07d}", "Ava", f"i{index}@example.com", "Sydney", True)
        contact.subscription_id = str(uuid.uuid4())
        payload = jbsim.execute_payload(contact, activity, journey, jbsim.DEMO_EVENT_KEY)
        lines.append(jbsim.sign(payload, secret, lifetime=3600))
    path = stack.run_dir / f"bodies-{label}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wrk(url: str, script: Path, bodies: Path, connections: int, seconds: int) -> dict[str, Any]:
    threads = min(connections, 2)
    argv = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
        "-s", str(script), url, "--", str(bodies), str(threads),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(lines[-1])
    available = sum(1 for _ in bodies.open())
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 1),
        "requests": raw["requests"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "repeated_executions": max(0, raw["requests"] - available),
    }
