"""The suite's collection rule for `pytest -n` (make test spreads the suite over the cores).

The integration tests share one session stack (tests/integration/conftest.py: Redis, workers, the
simulators) and set this process's environment while it runs, so they keep to one worker, in the
order they would run without -n. Each browser and e2e module keeps to one worker too: its tests
share a module's stack and browser, and some take up where the one before left off (the live
sandbox's admin, then its marketer). Unit tests are spread over the workers one by one.
"""

from __future__ import annotations

import pytest

SHARED_STACK_GROUP = "integration"
WHOLE_MODULES = ("browser", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if SHARED_STACK_GROUP in item.path.parts:
            item.add_marker(pytest.mark.xdist_group(SHARED_STACK_GROUP))
        elif any(kind in item.path.parts for kind in WHOLE_MODULES):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
