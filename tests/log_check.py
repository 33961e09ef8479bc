"""The check that a test session's logs leak nothing: no secret of the sandbox and no plain email
in any log file the integration session wrote (its workers, the sandbox, Redis, and the test
process with the web app). The integration session runs it when it ends; the unit tests show it
can fail."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pipeline.sandbox import SANDBOX_SECRET_KEY, rokt, sandbox_env, sfmc

TEST_PROCESS_LOG = "test-process.log"  # what this process logs: the web app, the simulators' clients
WORKER_NAME = "w"  # worker logs are w-1.log, w-2.log, ...
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


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
