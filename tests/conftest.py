"""The suite's collection rule for `pytest -n` (make test spreads the suite over the cores).

The integration tests share one session stack (tests/integration/conftest.py: Redis, workers, the
simulators) and set this process's environment while it runs, so they keep to one worker, in the
order they would run without -n; a demo the e2e tests start in another worker then never inherits
that stack's settings. Everything else is spread over the workers test by test.
"""

from __future__ import annotations

import pytest

SHARED_STACK_GROUP = "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if SHARED_STACK_GROUP in item.path.parts:
            item.add_marker(pytest.mark.xdist_group(SHARED_STACK_GROUP))
