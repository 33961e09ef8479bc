"""Rokt's webhooks about an event after it was sent (SubscriptionEventUpdated, -Removed, -Deleted)
move the execution as EVENT_MOVES says, its status row shows the move and why, and the
activity's per-day counters count each move once, however often Rokt tells us."""

import json

import pytest

from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.journeys import executions
from pipeline.stores import performance
from pipeline.stores.ledger import PENDING_FIELD, event_id_for
from pipeline.subscriptions.webhooks import EVENT_MOVES, NotYetAccepted, claim_webhook, process_webhook
from pipeline.vocabulary import OutboxKind, State
from schemas.rokt_webhook import EVENT_ADDED, EVENT_DELETED, EVENT_REMOVED, EVENT_UPDATED, EnvelopeSchema
from tests.unit.samples import RECEIPT_TTL

ACTIVITY = "act-7"
MOVED = (OutboxKind.STATUS_ROWS, OutboxKind.RELEASES, OutboxKind.SUBSCRIPTION_HISTORY)
NOT_MOVED = (OutboxKind.SUBSCRIPTION_HISTORY,)  # the receipt alone


def sent(runtime, execution, *states):
    """An execution of ACTIVITY whose event Rokt accepted, then moved through `states`."""
    runtime.ledger.claim(
        "default",
        execution,
        {"contactKey": "C1", "eventId": event_id_for(execution), "activityId": ACTIVITY, "args": {}},
    )
    previous = State.QUEUED
    for state in (State.ACCEPTED, *states):
        assert runtime.ledger.transition("default", execution, state, (previous,))[0]
        previous = state
    return event_id_for(execution)


def webhook(runtime, kind, rokt_event_id, hook_id):
    """One webhook of Rokt as the receiver stores it (a valid envelope), then processed."""
    envelope = {
        "eventId": hook_id,
        "eventType": kind,
        "eventDetails": {
            "accountId": "acct",
            "subscription": {"calendarSubscriptionId": "sub-1"},
            "subscriptionEvent": {"eventId": rokt_event_id},
        },
    }
    assert EnvelopeSchema().validate(envelope) == {}
    if not claim_webhook(runtime.redis, "default", envelope, ttl_seconds=RECEIPT_TTL):
        return None  # a duplicate: the receiver does not enqueue it
    return process_webhook(runtime, "default", hook_id)


def status(runtime, execution):
    return runtime.ledger.get("default", execution).status


def status_rows(runtime):
    return [json.loads(f["p"])["values"] for _id, f in runtime.redis.xrange("rsf:default:outbox:status")]


def today(runtime, activity=ACTIVITY):
    """The activity's figures today (the tenant's reporting day, UTC here) that are not zero."""
    (day,) = performance.read_days(runtime.redis, "default", [performance.local_day("UTC")], activity)
    return {name: n for name, n in day.figures.items() if n}


def test_the_table_of_moves():
    assert EVENT_MOVES[EVENT_UPDATED][:2] == (State.UPDATED, (State.ACCEPTED, State.CONFIRMED))
    assert EVENT_MOVES[EVENT_REMOVED][0] == State.REMOVED
    assert EVENT_MOVES[EVENT_DELETED][0] == State.CANCELLED


@pytest.mark.parametrize("before", [(), (State.CONFIRMED,)], ids=["accepted", "confirmed"])
def test_updated_moves_a_held_event_to_updated_once(runtime, before):
    event = sent(runtime, "e1", *before)
    assert webhook(runtime, EVENT_UPDATED, event, "hook-1") == MOVED
    assert status(runtime, "e1") == State.UPDATED
    assert (
        status_rows(runtime)[-1]["Status"] == "updated" and status_rows(runtime)[-1]["RoktEventId"] == event
    )
    assert webhook(runtime, EVENT_UPDATED, event, "hook-1") is None  # Rokt's retry: a duplicate
    assert webhook(runtime, EVENT_UPDATED, event, "hook-2") == NOT_MOVED  # another subscription's
    assert status(runtime, "e1") == State.UPDATED
    assert today(runtime) == {
        "entered": 1,
        "created": 1,
        "updated": 1,
        **({"in_calendars": 1} if before else {}),
    }


