"""Fixtures of the web tests."""

import pytest

from pipeline.web import create_app
from tests.unit.web.signed import make


@pytest.fixture
def parts(fake_redis):
    """make(): runtime, test client, executes that reached the intake, webhooks enqueued."""
    return make(fake_redis)


@pytest.fixture
def rt_client(rt):
    """A test client of the app over `rt` (tenants stored in its registry); webhooks it enqueues
    are kept in `app.test_client_calls`."""
    calls = []
    app = create_app(rt, enqueue_webhook=lambda t, e: calls.append(e))
    app.test_client_calls = calls
    return app.test_client()
