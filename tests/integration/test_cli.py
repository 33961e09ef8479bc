"""The command line against the session's real Redis: templates, API keys and the sandbox env file."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from pipeline.infra import keys
from pipeline.sandbox.processes import Child, free_port
from pipeline.sandbox.stack import Stack
from pipeline.settings import SECRET_TENANT_FIELDS
from pipeline.tenancy import apikeys
from pipeline.vocabulary import State
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


def test_templates_show_update_and_delete(stack: Stack, tmp_path, monkeypatch):
    path = tmp_path / "template.json"
    document = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/Paris"}
    path.write_text(json.dumps(document))
    template_id = cli(stack, "templates", "create", "--tenant", "chain", str(path)).stdout.strip()

    shown = cli(stack, "templates", "show", "--tenant", "chain", template_id)
    assert shown.returncode == 0, shown.stderr
    original = json.loads(shown.stdout)
    assert original["id"] == template_id
    assert original["placeholders"] == [{"name": "FirstName", "default": None}]
    assert cli(stack, "templates", "show", "--tenant", "dedupe", template_id).returncode == 1

    change = {**document, "title": "Bye {{Who}}"}
    updated = cli(
        stack, "templates", "update", "--tenant", "chain", template_id, "-", stdin=json.dumps(change)
    )
    assert updated.returncode == 0, updated.stderr
    stored = json.loads(cli(stack, "templates", "show", "--tenant", "chain", template_id).stdout)
    assert stored["title"] == "Bye {{Who}}" and stored["createdAt"] == original["createdAt"]
    assert stored["updatedAt"] > original["updatedAt"]
    bad = cli(stack, "templates", "update", "--tenant", "chain", template_id, "-", stdin='{"title": "x"}')
    assert bad.returncode == 2 and "start" in json.loads(bad.stderr)["fields"]

    # an execution of it still queued (its intake entry where no pump reads it, so it stays
    # queued): delete refuses
    record = {"activityId": "cli-act", "eventId": "cli-ev", "args": {"templateId": template_id}}
    monkeypatch.setattr(keys, "intake", lambda t: keys.tenant_prefix(t) + "intake-unread")
    assert stack.runtime.ledger.claim("chain", "cli-exec", record)
    monkeypatch.undo()
    try:
        refused = cli(stack, "templates", "delete", "--tenant", "chain", template_id)
        assert refused.returncode == 1 and "1 execution" in refused.stderr
    finally:  # never leave the tenant an open execution
        stack.runtime.ledger.transition("chain", "cli-exec", State.FAILED, error="test")
    deleted = cli(stack, "templates", "delete", "--tenant", "chain", template_id)
    assert deleted.returncode == 0, deleted.stderr
    assert cli(stack, "templates", "show", "--tenant", "chain", template_id).returncode == 1
    assert cli(stack, "templates", "delete", "--tenant", "chain", template_id).returncode == 1


def test_api_keys_create_list_and_revoke(stack: Stack):
    created = cli(stack, "api-keys", "create", "--tenant", "chain", "--label", "ops script")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("rsk_") and apikeys.verify_key(stack.redis, "chain", key)
    assert not apikeys.verify_key(stack.redis, "dedupe", key)

    listed = cli(stack, "api-keys", "list", "--tenant", "chain")
    assert key not in listed.stdout and key[4:] not in listed.stdout
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = next(item for item in items if item["label"] == "ops script")
    assert set(mine) == {"id", "label", "createdAt", "lastUsedAt"} and key[4:].startswith(mine["id"])

    assert cli(stack, "api-keys", "revoke", "--tenant", "dedupe", mine["id"]).returncode == 1
    assert apikeys.verify_key(stack.redis, "chain", key)
    revoked = cli(stack, "api-keys", "revoke", "--tenant", "chain", mine["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert not apikeys.verify_key(stack.redis, "chain", key)
    assert mine["id"] not in cli(stack, "api-keys", "list", "--tenant", "chain").stdout
    assert cli(stack, "api-keys", "revoke", "--tenant", "chain", mine["id"]).returncode == 1


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


def _add_tenant(
    stack: Stack, name: str, **overrides: str
) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """`rokt-sfmc tenants add` with the sandbox's settings: non-secrets as --set, secrets through
    --secrets-file on stdin; `overrides` replace any of them. Returns the run and the secrets."""
    values = {key.lower(): value for key, value in stack.values.items()} | overrides
    secrets = {key: values.pop(key) for key in list(values) if key in SECRET_TENANT_FIELDS}
    sets = [item for key, value in sorted(values.items()) for item in ("--set", f"{key}={value}")]
    run = cli(
        stack, "tenants", "add", "--tenant", name, *sets, "--secrets-file", "-", stdin=json.dumps(secrets)
    )
    return run, secrets


def test_tenants_add_check_install_disable_and_enable(stack: Stack):
    """An operator adds a brand without a restart: secrets only through a file (stdin), the
    listing shows them as set, `check` fails until the data extensions exist, then passes."""
    refused = cli(stack, "tenants", "add", "--tenant", "cli-brand", "--set", "rokt_client_secret=s3cr3t")
    assert refused.returncode != 0 and "secrets-file" in refused.stderr
    added, secrets = _add_tenant(
        stack,
        "cli-brand",
        rokt_account_code="cli-brand",
        sfmc_status_de_key="Status_cli-brand",
        sfmc_subscription_de_key="Subs_cli-brand",
    )
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert shown["status"] == "active" and shown["rokt_client_secret"] == "set"
    for secret in secrets.values():
        assert secret not in added.stdout
    listed = [json.loads(line) for line in cli(stack, "tenants", "list").stdout.splitlines()]
    assert "cli-brand" in {t["name"] for t in listed}

    before = cli(stack, "tenants", "check", "--tenant", "cli-brand")
    result = json.loads(before.stdout)
    assert before.returncode == 1 and result["rokt"]["ok"] and result["sfmc"]["ok"]
    assert not result["data_extensions"]["ok"]
    installed = cli(stack, "tenants", "install-data-extensions", "--tenant", "cli-brand")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    after = cli(stack, "tenants", "check", "--tenant", "cli-brand")
    assert after.returncode == 0, after.stdout

    assert (
        json.loads(cli(stack, "tenants", "disable", "--tenant", "cli-brand").stdout)["status"] == "disabled"
    )
    assert json.loads(cli(stack, "tenants", "enable", "--tenant", "cli-brand").stdout)["status"] == "active"
    pinned = cli(stack, "tenants", "update", "--tenant", "chain", "--set", "rokt_account_code=x")
    assert pinned.returncode == 2 and "pinned" in pinned.stderr
    unknown = cli(stack, "tenants", "show", "--tenant", "nobody")
    assert unknown.returncode == 2 and "unknown tenant" in unknown.stderr


def test_tenants_check_names_the_vendor_that_refused(stack: Stack):
    added, _secrets = _add_tenant(stack, "cli-bad", rokt_client_secret="not-the-secret")
    assert added.returncode == 0, added.stderr
    checked = cli(stack, "tenants", "check", "--tenant", "cli-bad")
    result = json.loads(checked.stdout)
    assert checked.returncode == 1 and not result["rokt"]["ok"] and result["sfmc"]["ok"]
    assert "Rokt token request rejected" in result["rokt"]["reason"]