def test_an_update_that_overtook_our_202_waits(runtime):
    runtime.ledger.claim("default", "e1", {"eventId": event_id_for("e1"), "activityId": ACTIVITY, "args": {}})
    with pytest.raises(NotYetAccepted):
        webhook(runtime, EVENT_UPDATED, event_id_for("e1"), "hook-1")
    assert status(runtime, "e1") == State.QUEUED and today(runtime) == {"entered": 1}


@pytest.mark.parametrize("final", [State.REMOVED, State.CANCELLED, State.WITHDRAWN])
def test_updated_does_not_bring_back_an_event_that_left_the_calendar(runtime, final):
    event = sent(runtime, "e1", final)
    assert webhook(runtime, EVENT_UPDATED, event, "hook-1") == NOT_MOVED
    assert status(runtime, "e1") == final
    figure = {State.CANCELLED: "deleted"}.get(final, final.value)
    assert today(runtime) == {"entered": 1, "created": 1, figure: 1}


@pytest.mark.parametrize("before", [(), (State.CONFIRMED,), (State.CONFIRMED, State.UPDATED)])
def test_removed_by_the_subscriber_shows_why_and_counts_once(runtime, before):
    event = sent(runtime, "e1", *before)
    assert webhook(runtime, EVENT_REMOVED, event, "hook-1") == MOVED
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == State.REMOVED and ex.fields["error"] == "removed from the calendar by the subscriber"
    row = status_rows(runtime)[-1]
    assert row["Status"] == "removed" and row["Error"] == ex.fields["error"] and row["RoktEventId"] == ""
    assert webhook(runtime, EVENT_REMOVED, event, "hook-2") == NOT_MOVED  # a second subscription's
    assert today(runtime)["removed"] == 1


@pytest.mark.parametrize("before", [(), (State.CONFIRMED,), (State.CONFIRMED, State.UPDATED)])
def test_deleted_at_rokt_cancels_the_execution_and_counts_once(runtime, before):
    event = sent(runtime, "e1", *before)
    assert webhook(runtime, EVENT_DELETED, event, "hook-1") == MOVED
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == State.CANCELLED and ex.fields["error"] == "deleted at Rokt (every calendar)"
    assert status_rows(runtime)[-1]["Status"] == "cancelled"
    assert webhook(runtime, EVENT_DELETED, event, "hook-2") == NOT_MOVED
    assert webhook(runtime, EVENT_REMOVED, event, "hook-3") == NOT_MOVED  # cancelled is final
    assert today(runtime)["deleted"] == 1 and "removed" not in today(runtime)


def test_a_delete_after_our_own_cancel_moves_nothing_again(runtime):
    event = sent(runtime, "e1", State.CONFIRMED)
    assert runtime.ledger.transition(
        "default", "e1", State.CANCELLED, (State.CONFIRMED,), error="cancelled: legal"
    )[0]
    assert webhook(runtime, EVENT_DELETED, event, "hook-1") == NOT_MOVED
    assert runtime.ledger.get("default", "e1").fields["error"] == "cancelled: legal"  # the job's reason stays
    assert today(runtime) == {"entered": 1, "created": 1, "in_calendars": 1, "deleted": 1}


def test_a_move_of_an_execution_already_in_the_history_store_counts_once(runtime):
    event = sent(runtime, "e1", State.CONFIRMED)
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert runtime.redis.hget(keys.execution("default", "e1"), "archived") == "1"  # a tombstone
    assert webhook(runtime, EVENT_REMOVED, event, "hook-1") == MOVED
    assert status(runtime, "e1") == State.REMOVED
    assert webhook(runtime, EVENT_REMOVED, event, "hook-2") == NOT_MOVED
    assert today(runtime) == {"entered": 1, "created": 1, "in_calendars": 1, "removed": 1}


