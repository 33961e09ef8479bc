"""Pool processes SIGKILLed mid-run (the OOM killer's way): nothing lost, nothing sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration


def pool_children(worker_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(worker_pid)], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def test_killed_pool_processes_lose_nothing(stack: Stack):
    stack.faults("rokt", rate_limit=20, latency_ms=20)
    payloads = stack.prepare("crash", jbsim.make_contacts(100, seed=5))
    kills: list[int] = []
    done = threading.Event()

    def killer() -> None:
        time.sleep(1.0)
        while not done.is_set() and len(kills) < 6:
            for worker in stack.workers:
                for pid in pool_children(worker.pid)[:1]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        kills.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.7)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        result = jbsim.drive(stack.execute_url("crash"), stack.jwt_secret, payloads)
        rows = stack.wait_terminal("crash", 100, timeout=120)
    finally:
        done.set()
        thread.join()

    assert kills, "no pool process was killed"
    assert result.ok == 100
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    rokt = stack.rokt_state()
    assert rokt["events"] == expected_outcomes(payloads)["accepted"]
    assert rokt["duplicate_calendar_entries"] == 0
