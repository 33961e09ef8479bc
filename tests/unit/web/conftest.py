"""Fixtures of the web tests."""

import pytest

from pipeline.web import create_app
from tests.unit.web.signed import make


@pytest.fixture(autouse=True)
def every_click_counts(monkeypatch):
    """Repeated clicks on one event count once within CLICK_REPEAT_SECONDS; these tests click
    in quick succession to count each (tests/unit/web/test_click_repeats.py tests the window)."""
    monkeypatch.setattr("pipeline.stores.clicks.CLICK_REPEAT_SECONDS", 0)


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
