"""`intake`: POST execute (valid JWTs, a distinct execution per request) under gunicorn, against
a bare Flask endpoint under the identical gunicorn configuration, at 1, 10 and 50 connections.

Load generator: wrk (C, from Debian's package; `make bench` installs it when missing), with a
Lua script that sends pre-signed JWT bodies, each connection thread its own share of them.
No worker runs during intake: executes queue up in Redis, as during a journey's burst.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from bench.harness import reset
from pipeline.sandbox import jbsim, processes
from pipeline.sandbox.stack import Stack
from pipeline.templates import create_template

TENANT = "bench"
CONCURRENCY = (1, 10, 50)
PATH = f"/t/{TENANT}/activity/execute"
WEB_WORKERS = 2  # gunicorn --workers (gthread, 16 threads each), as `make demo` runs it
# enough distinct executions for the fastest level we have seen, per second of a run
TOKENS_PER_SECOND = 2_500

WRK_SCRIPT = r"""
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
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


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
    duration = 4 if quick else 15
    reset(stack)
    template = create_template(stack.redis, TENANT, jbsim.DEMO_TEMPLATE)
    script = stack.run_dir / "execute.lua"
    script.write_text(WRK_SCRIPT)
    bodies = {
        level: _signed_bodies(stack, template["id"], f"c{level}", duration * TOKENS_PER_SECOND)
        for level in CONCURRENCY
    }
    warm_up = _signed_bodies(stack, template["id"], "warm-up", 3_000)
    apps = {"execute": processes.WEB_APP, "bare_flask": "bench.bare_app:app"}
    measured: dict[str, dict[int, dict[str, Any]]] = {}
    for name, app in apps.items():
        port = processes.free_port()
        web = processes.start_web(stack.run_dir, stack.env, port, WEB_WORKERS, app=app)
        try:
            url = f"http://127.0.0.1:{port}{PATH}"
            _wrk(url, script, warm_up, 10, 1)  # warm up: imports, connection pools, caches
            measured[name] = {c: _wrk(url, script, bodies[c], c, duration) for c in CONCURRENCY}
        finally:
            web.stop()
    figures: dict[str, Any] = {
        "load_generator": wrk_version(),
        "gunicorn": f"--workers {WEB_WORKERS} --worker-class gthread --threads 16",
        "seconds_per_level": duration,
    }
    for name, levels in measured.items():
        figures[name] = {f"c{c}": levels[c] for c in CONCURRENCY}
    top = f"c{CONCURRENCY[-1]}"
    figures["ratio"] = round(figures["execute"][top]["rps"] / figures["bare_flask"][top]["rps"], 3)
    return {"intake": figures}


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
