"""An admin mistypes the tenant's SFMC client secret in the middle of a run: SFMC refuses the token,
the tenant's status rows wait in its outbox (no dead letter), the SFMC simulator sees a bounded
number of token requests, and once the right secret is saved every row reaches SFMC.

A stack of its own, with beat: the parked rows go out by beat's outbox pass once the secret is
fixed, as in production (the session's stack runs no beat)."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from pipeline.clients import tokens
from pipeline.ops import figures
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.stores.deadletters import count_dead_letters
from pipeline.vocabulary import OUTBOX_STAGES, OutboxKind
from tests.integration.helpers import LIMITER_ENV, expected_outcomes
from tests.log_check import TEST_PROCESS_LOG, WORKER_NAME, check_logs

pytestmark = pytest.mark.integration

TENANT = "credpark"
WRONG_SECRET = "a-mistyped-sfmc-secret-4f1c9e2a7b"
PARKED_SECONDS = 75.0  # how long the run goes on with the wrong secret: past one hold


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("credpark")
    log_handler = logging.FileHandler(run_dir / TEST_PROCESS_LOG)
    root = logging.getLogger()
    root.addHandler(log_handler)
    try:
        env = {"LOG_LEVEL": "INFO", "TENANT_REFRESH_SECONDS": "1", **LIMITER_ENV}
        with Stack(run_dir, {}, web="thread", env=env, worker_name=WORKER_NAME) as stack:
            stack.start_workers(1)
            stack.start_beat()
            yield stack
    finally:
        root.removeHandler(log_handler)
        log_handler.close()
    check_logs(run_dir)  # the refusals' reasons logged: no secret in any line


def _sfmc_dead_letters(stack: Stack) -> int:
    """Dead letters of the stages that write to SFMC (status rows, subscriptions, releases)."""
    by_stage = figures.dead_letters(stack.redis, TENANT)
    return sum(sum(by_stage.get(str(stage), {}).values()) for stage in OUTBOX_STAGES.values())


def _token_requests(stack: Stack) -> int:
    return int(stack.sfmc_state()["token_requests"])


def test_a_mistyped_secret_mid_run_parks_the_rows_and_the_fix_sends_them_all(own_stack: Stack):
    stack = own_stack
    stack.add_tenant(TENANT)
    right_secret = stack.tenant(TENANT).sfmc_client_secret
    contacts = jbsim.make_contacts(120)
    payloads = stack.prepare(TENANT, contacts)
    first, second = payloads[:60], payloads[60:]

    result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, first, concurrency=8)
    assert result.ok == 60
    stack.wait_terminal(TENANT, 60, timeout=90)

    # the admin's typo, saved in App Settings: the cached token goes with the old secret
    stack.runtime.registry.update(TENANT, {"sfmc_client_secret": WRONG_SECRET})
    tokens_before = _token_requests(stack)
    started = time.monotonic()
    result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, second, concurrency=8)
    assert result.ok == 60  # executes are still accepted: Rokt is fine
    stack.wait(lambda: stack.runtime.ledger.open_count(TENANT) == 0, 90, "the second half finished")
    stack.wait(
        lambda: tokens.rejection(stack.redis, TENANT, "sfmc") is not None, 30, "the tenant marked rejected"
    )
    time.sleep(max(0.0, PARKED_SECONDS - (time.monotonic() - started)))  # beat's passes meanwhile
    parked_for = time.monotonic() - started
    asked = _token_requests(stack) - tokens_before

    assert len(stack.rows(TENANT)) == 60  # nothing of the second half reached SFMC
    assert _sfmc_dead_letters(stack) == 0
    assert stack.runtime.outbox(TENANT, OutboxKind.STATUS_ROWS).backlog() >= 60
    assert 1 <= asked <= math.ceil(parked_for / tokens.REFUSED_RETRY_SECONDS) + 1, asked
    seen = figures.tenant_figures(stack.runtime, TENANT, stack.tenant(TENANT))
    assert seen["reconnectNeeded"] is True and "client credentials" in seen["sfmcCredentialsRejected"]

    fixed_at = time.monotonic()
    stack.runtime.registry.update(TENANT, {"sfmc_client_secret": right_secret})  # the fix, saved
    rows = stack.wait_terminal(TENANT, 120, timeout=120)
    flushed_after = time.monotonic() - fixed_at
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    assert {row["ContactKey"] for row in rows} == {p["keyValue"] for p in payloads}
    assert _sfmc_dead_letters(stack) == 0
    # the only dead letters are the contacts Rokt refuses by design (an unknown subscription)
    assert count_dead_letters(stack.redis, TENANT) == expected_outcomes(payloads)["failed"]
    assert tokens.rejection(stack.redis, TENANT, "sfmc") is None
    logging.getLogger(__name__).info(
        "refused credentials: %d token requests in %.0f s parked; every row in SFMC %.1f s after the fix",
        asked,
        parked_for,
        flushed_after,
    )
    print(
        f"parked: {asked} token requests in {parked_for:.0f} s; all rows {flushed_after:.1f} s after the fix"
    )
