"""`durability`: what each durability choice costs intake, and what a crashed Redis loses.

- crash_redis: `rokt-sfmc demo --chaos crash-redis` (a child process, its own bundled Redis:
  the Redis process SIGKILLed mid-run and restarted from its AOF, `appendfsync everysec`);
  `crash_redis_lost` is the demo's `lost` (must be 0), beside its duplicates.
- intake: execute rps and p99 at 50 connections (gunicorn, wrk, no worker) on three Redis
  set-ups of the same redis-server binary, each a fresh stack: AOF `everysec` (the baseline and
  the default), `appendfsync always`, and a replica with REDIS_WAIT_REPLICAS=1 (execute waits
  for `WAIT 1`). Each ratio is its rps over the everysec rps.

The execute load uses bench.intake's `measure_execute(stack, connections, seconds)` when it
has one; until then the same gunicorn + wrk measurement here (`_measure_execute`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import intake
from bench.harness import TENANTS
from pipeline.infra.replica_wait import server_version, waitaof_supported
from pipeline.journeys.templates import create_template
from pipeline.sandbox import jbsim, processes
from pipeline.sandbox.redis_ha import data_node_binary, start_data_node
from pipeline.sandbox.stack import Stack

CONNECTIONS = 50
WAIT_TIMEOUT_MS = 500


def run(stack: Stack, quick: bool) -> dict[str, dict[str, Any]]:
    seconds = 3 if quick else 10
    figures: dict[str, Any] = {"redis_server": data_node_binary(), "connections": CONNECTIONS}
    figures.update(crash_redis(stack.run_dir, 150 if quick else 1500))
    measure = getattr(intake, "measure_execute", _measure_execute)
    measured: dict[str, dict[str, Any]] = {}
    for name, options, replica in (
        ("everysec", (), False),
        ("always", ("--appendfsync", "always"), False),
        ("wait_replica", (), True),
    ):
        with _redis_stack(stack.run_dir / f"durability-{name}", options, replica) as (sub, version, aof):
            measured[name] = measure(sub, CONNECTIONS, seconds)
            figures["redis_version"] = ".".join(map(str, version))
            figures["waitaof"] = "available (Redis 7.2+)" if aof else "not in this Redis (7.2+)"
    base = measured["everysec"]["rps"] or 1.0
    for name, result in measured.items():
        figures[f"{name}_rps"] = result["rps"]
        figures[f"{name}_p99_ms"] = result["p99_ms"]
    figures["always_intake_ratio"] = round(measured["always"]["rps"] / base, 3)
    figures["wait_replica_intake_ratio"] = round(measured["wait_replica"]["rps"] / base, 3)
    return {"durability": figures}


def crash_redis(work_dir: Path, contacts: int) -> dict[str, Any]:
    """The demo with `--chaos crash-redis` in a child process, on a bundled Redis of its own."""
    report = Path(tempfile.mkdtemp(prefix="durability-", dir=work_dir)) / "crash-redis.json"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TENANTS_FILE", "BROKER_URL")}
    argv = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "demo",
        "--contacts",
        str(contacts),
        "--chaos",
        "crash-redis",
    ]
    done = subprocess.run(
        [*argv, "--report", str(report)], env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"demo --chaos crash-redis failed ({done.returncode}):\n{done.stdout[-3000:]}")
    result = json.loads(report.read_text())
    chaos = result.get("chaos", {})
    if not chaos.get("redis_crashes"):
        raise RuntimeError(f"demo --chaos crash-redis: Redis was not crashed ({chaos})")
    return {
        "crash_redis_contacts": result["contacts"],
        "crash_redis_lost": result["lost"],
        "crash_redis_duplicates": result["rokt"]["duplicate_calendar_entries"],
        "crash_redis_ping_after_s": chaos.get("ping_after_redis_restart_s"),
    }


@contextmanager
def _redis_stack(
    run_dir: Path, options: tuple[str, ...], replica: bool
) -> Iterator[tuple[Stack, tuple[int, ...], bool]]:
    """A stack (no web app, no workers) on a redis-server of its own with `options`; with
    `replica`, a replica of it too and REDIS_WAIT_REPLICAS=1 for every process."""
    run_dir.mkdir(parents=True, exist_ok=True)
    master, port = start_data_node(run_dir, extra_options=options)
    children = [master]
    try:
        env = {}
        if replica:
            children.append(start_data_node(run_dir, replica_of=port)[0])
            env = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS)}
        sub = Stack(run_dir, TENANTS, reuse_redis_url=f"redis://127.0.0.1:{port}/0", env=env)
        with sub:
            yield sub, server_version(sub.redis), waitaof_supported(sub.redis)
    finally:
        for child in reversed(children):
            child.stop()


def _measure_execute(stack: Stack, connections: int, seconds: int) -> dict[str, Any]:
    """execute under gunicorn (as bench.intake runs it) at `connections` for `seconds`:
    {rps, p50_ms, p99_ms, non_2xx}."""
    template = create_template(stack.redis, intake.TENANT, jbsim.DEMO_TEMPLATE)
    script = stack.run_dir / "execute.lua"
    script.write_text(intake.WRK_SCRIPT)
    bodies = intake._signed_bodies(
        stack, template["id"], f"d{connections}", seconds * intake.TOKENS_PER_SECOND
    )
    warm_up = intake._signed_bodies(stack, template["id"], "d-warm-up", 1_000)
    port = processes.free_port()
    web = processes.start_web(stack.run_dir, stack.env, port, intake.WEB_WORKERS)
    try:
        url = f"http://127.0.0.1:{port}{intake.PATH}"
        intake._wrk(url, script, warm_up, 10, 1)
        result = intake._wrk(url, script, bodies, connections, seconds)
    finally:
        web.stop()
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"execute answered errors under load: {result}")
    return {key: result[key] for key in ("rps", "p50_ms", "p99_ms", "non_2xx")}
