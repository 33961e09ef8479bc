"""Real parts: a redis-server of our own on a free port, Celery worker processes, the
sandbox simulators (their own process, as in production the vendors are) and the web app
served over HTTP on loopback, in this process so that its log lines land in this process's log.

Workers are started once per session; each test uses its own tenant (own Redis keys, own
Rokt account and data extension at the simulators), so tests never see each other's data.
When the session ends, every log it wrote is checked for secrets and plain emails, and its Redis
for key names carrying a contact key or an email.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pipeline.sandbox.stack import Stack
from tests.integration.helpers import LIMITER_ENV, TENANTS
from tests.keyspace_check import check_keyspace
from tests.log_check import TEST_PROCESS_LOG, WORKER_NAME, check_logs


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("stack")
    # everything this process logs (web app, simulators' clients) goes to a file checked at the end
    log_handler = logging.FileHandler(run_dir / TEST_PROCESS_LOG)
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(log_handler)
    root.setLevel(logging.INFO)
    try:
        with Stack(
            run_dir, TENANTS, web="thread", env={"LOG_LEVEL": "INFO", **LIMITER_ENV}, worker_name=WORKER_NAME
        ) as stack:
            # as compose runs them: render and the rest on prefork, the Rokt stage on threads
            # (two instances: the limiter is shared across processes)
            stack.start_split_workers(render=1, rokt=2, render_concurrency=4, rokt_concurrency=8)
            yield stack
            # before its Redis stops: no key name carries a contact key or an email the run saw
            check_keyspace(stack.redis, stack.runtime.history)
    finally:
        root.removeHandler(log_handler)
        log_handler.close()
    # every process has stopped, so every line is on disk; a leak fails the session (an error
    # at teardown), whichever integration tests ran and in whatever order
    check_logs(run_dir)


@pytest.fixture(autouse=True)
def fresh_simulators(stack: Stack) -> Iterator[None]:
    """Each test starts with empty simulators and no faults."""
    stack.reset_simulators()
    yield
