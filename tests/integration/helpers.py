"""What the integration tests share besides the `stack` fixture: the tenants, the CLI, the
log check run when the session ends."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.sandbox import SANDBOX_SECRET_KEY, jbsim, rokt, sandbox_env, sfmc
from pipeline.sandbox.stack import Stack
from schemas.jb_execute import merge_in_arguments

TEST_PROCESS_LOG = "test-process.log"  # what this process logs: the web app, the simulators' clients
WORKER_NAME = "w"  # worker logs are w-1.log, w-2.log, ...
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
# The limiters' room for arrival jitter in these stacks. Rokt's simulator counts a strict 1-second
# window of arrivals, on the same 2 cores as the whole suite: our send to its handler took up to
# 71 ms there (README "The Rokt stage"), past the 40 ms default. With 100 ms the "no 429" checks
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


def _secrets() -> dict[str, str]:
    values = sandbox_env("http://x", "http://y")
    return {
        "JWT signing secret": values["JB_JWT_SECRET"],
        "webhook secret": values["ROKT_WEBHOOK_SECRET"],
        "Rokt client secret": rokt.DEFAULT_CLIENT_SECRET,
        "SFMC client secret": sfmc.DEFAULT_CLIENT_SECRET,
        "SFMC app client secret": sfmc.APP_CLIENT_SECRET,
        "sealing key": SANDBOX_SECRET_KEY,
        "bearer token": "Bearer ",
    }


def log_leaks(logs: Mapping[str, str]) -> list[str]:
    """Secrets and unmasked emails in these logs (file name -> text), one line per finding."""
    leaks = []
    for name, text in logs.items():
        leaks.extend(f"{what} in {name}" for what, secret in _secrets().items() if secret in text)
        emails = EMAIL.findall(text)
        if emails:
            leaks.append(f"unmasked email(s) in {name}: {emails[:3]}")
    return leaks


def check_logs(run_dir: Path) -> None:
    """Every log line the session wrote (workers, the sandbox, Redis, and this process with the
    web app) holds no secret and no plain email; raises AssertionError naming each finding."""
    logs = {path.name: path.read_text(errors="replace") for path in sorted(run_dir.glob("*.log"))}
    workers = [name for name in logs if name.startswith(f"{WORKER_NAME}-")]
    assert workers and TEST_PROCESS_LOG in logs, f"nothing to check: the logs are {sorted(logs)}"
    leaks = log_leaks(logs)
    assert not leaks, "the logs leak:\n" + "\n".join(leaks)
