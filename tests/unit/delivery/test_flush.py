"""Outbox flushing: vendor-sized batches, bisecting around a bad row, nothing lost on a crash, and
the flush slots taken in one script for the kinds with a backlog."""

import json
import time

import pytest
import responses

from pipeline.clients.errors import RetryableError
from pipeline.delivery.flush import (
    claim_flush_slot,
    claim_flush_slots,
    flush_releases,
    flush_status_rows,
    latest_per_key,
)
from pipeline.vocabulary import OutboxKind

TOKEN = "https://auth.sfmc.test/v2/token"
ROWSET = "https://rest.sfmc.test/hub/v1/dataevents/key:RoktCalendarEventStatus/rowset"
EVENTS = "https://rest.sfmc.test/interaction/v1/async/events"


def row(i, status="accepted"):
    return {"keys": {"ContactKey": f"C{i}", "ExecutionId": f"e{i}"}, "values": {"Status": status}}


def token():
    responses.post(
        TOKEN, json={"access_token": "t", "expires_in": 1079, "rest_instance_url": "https://rest.sfmc.test"}
    )


def sent_rows(call):
    return json.loads(call.request.body)


@responses.activate
def test_rows_go_out_in_batches_of_at_most_50(runtime):
    token()
    rowset = responses.post(ROWSET, json=[])
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    for i in range(120):
        box.append(row(i))
    report = flush_status_rows(runtime, "default", consumer="c1", max_wait=0)
    sizes = [len(sent_rows(c)) for c in rowset.calls]
    assert sizes == [50, 50, 20]
    assert report.items == 120 and report.calls == 3
    assert box.backlog() == 0


@responses.activate
def test_full_batches_go_at_once_and_a_young_partial_batch_waits(runtime):
    token()
    rowset = responses.post(ROWSET, json=[])
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    for i in range(70):
        box.append(row(i))
    report = flush_status_rows(runtime, "default", consumer="c1", max_wait=30)
    assert [len(sent_rows(c)) for c in rowset.calls] == [50]
    assert 29 < report.retry_in <= 30 and box.backlog() == 20
    report = flush_status_rows(runtime, "default", consumer="c1", max_wait=0)  # it has waited enough
    assert [len(sent_rows(c)) for c in rowset.calls] == [50, 20]
    assert report.retry_in == 0 and box.backlog() == 0


def test_latest_row_per_key_wins():
    rows = [row(1, "queued"), row(2), row(1, "accepted")]
    assert latest_per_key(rows) == [row(1, "accepted"), row(2)]


@responses.activate
def test_a_bad_row_is_bisected_out_and_dead_lettered(runtime):
    token()
    bad_key = "C7"

    def rowset(request):
        rows = json.loads(request.body)
        if any(r["keys"]["ContactKey"] == bad_key for r in rows):
            body = {
                "errorcode": 10006,
                "message": "Unable to save rows",
                "additionalErrors": [{"errorcode": 10001}],
            }
            return 400, {}, json.dumps(body)
        return 200, {}, json.dumps(rows)

    responses.add_callback(responses.POST, ROWSET, callback=rowset)
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    for i in range(10):
        box.append(row(i))
    report = flush_status_rows(runtime, "default", consumer="c1", max_wait=0)
    saved = [
        r["keys"]["ContactKey"]
        for c in responses.calls
        if c.request.url == ROWSET and c.response.status_code == 200
        for r in sent_rows(c)
    ]
    assert sorted(saved) == sorted(f"C{i}" for i in range(10) if i != 7)
    assert report.rejected == 1
    letter = json.loads(runtime.redis.hget("rsf:default:dlq", "status-row:C7:e7"))
    assert letter["stage"] == "record_status" and "10001" in letter["reason"]
    assert box.backlog() == 0


@responses.activate
def test_a_crash_mid_batch_loses_nothing(runtime):
    token()
    rowset = responses.post(ROWSET, json=[])
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    for i in range(30):
        box.append(row(i))
    taken = box.take_new("task-1", 50)  # the worker read its batch, then was killed before sending
    assert len(taken) == 30
    box.append(row(99))
    report = flush_status_rows(runtime, "default", consumer="task-1", max_wait=0)  # redelivered task, same id
    sent = [r["keys"]["ContactKey"] for c in rowset.calls for r in sent_rows(c)]
    assert sorted(sent) == sorted([f"C{i}" for i in range(30)] + ["C99"])
    assert report.items == 31 and box.backlog() == 0


@responses.activate
def test_a_failed_call_leaves_the_batch_pending_for_the_retry(runtime):
    token()
    responses.post(ROWSET, status=503)
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    box.append(row(1))
    with pytest.raises(RetryableError):  # the task retries on this
        flush_status_rows(runtime, "default", consumer="task-2", max_wait=0)
    assert box.backlog() == 1
    responses.replace(responses.POST, ROWSET, json=[])
    flush_status_rows(runtime, "default", consumer="task-2", max_wait=0)
    assert box.backlog() == 0


@responses.activate
def test_releases_group_by_event_key_up_to_100_members(runtime):
    token()
    events = responses.post(EVENTS, json={"requestId": "r"}, status=202)
    box = runtime.outbox("default", OutboxKind.RELEASES)
    for i in range(150):
        key = "K1" if i % 3 else "K2"
        box.append(
            {
                "eventDefinitionKey": key,
                "contactKey": f"C{i}",
                "data": {"roktStatus": "accepted", "executionId": f"e{i}"},
            }
        )
    flush_releases(runtime, "default", consumer="c", max_wait=0)
    bodies = [json.loads(c.request.body) for c in events.calls]
    assert all(len(b["members"]) <= 100 for b in bodies)
    assert sum(len(b["members"]) for b in bodies) == 150
    assert {m["contactKey"] for b in bodies if b["eventDefinitionKey"] == "K2" for m in b["members"]} == {
        f"C{i}" for i in range(150) if i % 3 == 0
    }


