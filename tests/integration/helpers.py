"""What the integration tests share besides the `stack` fixture: the tenants, the CLI, the expected
outcomes (the log check run when the session ends is tests/log_check.py)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from schemas.jb_execute import merge_in_arguments

# The limiters' room for arrival jitter in these stacks. Rokt's simulator counts a strict 1-second
# window of arrivals, on the same 2 cores as the whole suite: our send to its handler took up to
# 71 ms there (docs/architecture.md, the Rokt stage), past the 40 ms default. With 100 ms the "no 429" checks
# test that every process shares one limit, not how this host schedules threads.
LIMITER_ENV = {"RATE_LIMIT_JITTER_MS": "100"}


def status_de(tenant: str) -> str:
    return f"Status_{tenant}"


def subscription_de(tenant: str) -> str:
    return f"Subs_{tenant}"


def _own(tenant: str, **entries: Any) -> dict[str, Any]:
    """A tenant with its own Rokt account and data extensions at the simulators, so tests never
    see each other's data; other settings as the Tenant defaults have them."""
    return {
        "rokt_account_code": tenant,
        "sfmc_status_de_key": status_de(tenant),
        "sfmc_subscription_de_key": subscription_de(tenant),
        **entries,
    }


# one tenant per test (or group of tests)
TENANTS: dict[str, dict[str, Any]] = {
    "chain": _own("chain"),
    "dedupe": _own("dedupe"),
    "limit": _own("limit", rokt_rate_limit=20),
    "auth": _own("auth"),
    "faults": _own("faults"),
    "lost": _own("lost"),
    "lost-reject": _own("lost-reject"),
    "crash": _own("crash", rokt_rate_limit=20),
    "threads": _own("threads", rokt_rate_limit=20),
    "subs": _own("subs"),
    "hooks": _own("hooks"),
    "confirm": _own("confirm"),
    # thousands of contact look-ups: the sandbox has no SFMC limit
    "backfill": _own("backfill", sfmc_rate_limit=2000),
    "dlq": _own("dlq"),
    "recon": _own("recon"),
    "install": _own("install"),
    "perf": _own("perf", sfmc_performance_de_key="Perf_perf", reporting_time_zone="Pacific/Auckland"),
    # event jobs on events already sent (tests/integration/test_event_jobs.py)
    "ej-correct": _own("ej-correct"),
    "ej-cancel": _own("ej-cancel"),
    "ej-withdraw": _own("ej-withdraw"),
    "ej-kill": _own("ej-kill"),
    "ej-redis": _own("ej-redis"),
    # the performance figures (tests/integration/test_performance.py): a day that is not UTC's
    "measure": _own(
        "measure", sfmc_performance_de_key="Perf_measure", reporting_time_zone="Pacific/Kiritimati"
    ),
}


def cli(stack: Stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `rokt-sfmc ARGS` against the session's stack."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=stack.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def args_of(payload: dict[str, Any]) -> dict[str, Any]:
    """A JB execute payload's inArguments (resolved for its contact) merged as execute merges them."""
    return merge_in_arguments(payload["inArguments"])


def expected_outcomes(payloads: list[dict]) -> Counter:
    """What each contact must end as, derived from its inArguments (not from the pipeline)."""
    outcomes: Counter = Counter()
    for payload in payloads:
        args = args_of(payload)
        if not args.get("FirstName", "").strip():
            outcomes["missing_field"] += 1
        elif not args.get("subscriptionId"):
            outcomes["no_subscription"] += 1
        elif args["subscriptionId"] == jbsim.UNKNOWN_SUBSCRIPTION_ID:
            outcomes["failed"] += 1
        else:
            outcomes["accepted"] += 1
    return outcomes
