"""Ledger state rules, on fakeredis with Lua; the move that answers the execution's hash."""

from datetime import UTC, datetime

import pytest

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.stores.ledger import IllegalTransition, Ledger, event_id_for, execution_id
from pipeline.vocabulary import NEXT_STATES, State, states_leading_to
from tests.unit.conftest import claim_execution


def test_ids_are_deterministic_and_distinct():
    assert execution_id("a", "b") == execution_id("a", "b")
    assert execution_id("a", "b") != execution_id("a", "c")
    assert event_id_for(execution_id("a", "b")) == event_id_for(execution_id("a", "b"))
    assert event_id_for("x") != event_id_for("y")


def test_claim_is_set_if_absent(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.claim("t", "e1", {"contactKey": "C1", "args": {"a": 1}}) is True
    assert ledger.claim("t", "e1", {"contactKey": "C2"}) is False
    assert ledger.get("t", "e1").contact_key == "C1"
    assert ledger.get("t", "e1").args == {"a": 1}
    assert ledger.open_count("t") == 1
    assert fake_redis.ttl("rsf:t:exec:e1") > 0


def test_tenants_do_not_share_executions(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.claim("brand-a", "e1", {})
    assert ledger.claim("brand-b", "e1", {})


def test_transition_only_from_allowed_states(fake_redis):
    ledger = Ledger(fake_redis)
    ledger.claim("t", "e1", {})
    assert ledger.transition("t", "e1", State.ACCEPTED) == (True, State.QUEUED)
    assert ledger.transition("t", "e1", State.FAILED) == (False, State.ACCEPTED)  # terminal stays terminal
    assert ledger.transition("t", "e1", State.CONFIRMED, (State.ACCEPTED,)) == (True, State.ACCEPTED)
    assert ledger.transition("t", "missing", State.ACCEPTED) == (False, "")
    assert ledger.open_count("t") == 0
    assert ledger.counts("t") == {"received": 1, "accepted": 0, "confirmed": 1}


def test_every_state_has_its_next_states_and_reaches_a_final_one():
    """NEXT_STATES is the one table of moves: every state is in it, and none is a dead end short
    of a final state (one with no next state), so nothing can wait for ever."""
    assert set(NEXT_STATES) == set(State)
    final = {state for state, after in NEXT_STATES.items() if not after}
    assert final and State.QUEUED not in final
    for start in State:
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for s in frontier for n in NEXT_STATES[s] if n not in seen]
            seen.update(frontier)
        assert seen & final, f"{start} never reaches a final state"


def test_the_ledger_refuses_a_move_the_table_does_not_allow(fake_redis):
    ledger = Ledger(fake_redis)
    ledger.claim("t", "e1", {})
    with pytest.raises(IllegalTransition, match="queued -> confirmed"):
        ledger.transition("t", "e1", State.CONFIRMED)  # from queued: not in the table
    with pytest.raises(IllegalTransition, match="removed -> queued"):
        ledger.transition_get("t", "e1", State.QUEUED, (State.FAILED, State.REMOVED))
    assert ledger.get("t", "e1").status == State.QUEUED  # refused before Redis was touched
    assert states_leading_to(State.REMOVED) == (State.ACCEPTED, State.CONFIRMED, State.UPDATED)


# -- per-template open counts and per-activity stats, kept by the Lua scripts --


def claim(ledger, execution, template="tpl-1", activity="act-1"):
    record = {"activityId": activity, "eventId": f"ev-{execution}", "args": {"templateId": template}}
    return ledger.claim("t", execution, record)


def test_template_open_count_follows_queued_executions(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.open_count_for_template("t", "tpl-1") == 0
    claim(ledger, "e1")
    claim(ledger, "e2")
    claim(ledger, "e3", template="tpl-2")
    assert not claim(ledger, "e1")  # a JB retry counts nothing twice
    assert fake_redis.hget("rsf:t:exec:e1", "templateId") == "tpl-1"
    assert ledger.open_count_for_template("t", "tpl-1") == 2
    assert ledger.open_count_for_template("t", "tpl-2") == 1
    assert ledger.open_count_for_template("other", "tpl-1") == 0

    ledger.transition("t", "e1", State.ACCEPTED)
    assert ledger.open_count_for_template("t", "tpl-1") == 1
    ledger.transition("t", "e1", State.CONFIRMED, (State.ACCEPTED,))  # not from queued: no change
    assert ledger.transition("t", "e1", State.FAILED) == (False, State.CONFIRMED)
    assert ledger.open_count_for_template("t", "tpl-1") == 1

    ledger.transition("t", "e2", State.FAILED, error="boom")
    assert ledger.open_count_for_template("t", "tpl-1") == 0
    assert ledger.reopen("t", "e2") is True
    assert ledger.open_count_for_template("t", "tpl-1") == 1
    assert ledger.reopen("t", "e2") is False  # only a failed execution reopens
    assert ledger.open_count_for_template("t", "tpl-1") == 1

    assert fake_redis.ttl(keys.template_open("t")) > 0


def test_activity_stats_count_states_and_top_failures(fake_redis):
    ledger = Ledger(fake_redis)
    empty = ledger.activity_stats("t", "act-1")
    assert empty == {"counts": {str(s): 0 for s in State}, "topFailures": [], "missingFields": []}
    for i in range(12):
        claim(ledger, f"e{i}")
    claim(ledger, "other", activity="act-2")
    ledger.transition("t", "e0", State.ACCEPTED)
    ledger.transition("t", "e1", State.ACCEPTED)
    ledger.transition("t", "e1", State.CONFIRMED, (State.ACCEPTED,))
    ledger.transition("t", "e2", State.NO_SUBSCRIPTION)
    ledger.transition("t", "e3", State.MISSING_FIELD, error="missing value for FirstName")
    long_reason = "x" * 300
    reasons = ["rokt 400", "rokt 400", "rokt 400", "timeout", "timeout", long_reason, "a", "b"]
    for i, reason in enumerate(reasons, start=4):
        ledger.transition("t", f"e{i}", State.FAILED, error=reason)

    stats = ledger.activity_stats("t", "act-1")
    assert stats["counts"] == {
        "queued": 0,
        "accepted": 1,
        "confirmed": 1,
        "no_subscription": 1,
        "missing_field": 1,
        "failed": 8,
        "removed": 0,
        "updated": 0,
        "cancelled": 0,
        "withdrawn": 0,
    }
    top = stats["topFailures"]
    assert len(top) == 5
    assert top[:2] == [{"reason": "rokt 400", "count": 3}, {"reason": "timeout", "count": 2}]
    assert {"reason": "x" * 200, "count": 1} in top  # cut to 200 characters
    # a missing_field execution says which field, apart from the failures
    assert stats["missingFields"] == [{"reason": "missing value for FirstName", "count": 1}]
    assert ledger.activity_stats("t", "act-2")["counts"]["queued"] == 1  # activities kept apart

    # a replay takes a failure back out; accepted -> failed (reconciliation) counts one in
    assert ledger.reopen("t", "e4")
    ledger.transition("t", "e0", State.FAILED, (State.ACCEPTED,), error="unconfirmed")
    stats = ledger.activity_stats("t", "act-1")
    assert stats["counts"]["queued"] == 1 and stats["counts"]["accepted"] == 0
    assert stats["counts"]["failed"] == 8
    top = stats["topFailures"]
    assert sorted(top[:2], key=lambda f: f["reason"]) == [
        {"reason": "rokt 400", "count": 2},
        {"reason": "timeout", "count": 2},
    ]
    assert [f["count"] for f in top[2:]] == [1, 1, 1]
    assert fake_redis.zscore(keys.activity_failures("t", "act-1"), "unconfirmed") == 1
    assert fake_redis.ttl(keys.activity_counts("t", "act-1")) > 0
    assert fake_redis.ttl(keys.activity_failures("t", "act-1")) > 0


def test_failure_reasons_leave_when_their_last_execution_is_replayed(fake_redis):
    ledger = Ledger(fake_redis)
    claim(ledger, "e1")
    ledger.transition("t", "e1", State.FAILED, error="")
    assert ledger.activity_stats("t", "act-1")["topFailures"] == [
        {"reason": "(no reason recorded)", "count": 1}
    ]
    ledger.reopen("t", "e1")
    assert ledger.activity_stats("t", "act-1")["topFailures"] == []
    ledger.transition("t", "e1", State.ACCEPTED)
    assert ledger.activity_stats("t", "act-1")["counts"]["accepted"] == 1


def test_executions_claimed_before_the_counters_never_drive_them_negative(fake_redis):
    ledger = Ledger(fake_redis)
    fake_redis.hset(
        "rsf:t:exec:old", mapping={"status": "queued", "activityId": "act-1", "templateId": "tpl-1"}
    )
    assert ledger.transition("t", "old", State.FAILED, error="boom") == (True, State.QUEUED)
    stats = ledger.activity_stats("t", "act-1")
    assert stats["counts"]["queued"] == 0 and stats["counts"]["failed"] == 0
    assert fake_redis.hget(keys.template_open("t"), "tpl-1") is None


def test_counts_stay_exact_under_concurrent_moves(fake_redis):
    from concurrent.futures import ThreadPoolExecutor

    ledger = Ledger(fake_redis)
    for i in range(40):
        claim(ledger, f"e{i}")

    def race(i):  # two workers try to finish the same execution differently
        a = ledger.transition("t", f"e{i}", State.ACCEPTED)
        b = ledger.transition("t", f"e{i}", State.FAILED, error="late")
        return a[0] + b[0]

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(race, range(40))) == 40
    stats = ledger.activity_stats("t", "act-1")
    assert stats["counts"]["queued"] == 0
    assert stats["counts"]["accepted"] + stats["counts"]["failed"] == 40
    assert ledger.open_count_for_template("t", "tpl-1") == 0


# -- the contact index and erasure (`rokt-sfmc forget`) --


def test_a_claim_indexes_the_execution_under_a_digest_of_its_contact_key(fake_redis):
    ledger = Ledger(fake_redis)
    ledger.claim("t", "e1", {"contactKey": "C1"})
    ledger.claim("t", "e2", {"contactKey": "C1"})
    ledger.claim("t", "e3", {"contactKey": "C2"})
    ledger.claim("t", "e4", {})  # no contact key: not indexed
    assert ledger.executions_of_contact("t", "C1") == ["e1", "e2"]
    assert ledger.executions_of_contact("t", "") == []
    key = ledger.contact_index("t", "C1")
    assert key == keys.contact_executions("t", keys.personal_digest(deployment_salt(fake_redis), "t", "C1"))
    assert "C1" not in key and fake_redis.ttl(key) > 0
    assert ledger.claim("t", "e1", {"contactKey": "C9"}) is False  # a repeated claim indexes nothing
    assert ledger.executions_of_contact("t", "C9") == []


def test_forget_removes_an_execution_and_its_indexes(fake_redis):
    ledger = Ledger(fake_redis)
    claim(ledger, "e1")
    fake_redis.hset("rsf:t:exec:e1", "contactKey", "C1")
    ledger.transition("t", "e1", State.ACCEPTED)
    assert ledger.execution_for_event("t", "ev-e1") == "e1"
    assert ledger.forget("t", "e1", "C1") is True
    assert ledger.get("t", "e1") is None
    assert ledger.execution_for_event("t", "ev-e1") is None
    assert fake_redis.zcard(keys.awaiting("t")) == 0
    assert ledger.forget("t", "e1", "C1") is False


def test_forget_of_a_queued_execution_stops_it_counting_as_open(fake_redis):
    ledger = Ledger(fake_redis)
    claim(ledger, "e1")
    assert ledger.open_count_for_template("t", "tpl-1") == 1
    assert ledger.activity_stats("t", "act-1")["counts"]["queued"] == 1
    ledger.forget("t", "e1")
    assert ledger.open_count("t") == 0
    assert ledger.open_count_for_template("t", "tpl-1") == 0
    assert ledger.activity_stats("t", "act-1")["counts"]["queued"] == 0


# -- the move that answers the hash --


def test_transition_get_answers_the_hash_after_the_move(runtime):
    claim_execution(runtime, "e1", templateId="t", FirstName="A")
    moved, ex = runtime.ledger.transition_get("default", "e1", State.FAILED, error="boom")
    assert moved is True
    assert ex.fields == runtime.ledger.get("default", "e1").fields
    assert (
        ex.status == "failed"
        and ex.fields["error"] == "boom"
        and ex.args == {"templateId": "t", "FirstName": "A"}
    )
    # not allowed from `failed`: nothing moves, and the hash is still answered
    moved, again = runtime.ledger.transition_get("default", "e1", State.ACCEPTED)
    assert moved is False and again.status == "failed"
    assert runtime.ledger.counts("default")["failed"] == 1 and "accepted" not in runtime.ledger.counts(
        "default"
    )


def test_transition_get_of_an_unknown_execution_is_none(runtime):
    assert runtime.ledger.transition_get("default", "nope", State.FAILED) == (False, None)
    assert runtime.ledger.transition("default", "nope", State.FAILED) == (False, "")


def test_missing_fields_never_hide_the_failures_of_an_activity(fake_redis):
    """Reasons of failed and of missing_field executions are counted apart: 60 distinct missing
    fields leave the 3 real failures listed (they once shared one set read 50 at a time)."""
    ledger = Ledger(fake_redis)
    for n in range(60):
        claim(ledger, f"m{n}")
        ledger.transition("t", f"m{n}", State.MISSING_FIELD, error=f"missing value for Field{n}")
    for n in range(3):
        claim(ledger, f"f{n}")
        ledger.transition("t", f"f{n}", State.FAILED, error="Rokt refused: 400")
    stats = ledger.activity_stats("t", "act-1")
    assert stats["counts"]["failed"] == 3 and stats["counts"]["missing_field"] == 60
    assert stats["topFailures"] == [{"reason": "Rokt refused: 400", "count": 3}]
    assert len(stats["missingFields"]) == 5
    assert all(m["reason"].startswith("missing value for Field") for m in stats["missingFields"])
    ledger.reopen("t", "f0")  # a replay takes one failure out of the count, not a missing field
    assert ledger.activity_stats("t", "act-1")["topFailures"] == [{"reason": "Rokt refused: 400", "count": 2}]
    assert fake_redis.zcard(keys.activity_missing("t", "act-1")) == 60


def test_an_activitys_moves_are_counted_per_day_once_each(fake_redis):
    ledger = Ledger(fake_redis)
    for name in ("e1", "e2"):
        claim(ledger, name)
        ledger.transition("t", name, State.ACCEPTED)
    ledger.transition("t", "e1", State.CONFIRMED, (State.ACCEPTED,))
    ledger.transition("t", "e1", State.UPDATED, (State.CONFIRMED,))
    ledger.transition("t", "e1", State.UPDATED, (State.CONFIRMED,))  # refused: counted once
    ledger.transition("t", "e2", State.REMOVED, (State.ACCEPTED,))
    (today,) = ledger.activity_stats("t", "act-1", days=1)["days"]
    assert {name: n for name, n in today.items() if n} == {
        "day": datetime.now(UTC).date().isoformat(),
        "entered": 2,
        "created": 2,
        "in_calendars": 1,
        "updated": 1,
        "removed": 1,
    }
    assert "days" not in ledger.activity_stats("t", "act-1")


def test_an_event_accepted_again_after_a_replay_counts_once_among_its_templates_sent(fake_redis):
    ledger = Ledger(fake_redis)
    claim(ledger, "e1")
    ledger.transition("t", "e1", State.ACCEPTED)
    ledger.transition("t", "e1", State.FAILED, (State.ACCEPTED,), error="never confirmed")
    assert ledger.reopen("t", "e1")
    ledger.transition("t", "e1", State.ACCEPTED)  # the same eventId, sent again
    assert fake_redis.hget(keys.template_sent("t"), "tpl-1") == "1"


def test_a_restore_refuses_a_copy_older_than_the_version_archived(runtime):
    from pipeline.stores.ledger import RESTORED, STALE, WHOLE

    tenant = "default"
    claim_execution(runtime, "e1")
    runtime.ledger.transition(tenant, "e1", State.NO_SUBSCRIPTION)
    key, history = keys.execution(tenant, "e1"), keys.outbox(tenant, "history")
    older = runtime.redis.hgetall(key)  # what a click read from the store
    later = "2999-01-01T00:00:00.000+00:00"
    runtime.redis.hset(key, mapping={"clicks": "1", "updatedAt": later})  # another click, then archived
    newer = runtime.redis.hgetall(key)
    assert runtime.ledger.archive(tenant, "e1", newer, 60) == 1
    tombstone = runtime.redis.hgetall(key)
    assert tombstone == {"status": "no_subscription", "archived": "1", "updatedAt": later}
    queued = runtime.redis.xlen(history)

    assert runtime.ledger.restore(tenant, "e1", older) == STALE  # nothing written
    assert runtime.redis.hgetall(key) == tombstone and runtime.redis.xlen(history) == queued
    undated = {name: value for name, value in older.items() if name != "updatedAt"}
    assert runtime.ledger.restore(tenant, "e1", undated) == STALE
    assert runtime.ledger.restore(tenant, "e1", newer) == RESTORED
    assert runtime.redis.hgetall(key) == newer and runtime.redis.xlen(history) == queued + 1
    assert runtime.ledger.restore(tenant, "e1", older) == WHOLE  # whole: left as it is
    assert runtime.redis.hgetall(key) == newer


def test_a_tombstone_an_older_version_left_restores_any_copy(runtime):
    from pipeline.stores.ledger import RESTORED

    claim_execution(runtime, "e1")
    runtime.ledger.transition("default", "e1", State.NO_SUBSCRIPTION)
    key = keys.execution("default", "e1")
    record = runtime.redis.hgetall(key)
    runtime.redis.delete(key)
    runtime.redis.hset(key, mapping={"status": "no_subscription", "archived": "1"})  # no updatedAt
    assert runtime.ledger.restore("default", "e1", record) == RESTORED
    assert runtime.redis.hgetall(key) == record
    runtime.redis.delete(key)  # past the tombstone's lifetime: nothing to compare with
    assert runtime.ledger.restore("default", "e1", record) == RESTORED