@responses.activate
def test_releases_sfmc_took_are_not_fired_again_when_a_later_group_of_the_batch_fails(runtime):
    """A release fires a journey event: the first group's, taken by SFMC, is acknowledged at once,
    so the flush run again (here after a 503 on the second group; a full Redis refusing its limiter
    call does the same) sends only the group that did not go."""
    token()
    box = runtime.outbox("default", OutboxKind.RELEASES)
    for i, key in enumerate(["K1", "K1", "K2"]):
        data = {"roktStatus": "accepted", "executionId": f"e{i}"}
        box.append({"eventDefinitionKey": key, "contactKey": f"C{i}", "data": data})
    calls = []

    def k2_fails_once(request):
        body = json.loads(request.body)
        calls.append(body["eventDefinitionKey"])
        if body["eventDefinitionKey"] == "K2" and calls.count("K2") == 1:
            return 503, {}, "{}"
        return 202, {}, json.dumps({"requestId": "r"})

    responses.add_callback(responses.POST, EVENTS, callback=k2_fails_once)
    with pytest.raises(RetryableError):
        flush_releases(runtime, "default", consumer="task-r", max_wait=0)
    assert box.backlog() == 1  # only K2's member still waits
    flush_releases(runtime, "default", consumer="task-r", max_wait=0)  # the task again, same id
    assert calls == ["K1", "K2", "K2"] and box.backlog() == 0


@responses.activate
def test_a_store_that_is_away_holds_back_only_the_rows_of_archived_executions(runtime, monkeypatch):
    """Rows of executions still in Redis go out while PostgreSQL is down; the batch stays pending
    for the archived one, whose row only the store can rebuild."""
    from sqlalchemy.exc import OperationalError

    from pipeline.infra import keys
    from tests.unit.conftest import claim_execution

    token()
    rowset = responses.post(ROWSET, json=[])
    claim_execution(runtime, "e1")
    runtime.redis.hset(keys.execution("default", "e2"), mapping={"status": "confirmed", "archived": "1"})
    box = runtime.outbox("default", OutboxKind.STATUS_ROWS)
    box.append(row(1))
    box.append(row(2))

    def away(*_args):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(runtime.history, "records", away)
    with pytest.raises(OperationalError):
        flush_status_rows(runtime, "default", consumer="task-s", max_wait=0)
    assert [r["keys"]["ExecutionId"] for c in rowset.calls for r in sent_rows(c)] == ["e1"]
    assert box.backlog() == 2  # both wait: e1 goes again with e2 (the same values)


@responses.activate
def test_a_late_batch_sends_the_current_state_not_the_stale_one(runtime):
    """Under SFMC faults an `accepted` batch can be retried after the `confirmed` one was
    written; rows are rebuilt from the ledger when sent, so SFMC ends with `confirmed`."""
    from pipeline.journeys import executions
    from pipeline.vocabulary import State

    token()
    rowset = responses.post(ROWSET, json=[])
    runtime.ledger.claim("default", "e1", {"contactKey": "C1", "eventId": "rsf-1", "args": {}})
    runtime.ledger.transition("default", "e1", State.ACCEPTED)
    executions.emit_outcome(runtime, runtime.ledger.get("default", "e1"))  # buffered as accepted
    runtime.ledger.transition("default", "e1", State.CONFIRMED, (State.ACCEPTED,))
    flush_status_rows(runtime, "default", consumer="late", max_wait=0)
    assert sent_rows(rowset.calls[0])[0]["values"]["Status"] == "confirmed"


# --- flush slots in one script ---


def test_flush_slots_are_taken_for_kinds_with_a_backlog_once(runtime):
    kinds = [OutboxKind.STATUS_ROWS, OutboxKind.RELEASES]
    assert claim_flush_slots(runtime, "default", kinds) == []  # nothing to flush: no slot taken
    runtime.outbox("default", OutboxKind.RELEASES).append({"x": 1})
    assert claim_flush_slots(runtime, "default", kinds) == [OutboxKind.RELEASES]
    assert claim_flush_slots(runtime, "default", kinds) == []  # the flush is scheduled already
    assert claim_flush_slot(runtime, "default", OutboxKind.RELEASES) is False  # the same slot
    runtime.outbox("default", OutboxKind.STATUS_ROWS).append({"x": 1})
    assert claim_flush_slots(runtime, "default", kinds) == [OutboxKind.STATUS_ROWS]
    assert 0 < runtime.redis.pttl("rsf:default:flush-scheduled:status") <= 1000
    assert claim_flush_slots(runtime, "default", []) == []


def test_a_slot_seen_taken_is_asked_about_again_once_it_ends(runtime):
    kinds = [OutboxKind.STATUS_ROWS]
    runtime.outbox("default", OutboxKind.STATUS_ROWS).append({"x": 1})
    assert claim_flush_slot(runtime, "default", OutboxKind.STATUS_ROWS, delay=0.2)  # another process
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == []  # seen taken for ~0.2 s
    commands = []
    runtime.redis.register_script = lambda *a: commands.append(a) or pytest.fail("asked again")
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == []  # not asked: still taken
    del runtime.redis.register_script
    time.sleep(0.25)
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == [OutboxKind.STATUS_ROWS]
    time.sleep(0.1)
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == [OutboxKind.STATUS_ROWS]
