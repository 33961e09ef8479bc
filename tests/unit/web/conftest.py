"""Fixtures of the web tests."""

import pytest

from tests.unit.web.signed import make


@pytest.fixture
def parts(fake_redis):
    """make(): runtime, test client, executes that reached the intake, webhooks enqueued."""
    return make(fake_redis)
