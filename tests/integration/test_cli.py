"""The command line against the session's real Redis: templates and the sandbox env file."""

from __future__ import annotations

import json
import sys
import time

import pytest
import requests

from pipeline.sandbox.processes import Child, free_port
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import cli

pytestmark = pytest.mark.integration


def test_templates_create_and_list(stack: Stack, tmp_path):
    path = tmp_path / "template.json"
    path.write_text(
        json.dumps({"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/Paris"})
    )
    created = cli(stack, "templates", "create", "--tenant", "chain", str(path))
    assert created.returncode == 0, created.stderr
    template_id = created.stdout.strip()
    assert template_id.startswith("tpl-")

    listed = cli(stack, "templates", "list", "--tenant", "chain")
    templates = [json.loads(line) for line in listed.stdout.splitlines()]
    assert template_id in {t["id"] for t in templates}
    mine = next(t for t in templates if t["id"] == template_id)
    assert mine["missingFieldPolicy"] == "strict" and mine["tenant"] == "chain"
    assert template_id not in cli(stack, "templates", "list", "--tenant", "dedupe").stdout


def test_invalid_template_names_the_field_and_exits_2(stack: Stack):
    result = cli(
        stack,
        "templates",
        "create",
        "--tenant",
        "chain",
        "-",
        stdin='{"title": "x", "start": "s", "timezone": "Nowhere"}',
    )
    assert result.returncode == 2
    assert "timezone" in json.loads(result.stderr)["fields"]
    assert cli(stack, "templates", "create", "--tenant", "chain", "-", stdin="not json").returncode == 2
    unknown = cli(stack, "templates", "list", "--tenant", "nobody")
    assert unknown.returncode != 0 and "unknown tenant" in unknown.stderr


def test_sandbox_command_serves_and_writes_its_env_file(stack: Stack, tmp_path):
    rokt_port, sfmc_port = free_port(), free_port()
    env_file = tmp_path / "sandbox.env"
    child = Child(
        "sandbox-cli",
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "sandbox",
            "--rokt-port",
            str(rokt_port),
            "--sfmc-port",
            str(sfmc_port),
            "--env-file",
            str(env_file),
        ],
        stack.env,
        tmp_path,
    )
    try:
        deadline = time.monotonic() + 20
        while not env_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert values["ROKT_API_BASE_URL"] == f"http://127.0.0.1:{rokt_port}"
        assert values["SFMC_AUTH_BASE_URL"] == f"http://127.0.0.1:{sfmc_port}"
        state = requests.get(f"{values['ROKT_API_BASE_URL']}/__sandbox__/state", timeout=5).json()
        assert state["event_posts"] == 0 and state["token_requests"] == 0
        faults = requests.post(
            f"http://127.0.0.1:{sfmc_port}/__sandbox__/faults", json={"error_rate": 0.5}, timeout=5
        )
        assert faults.json()["error_rate"] == 0.5
        bad = requests.post(
            f"http://127.0.0.1:{sfmc_port}/__sandbox__/faults", json={"nonsense": 1}, timeout=5
        )
        assert bad.status_code == 400
    finally:
        child.stop()
    assert child.process.returncode == 0
