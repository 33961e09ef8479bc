"""Runs last in the integration session: every log line written by the service processes
(workers, the sandbox) and by this process (the web app) holds no secret and no plain email."""

from __future__ import annotations

import re

import pytest

from pipeline.sandbox import rokt, sandbox_env, sfmc
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def test_logs_hold_no_secret_and_no_unmasked_email(stack: Stack):
    logs = {path.name: path.read_text(errors="replace") for path in stack.run_dir.glob("*.log")}
    assert any(name.startswith("w") for name in logs) and "test-process.log" in logs
    assert sum(len(text) for text in logs.values()) > 10_000  # the suite did log plenty
    values = sandbox_env("http://x", "http://y")
    secrets = {
        "JWT signing secret": values["JB_JWT_SECRET"],
        "webhook secret": values["ROKT_WEBHOOK_SECRET"],
        "Rokt client secret": rokt.DEFAULT_CLIENT_SECRET,
        "SFMC client secret": sfmc.DEFAULT_CLIENT_SECRET,
    }
    for name, text in logs.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in {name}"
        assert "Bearer " not in text, f"a bearer token in {name}"
        emails = EMAIL.findall(text)
        assert not emails, f"unmasked email(s) in {name}: {emails[:3]}"
