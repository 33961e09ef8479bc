"""What every benchmark shares: the stack with the benchmarks' tenants (the sandbox's `Stack`:
a fresh Redis of our own, the simulators in one process, gunicorn and Celery workers, each a
child process, started as in a deployment), a clean slate between benchmarks, journeys of
subscribed contacts and the delivery check."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack

UNLIMITED = 1_000_000.0  # requests/s: our limiter still runs, but never makes anyone wait
WORKER_CONCURRENCY = 8  # what `make demo` runs; docker-compose runs 16 per container
# tenant -> its TENANTS_FILE entries; fair-a and fair-b keep the default Rokt and SFMC limits,
# each a Rokt account of its own (the simulator limits each account when asked to)
TENANTS: dict[str, dict[str, Any]] = {
    "bench": {"rokt_rate_limit": UNLIMITED, "sfmc_rate_limit": UNLIMITED},
    "rl-ours": {"rokt_rate_limit": 100.0, "sfmc_rate_limit": UNLIMITED},
    "rl-celery": {"rokt_rate_limit": UNLIMITED, "sfmc_rate_limit": UNLIMITED},
    "fair-a": {"rokt_account_code": "fair-a"},
    "fair-b": {"rokt_account_code": "fair-b"},
    # bench/corrections.py: the default Rokt limit, an account of its own
    "corrections": {"rokt_account_code": "corrections", "sfmc_rate_limit": UNLIMITED},
    # bench/tenants.py: 20 tenants at the default 50/s, each a Rokt account of its own
    **{f"ten-{i:02d}": {"rokt_account_code": f"ten-{i:02d}"} for i in range(1, 21)},
}
REPO_ROOT = Path(__file__).resolve().parent.parent


def bench_stack(run_dir: Path) -> Stack:
    """The stack, not started: no web app (intake starts its own) and no workers yet."""
    return Stack(
        run_dir,
        TENANTS,
        # the baselines' apps live in bench/, which is not installed: workers import it from here
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))},
        worker_name="bench-worker",
        worker_concurrency=WORKER_CONCURRENCY,
    )


def reset(stack: Stack, rokt_rate_limit: float = 0.0) -> None:
    """Between benchmarks: no workers, an empty Redis and simulators with no state and no
    faults (but `rokt_rate_limit`, enforced by the Rokt simulator; 0 = none)."""
    stack.stop_workers()
    stack.redis.flushdb()
    stack.reset_simulators()
    stack.faults("rokt", rate_limit=rokt_rate_limit, land_delay_ms=0)


def journey(stack: Stack, tenant: str, count: int) -> list[dict[str, Any]]:
    """`count` subscribed contacts seeded at the Rokt simulator; their execute payloads, resolved
    from the activity as the UI saves it (released once, at each contact's outcome)."""
    contacts = [
        jbsim.Contact(f"{tenant}-{i:07d}", "Ava", f"{tenant}{i}@example.com", "Sydney", True)
        for i in range(count)
    ]
    return stack.prepare(
        tenant, contacts, f"bench-{uuid.uuid4()}", jbsim.RELEASE_EVENT_KEY, release_on="accepted"
    )


def delivered(stack: Stack, tenant: str, rows: int) -> bool:
    """The tenant's executions all terminal, `rows` status rows written to SFMC and as many
    contacts released from their journey wait (counted by the simulator, not listed)."""
    if stack.runtime.ledger.open_count(tenant):
        return False
    state = stack.sfmc_state()
    written = state["data_extensions"].get(stack.status_de_key(tenant), 0)
    return written >= rows and state["released_unique_contacts"] >= rows
