"""How `pytest -n --dist loadscope` (make test) spreads the suite over its workers.

The integration tests share one session stack (tests/integration/conftest.py: Redis, workers, the
simulators) and set this process's environment while it runs, so they are one unit of work: one
worker, in the order they would run without -n. Each browser and e2e module is one unit too: its
tests share a module's stack and browser, and some take up where the one before left off (the
live sandbox's admin, then its marketer). Unit tests go one by one to whichever worker is free.

(xdist's own `loadgroup` cannot say this here: it renames the items' `_nodeid`, which pytest 9 no
longer reads, so its groups are silently ignored.)
"""

from __future__ import annotations

import pytest

SHARED_STACK = "tests/integration/"
ONE_BY_ONE = "tests/unit/"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadscope":
        return None  # xdist's own choice
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(SHARED_STACK):
                return SHARED_STACK
            if nodeid.startswith(ONE_BY_ONE):
                return nodeid
            return nodeid.split("::", 1)[0]  # a browser or e2e module

    return SuiteScopes(config, log)
