"""`rokt-sfmc demo --chaos kill-workers` on RabbitMQ (BROKER_URL=amqp://..., a vhost of its own):
whole worker instances SIGKILLed every few seconds; nothing lost, nothing twice. Skipped, saying
how to run it, where RABBITMQ_URL answers no RabbitMQ (pipeline/sandbox/rabbitmq.py)."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.sandbox import rabbitmq

pytestmark = pytest.mark.e2e


def test_kill_workers_on_rabbitmq_loses_nothing_and_sends_nothing_twice(tmp_path):
    try:
        vhost = rabbitmq.temporary_vhost("rsf-chaos")
        url = vhost.__enter__()
    except rabbitmq.RabbitMQUnavailable as exc:
        pytest.skip(str(exc))
    try:
        report_path = tmp_path / "report.json"
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TENANTS_FILE")}
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "demo",
                "--contacts",
                "250",
                "--chaos",
                "kill-workers",
                "--report",
                str(report_path),
            ],
            env={**env, "BROKER_URL": url},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        vhost.__exit__(None, None, None)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["chaos"].get("workers_killed", 0) > 0 or any(
        v > 0 for k, v in report["chaos"].items() if k not in ("scenarios", "supervisor_restarts")
    ), report["chaos"]
    assert report["lost"] == 0
    assert report["rokt"]["duplicate_calendar_entries"] == 0
    assert sum(report["outcomes"].values()) == 250
    assert report["outcomes"]["accepted"] == 0  # every accepted event got confirmed in the end