def test_each_activity_counts_its_own_moves(runtime):
    event = sent(runtime, "e1")
    runtime.ledger.claim(
        "default", "x1", {"eventId": event_id_for("x1"), "activityId": "act-other", "args": {}}
    )
    runtime.ledger.transition("default", "x1", State.ACCEPTED)
    webhook(runtime, EVENT_ADDED, event, "hook-1")
    webhook(runtime, EVENT_UPDATED, event, "hook-2")
    webhook(runtime, EVENT_DELETED, event_id_for("x1"), "hook-3")
    assert today(runtime) == {"entered": 1, "created": 1, "in_calendars": 1, "updated": 1}
    assert today(runtime, "act-other") == {"entered": 1, "created": 1, "deleted": 1}
    day_key = keys.performance_day("default", performance.local_day("UTC"))
    assert 400 * 86400 < runtime.redis.ttl(day_key) <= 402 * 86400


ECHOES = [
    (EVENT_REMOVED, "withdraw:job-1"),
    (EVENT_UPDATED, "correct:job-1"),
    (EVENT_DELETED, "cancel:job-1"),
]


@pytest.mark.parametrize(("kind", "pending"), ECHOES, ids=["removed", "updated", "deleted"])
def test_the_echo_of_our_own_change_in_progress_moves_nothing(runtime, kind, pending):
    """An event job changing the execution at Rokt (PENDING_FIELD) makes its own move: the
    webhook of that very change, landing first, neither moves nor counts."""
    event = sent(runtime, "e1", State.CONFIRMED)
    assert runtime.ledger.mark("default", "e1", (State.CONFIRMED,), **{PENDING_FIELD: pending}) == (
        True,
        State.CONFIRMED,
    )
    assert webhook(runtime, kind, event, "hook-1") == NOT_MOVED
    assert status(runtime, "e1") == State.CONFIRMED
    assert today(runtime) == {"entered": 1, "created": 1, "in_calendars": 1}


def test_a_webhook_of_another_kind_than_the_change_in_progress_moves_as_ever(runtime):
    event = sent(runtime, "e1", State.CONFIRMED)
    runtime.ledger.mark("default", "e1", (State.CONFIRMED,), **{PENDING_FIELD: "correct:job-1"})
    assert webhook(runtime, EVENT_REMOVED, event, "hook-1") == MOVED  # the subscriber's own
    assert status(runtime, "e1") == State.REMOVED and today(runtime)["removed"] == 1


def test_a_change_in_progress_on_an_archived_execution_outlives_its_tombstone(runtime):
    """Set on a tombstone, the record is made whole first; archived again, the history store's
    copy carries it, and the webhook's restore finds it."""
    event = sent(runtime, "e1", State.CONFIRMED)
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert runtime.redis.hget(keys.execution("default", "e1"), "archived") == "1"
    assert executions.mark_whole(
        runtime, "default", "e1", (State.CONFIRMED,), **{PENDING_FIELD: "withdraw:j"}
    )[0]
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert runtime.redis.hget(keys.execution("default", "e1"), "archived") == "1"  # archived again
    assert webhook(runtime, EVENT_REMOVED, event, "hook-1") == NOT_MOVED
    assert status(runtime, "e1") == State.CONFIRMED and "removed" not in today(runtime)


def test_a_flush_that_read_the_record_before_the_change_was_set_does_not_archive_it_without(runtime):
    sent(runtime, "e1", State.CONFIRMED)
    record = runtime.redis.hgetall(keys.execution("default", "e1"))
    runtime.ledger.mark("default", "e1", (State.CONFIRMED,), **{PENDING_FIELD: "withdraw:j"})
    assert runtime.ledger.archive("default", "e1", record, tombstone_seconds=60) == -1  # read again


def test_the_transition_script_answers_pending_as_the_ledger_spells_it():
    from pipeline.stores import ledger

    assert f"answer(0, '{ledger.PENDING}')" in ledger._TRANSITION
    assert f"'{ledger.PENDING_FIELD}'" in ledger._TRANSITION
