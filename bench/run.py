"""`python -m bench [name ...]`: run the benchmarks, print a table each, write results.json.

BENCH_QUICK=1 runs reduced sizes (under 5 minutes); BENCH_OUT names the results file
(default bench/results.json). Names: intake pipeline rate_limit scale fairness tenants worker_loss
durability history erasure corrections redirect
(`pipeline` also yields `sfmc_batching` and `memory`, measured in the same run; `history` adds its
Redis and store figures to `memory`, and yields `history_cpu`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from bench import (
    corrections,
    durability,
    erasure,
    fairness,
    history_cost,
    intake,
    pipeline_cost,
    rate_limit,
    redirect,
    scale,
    tenants,
    worker_loss,
)
from bench.harness import bench_stack
from pipeline.sandbox.stack import Stack

BENCHMARKS: dict[str, Callable[[Stack, bool], dict[str, dict[str, Any]]]] = {
    "intake": intake.run,
    "pipeline": pipeline_cost.run,
    "rate_limit": rate_limit.run,
    "scale": scale.run,
    "fairness": fairness.run,
    "tenants": tenants.run,
    "worker_loss": worker_loss.run,
    "durability": durability.run,
    "history": history_cost.run,
    "erasure": erasure.run,
    "corrections": corrections.run,
    "redirect": redirect.run,
}
DEFAULT_OUT = Path(__file__).with_name("results.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    out = Path(os.environ.get("BENCH_OUT") or DEFAULT_OUT)
    console = Console(width=max(Console().width, 130))  # tables unwrapped in a log file too
    run_dir = Path(tempfile.mkdtemp(prefix="rokt-sfmc-bench-"))
    console.print(f"Benchmarks: {', '.join(names)}{' (quick)' if quick else ''}; logs in {run_dir}")

    started = time.monotonic()
    with bench_stack(run_dir) as stack:
        results: dict[str, Any] = {"machine": machine(stack), "quick": quick}
        for name in names:
            console.rule(name)
            begun = time.monotonic()
            for key, figures in BENCHMARKS[name](stack, quick).items():
                figures["elapsed_s"] = round(time.monotonic() - begun, 1)
                print_table(console, key, figures)
                results[key] = merged(results.get(key), figures)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    if out.exists() and set(names) != set(BENCHMARKS):
        results = partial(json.loads(out.read_text()), results, names)
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"Results written to {out} ({results['total_seconds']} s)")
    return 0


def merged(before: Any, figures: Any) -> Any:
    """Two benchmarks may each add figures to one key (`memory`: the worker's RSS from `pipeline`,
    Redis and the store from `history`): a run's figures replace only their own names."""
    if isinstance(before, dict) and isinstance(figures, dict):
        return {**before, **figures}
    return figures


def partial(previous: dict[str, Any], results: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A partial run keeps the other benchmarks' last figures, and the machine line of the run
    that measured them; each figure it measured itself says when, at which commit and whether
    quick (`run:<names>`: a key two benchmarks share keeps each one's)."""
    run = {
        "date": results["machine"]["date"],
        "git_commit": results["machine"]["git_commit"],
        "git_dirty": results["machine"]["git_dirty"],
        "quick": results["quick"],
    }
    ours = {
        key: {**value, f"run:{','.join(names)}": run}
        for key, value in results.items()
        if isinstance(value, dict) and key != "machine"
    }
    kept = {key: previous[key] for key in ("machine", "quick", "total_seconds") if key in previous}
    return {**previous, **{key: merged(previous.get(key), value) for key, value in ours.items()}, **kept}


def machine(stack: Stack) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis": str(stack.redis.info("server").get("redis_version", "")),
        "load_generator": intake.wrk_version(),
    }


def print_table(console: Console, key: str, figures: dict[str, Any]) -> None:
    """Scalars first; then each group of figures (a baseline beside ours) as a row of one table."""
    scalars = {name: value for name, value in figures.items() if not isinstance(value, dict)}
    console.print(f"[bold]{key}[/bold]  " + "  ".join(f"{name}={value}" for name, value in scalars.items()))
    rows: dict[str, dict[str, Any]] = {}
    for name, value in figures.items():
        if isinstance(value, dict):
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            for sub_name, sub_value in nested.items():
                rows[f"{name} {sub_name}"] = sub_value
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            if flat:
                rows[name] = flat
    if not rows:
        return
    columns = list(dict.fromkeys(column for row in rows.values() for column in row))
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(str(row.get(column, "")) for column in columns))
    console.print(table)


def _git(*args: str) -> str:
    if not shutil.which("git"):
        return ""
    done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
    return done.stdout.strip() if done.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
