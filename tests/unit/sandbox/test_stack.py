"""The one TENANTS_FILE writer: sandbox values, each tenant's own entries, Tenant defaults."""

import os
from dataclasses import fields

import pytest

from pipeline.sandbox import sandbox_env
from pipeline.sandbox.stack import DEFAULT_ROKT_RATE, tenant_default, tenants_toml
from pipeline.settings import Tenant, load_settings


def test_defaults_come_from_the_tenant_dataclass():
    defaults = {f.name: f.default for f in fields(Tenant)}
    assert defaults["rokt_rate_limit"] == DEFAULT_ROKT_RATE
    assert tenant_default("sfmc_status_de_key") == defaults["sfmc_status_de_key"]


def test_each_tenant_gets_the_sandbox_values_its_own_entries_and_the_defaults(tmp_path):
    values = sandbox_env("http://127.0.0.1:1", "http://127.0.0.1:2")
    path = tmp_path / "tenants.toml"
    path.write_text(
        tenants_toml(
            values,
            {
                "plain": {},
                "own": {
                    "rokt_rate_limit": 20,
                    "rokt_account_code": "own",
                    "sfmc_status_de_key": "Status_own",
                },
                "fast": {"rokt_rate_limit": 1_000_000.0, "sfmc_rate_limit": 2000},
            },
        )
    )
    tenants = load_settings({"TENANTS_FILE": str(path), "SANDBOX": "1"}).tenants
    assert set(tenants) == {"plain", "own", "fast"}
    plain, own, fast = tenants["plain"], tenants["own"], tenants["fast"]
    assert plain.jb_jwt_secret == values["JB_JWT_SECRET"] and plain.rokt_api_base_url == "http://127.0.0.1:1"
    assert plain.rokt_account_code == values["ROKT_ACCOUNT_CODE"]
    assert plain.rokt_rate_limit == tenant_default("rokt_rate_limit")
    assert plain.sfmc_rate_limit == tenant_default("sfmc_rate_limit")
    assert plain.sfmc_subscription_de_key == tenant_default("sfmc_subscription_de_key")
    assert own.rokt_rate_limit == 20 and own.rokt_account_code == "own"
    assert own.sfmc_status_de_key == "Status_own"
    assert own.sfmc_subscription_de_key == tenant_default("sfmc_subscription_de_key")
    assert fast.rokt_rate_limit == 1_000_000.0 and fast.sfmc_rate_limit == 2000


def test_an_entry_that_is_no_tenant_field_is_refused():
    with pytest.raises(ValueError, match="rokt_rate"):
        tenants_toml({}, {"t": {"rokt_rate": 20}})


def test_a_child_started_beside_running_stacks_gets_the_environment_they_found(monkeypatch):
    """Two stacks changed this process's environment (one set a variable that was not there, one
    replaced a value); what a test hands its own demo is the environment before either."""
    from pipeline.sandbox import stack

    monkeypatch.setenv("HISTORY_URL", "sqlite:///first-stack.db")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setattr(
        stack, "_CHANGED_ENVIRON", [{"HISTORY_URL": None, "LOG_LEVEL": "INFO"}, {"HISTORY_URL": "sqlite:///x"}]
    )
    outside = stack.environ_outside_stacks()
    assert "HISTORY_URL" not in outside and outside["LOG_LEVEL"] == "INFO"
    assert os.environ["HISTORY_URL"] == "sqlite:///first-stack.db"  # this process's own is untouched
