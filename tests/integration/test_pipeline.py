"""The whole chain through real Redis, two real worker processes and the simulators."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests

from pipeline.infra import keys
from pipeline.infra.queues import ROKT_QUEUE
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from tests.integration.helpers import args_of, expected_outcomes

pytestmark = pytest.mark.integration


def test_contacts_flow_to_rokt_and_back_to_sfmc_in_batches(stack: Stack):
    payloads = stack.prepare("chain", jbsim.make_contacts(150))
    result = jbsim.drive(stack.execute_url("chain"), stack.jwt_secret, payloads, concurrency=20)
    assert result.ok == 150 and result.non_200 == 0

    rows = stack.wait_terminal("chain", 150)
    assert len(rows) == 150
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    assert {row["ContactKey"] for row in rows} == {p["keyValue"] for p in payloads}
    for row in rows:
        answer = result.answers[row["ContactKey"]]
        assert row["ExecutionId"] == answer["executionId"]
        if row["Status"] == "accepted":
            assert row["RoktEventId"] == answer["roktEventId"]
        if row["Status"] == "missing_field":
            assert "FirstName" in row["Error"]
        if row["Status"] == "failed":
            assert "not found" in row["Error"]  # Rokt's own reason

    rokt = stack.rokt_state()
    accepted = expected_outcomes(payloads)["accepted"]
    assert rokt["events"] == accepted
    assert rokt["duplicate_calendar_entries"] == 0
    assert rokt["token_requests"] == 1  # one token for all worker processes
    sfmc = stack.sfmc_state()
    assert 0 < sfmc["max_rows_per_rowset"] <= 50
    assert sfmc["rowset_calls"] < 150 / 5  # batched, not one call per row
    assert sfmc["token_requests"] == 1


def test_a_jb_retry_is_deduplicated(stack: Stack):
    payload = stack.prepare("dedupe", jbsim.make_contacts(1, seed=11))[0]
    assert args_of(payload)["subscriptionId"]  # the contact's attribute, resolved as JB does
    body = jbsim.sign(payload, stack.jwt_secret)
    answers: list[dict] = []

    def send() -> None:
        response = requests.post(
            stack.execute_url("dedupe"), data=body, headers={"Content-Type": "application/jwt"}, timeout=10
        )
        assert response.status_code == 200
        answers.append(response.json())

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    send()  # and a late retry after everything settled
    assert len({tuple(sorted(a.items())) for a in answers}) == 1

    rows = stack.wait_terminal("dedupe", 1)
    assert [row["Status"] for row in rows] == ["accepted"]
    rokt = stack.rokt_state()
    assert rokt["event_posts"] == 1 and rokt["repeated_event_posts"] == 0
    assert stack.runtime.ledger.counts("dedupe")["received"] == 1


def test_two_workers_never_exceed_the_rokt_limit_in_any_second(stack: Stack):
    stack.faults("rokt", rate_limit=20)  # the simulator enforces the account limit strictly
    payloads = stack.prepare("limit", jbsim.make_contacts(120))
    result = jbsim.drive(stack.execute_url("limit"), stack.jwt_secret, payloads)
    assert result.ok == 120
    stack.wait_terminal("limit", 120)

    rokt = stack.rokt_state()
    assert rokt["events"] == expected_outcomes(payloads)["accepted"]
    # no request ever found the window full; if one did, the arrival times show by how much
    posts = requests.get(f"{stack.rokt_url}/__sandbox__/posts", timeout=10).json()
    assert rokt["throttled"] == 0, f"throttled at {posts['throttled']}; accepted at {posts['accepted']}"
    assert rokt["max_posts_in_any_1s_window"] <= 20
    for worker in stack.workers_serving(ROKT_QUEUE):  # both processes did share the work
        assert "rsf.create_rokt_event[" in worker.log_path.read_text(errors="replace")


@pytest.mark.parametrize("tenant, reject", [("lost", 0), ("lost-reject", 1)], ids=["accept", "reject"])
def test_a_create_whose_answer_was_lost_ends_accepted_once(stack: Stack, tenant: str, reject: int):
    """Rokt created the event but its answer never came back (500): the retry sends the same
    eventId, which Rokt either accepts again without a second event or refuses as taken
    (400 DuplicateEventId; docs/vendors/rokt-calendar-api.md §7 leaves open which). Either way
    the execution ends accepted, with one calendar entry and no dead letter."""
    lost = 5
    stack.faults("rokt", lose_next_answers=lost, reject_duplicate_events=reject)
    payloads = stack.prepare(tenant, jbsim.make_contacts(20, seed=16))
    assert jbsim.drive(stack.execute_url(tenant), stack.jwt_secret, payloads).ok == 20
    rows = stack.wait_terminal(tenant, 20)

    outcomes = expected_outcomes(payloads)
    assert Counter(row["Status"] for row in rows) == outcomes
    rokt = stack.rokt_state()
    assert rokt["events"] == outcomes["accepted"] and rokt["duplicate_calendar_entries"] == 0
    assert rokt["lost_answers"] == lost and rokt["repeated_event_posts"] >= lost  # each was retried
    assert rokt["refused_repeats"] == (rokt["repeated_event_posts"] if reject else 0)
    assert stack.redis.hlen(keys.dead_letters(tenant)) == outcomes["failed"] == 0


def test_a_401_from_sfmc_refreshes_the_token_once(stack: Stack):
    payloads = stack.prepare("auth", jbsim.make_contacts(40))
    jbsim.drive(stack.execute_url("auth"), stack.jwt_secret, payloads[:20])
    stack.wait_terminal("auth", 20)
    assert stack.sfmc_state()["token_requests"] == 1

    requests.post(f"{stack.sfmc_url}/__sandbox__/revoke-tokens", timeout=5)
    jbsim.drive(stack.execute_url("auth"), stack.jwt_secret, payloads[20:])
    rows = stack.wait_terminal("auth", 40)
    assert len(rows) == 40
    sfmc = stack.sfmc_state()
    assert sfmc["unauthorized"] >= 1
    assert sfmc["token_requests"] == 2  # one refresh, shared by every worker


def test_rokt_429_and_5xx_and_sfmc_5xx_lose_nothing_and_send_nothing_twice(stack: Stack):
    stack.faults("rokt", error_rate=0.2, rate_limit=8)  # below our limiter's 50/s: real 429s
    stack.faults("sfmc", fail_next=3)  # the first rowset/release calls fail: retried, not lost
    payloads = stack.prepare("faults", jbsim.make_contacts(60, seed=3))
    result = jbsim.drive(stack.execute_url("faults"), stack.jwt_secret, payloads)
    assert result.ok == 60
    rows = stack.wait_terminal("faults", 60, timeout=180)

    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    rokt = stack.rokt_state()
    assert rokt["throttled"] > 0 and rokt["injected_errors"] > 0  # the faults did happen
    assert rokt["events"] == expected_outcomes(payloads)["accepted"]
    assert rokt["duplicate_calendar_entries"] == 0
    assert stack.sfmc_state()["injected_errors"] == 3
