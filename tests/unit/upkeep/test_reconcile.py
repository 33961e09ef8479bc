"""Reconciliation rules against fakeredis and a mocked Rokt."""

import json
import time
from types import SimpleNamespace

import responses

from pipeline.infra import keys
from pipeline.journeys import executions
from pipeline.stores import ledger as ledger_module
from pipeline.stores.ledger import event_id_for
from pipeline.subscriptions.webhooks import update_execution
from pipeline.upkeep import reconcile as reconcile_module
from pipeline.upkeep.reconcile import Thresholds, reconcile
from pipeline.vocabulary import ErrorClass, Stage, State

ROKT_TOKEN = "https://rokt.test/oauth2/token"
NOW = Thresholds(queued_after=0, confirm_after=0, final_after=3600, dead_letter_cool_down=0)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, item):
        self.calls.append((tenant, item))


def accepted(runtime, execution, sub="s1"):
    runtime.ledger.claim(
        "default", execution, {"contactKey": "C1", "eventId": event_id_for(execution), "args": {}}
    )
    event = {
        "eventId": event_id_for(execution),
        "title": "t",
        "start": "2026-01-01T00:00:00",
        "timezone": "UTC",
    }
    runtime.ledger.update("default", execution, event=json.dumps(event), subscriptionIds=json.dumps([sub]))
    runtime.ledger.transition("default", execution, State.ACCEPTED)


def status_rows(runtime):
    return [
        json.loads(f["p"])["values"]["Status"] for _id, f in runtime.redis.xrange("rsf:default:outbox:status")
    ]


@responses.activate
def test_unconfirmed_events_are_confirmed_from_rokt_or_resent_with_the_same_id(runtime):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    accepted(runtime, "seen", "s1")
    accepted(runtime, "unseen", "s2")
    responses.get(
        "https://rokt.test/v1/subscription/s1",
        json={"eventsVisibleToSubscription": [{"subscriptionEventId": event_id_for("seen")}]},
    )
    responses.get("https://rokt.test/v1/subscription/s2", json={"eventsVisibleToSubscription": []})
    resend = responses.post("https://rokt.test/v1/subscriptionevent/acct", status=202)
    report = reconcile(runtime, "default", Recorder(), Recorder(), NOW)
    assert (report.checked, report.confirmed, report.resent) == (2, 1, 1)
    assert runtime.ledger.get("default", "seen").status == "confirmed"
    assert runtime.ledger.get("default", "unseen").status == "accepted"
    assert json.loads(resend.calls[0].request.body)["event"]["eventId"] == event_id_for("unseen")


@responses.activate
def test_a_resend_rokt_refuses_does_not_hold_up_the_executions_after_it(runtime):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    for execution, sub in (("inactive", "s1"), ("taken", "s2"), ("fine", "s3")):
        accepted(runtime, execution, sub)
        time.sleep(0.002)  # checked oldest first
        responses.get(f"https://rokt.test/v1/subscription/{sub}", json={"eventsVisibleToSubscription": []})
    create = "https://rokt.test/v1/subscriptionevent/acct"
    responses.post(create, status=400, json={"Code": "ValidationFailed", "Reason": "s1 is not active"})
    responses.post(create, status=400, json={"Code": "DuplicateEventId", "Reason": "exists"})
    responses.post(create, status=202)
    report = reconcile(runtime, "default", Recorder(), Recorder(), NOW)
    # each was checked; only the last was sent anew (the refused one waits for the final deadline)
    assert (report.checked, report.resent) == (3, 1)
    assert {runtime.ledger.get("default", e).status for e in ("inactive", "taken", "fine")} == {"accepted"}
    awaiting = keys.awaiting("default")
    assert runtime.redis.zscore(awaiting, keys.execution("default", "inactive"))  # checked again


@responses.activate
def test_a_refused_subscription_look_up_counts_as_not_visible_and_holds_nothing_up(runtime):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    accepted(runtime, "hidden", "s1")
    time.sleep(0.002)
    accepted(runtime, "seen", "s2")
    responses.get("https://rokt.test/v1/subscription/s1", status=403, json={"Code": "Forbidden"})
    responses.get(
        "https://rokt.test/v1/subscription/s2",
        json={"eventsVisibleToSubscription": [{"subscriptionEventId": event_id_for("seen")}]},
    )
    responses.post("https://rokt.test/v1/subscriptionevent/acct", status=202)
    report = reconcile(runtime, "default", Recorder(), Recorder(), NOW)
    assert (report.checked, report.confirmed, report.resent) == (2, 1, 1)
    assert runtime.ledger.get("default", "seen").status == "confirmed"


@responses.activate
def test_refused_credentials_stop_the_run_at_the_first_execution(runtime):
    responses.post(ROKT_TOKEN, status=401, json={"error": "invalid_client"})
    for execution in ("a", "b", "c"):
        accepted(runtime, execution)
    report = reconcile(runtime, "default", Recorder(), Recorder(), NOW)
    assert report.checked == 1
    assert len([c for c in responses.calls if c.request.url == ROKT_TOKEN]) == 1


@responses.activate
def test_re_sends_do_not_push_the_final_deadline_back(runtime, monkeypatch):
    """Every look moves the execution back in line; the deadline counts from its acceptance."""
    clock = [time.time()]
    fake_time = SimpleNamespace(time=lambda: clock[0], strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(ledger_module, "time", fake_time)  # acceptance, and each look's touch
    monkeypatch.setattr(reconcile_module, "time", fake_time)
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.get("https://rokt.test/v1/subscription/s1", json={"eventsVisibleToSubscription": []})
    resend = responses.post("https://rokt.test/v1/subscriptionevent/acct", status=202)
    accepted(runtime, "e1")
    thresholds = Thresholds(queued_after=600, confirm_after=900, final_after=7200, dead_letter_cool_down=1e9)
    for _look in range(8):  # one look every 1,000 s: past 7,200 s at the 8th
        clock[0] += 1000
        reconcile(runtime, "default", Recorder(), Recorder(), thresholds)
    assert resend.call_count == 7
    assert runtime.ledger.get("default", "e1").status == "failed"


@responses.activate
def test_never_confirmed_past_the_final_deadline_fails_with_row_and_dead_letter(runtime):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.get("https://rokt.test/v1/subscription/s1", json={"eventsVisibleToSubscription": []})
    accepted(runtime, "e1")
    final = Thresholds(queued_after=0, confirm_after=0, final_after=-1, dead_letter_cool_down=3600)
    assert reconcile(runtime, "default", Recorder(), Recorder(), final).timed_out == 1
    assert runtime.ledger.get("default", "e1").status == "failed"
    assert status_rows(runtime) == ["failed"]
    assert json.loads(runtime.redis.hget("rsf:default:dlq", "e1"))["stage"] == "confirm"


def test_executions_waiting_in_a_stalled_intake_stream_are_not_redriven_twice(runtime, monkeypatch):
    """The broker was down for longer than queued_after: the pumps publish the stream's entries
    once it is back; a re-drive too would run each execution twice."""
    record = {"contactKey": "C1", "eventId": event_id_for("waits"), "args": {}}
    runtime.ledger.claim("default", "waits", record)
    monkeypatch.setattr("pipeline.journeys.intake.oldest_age_seconds", lambda *_args: 900.0)
    enqueue = Recorder()
    assert reconcile(runtime, "default", enqueue, Recorder(), NOW).redriven == 0 and enqueue.calls == []
    monkeypatch.setattr("pipeline.journeys.intake.oldest_age_seconds", lambda *_args: 0.2)  # flowing again
    assert reconcile(runtime, "default", enqueue, Recorder(), NOW).redriven == 1


def test_lost_executions_are_redriven_and_retryable_dead_letters_retried_once(runtime):
    runtime.ledger.claim("default", "lost", {"contactKey": "C1", "eventId": event_id_for("lost"), "args": {}})
    runtime.ledger.claim(
        "default", "flaky", {"contactKey": "C2", "eventId": event_id_for("flaky"), "args": {}}
    )
    executions.fail(
        runtime, "default", "flaky", Stage.CREATE_EVENT, ErrorClass.RETRYABLE, "HTTP 503", attempts=8
    )
    enqueue = Recorder()
    report = reconcile(runtime, "default", enqueue, Recorder(), NOW)
    assert report.redriven == 1 and report.dead_letters_retried == 1
    assert sorted(call[1] for call in enqueue.calls) == ["flaky", "lost"]
    assert runtime.ledger.get("default", "flaky").status == "queued"
    executions.fail(
        runtime, "default", "flaky", Stage.CREATE_EVENT, ErrorClass.RETRYABLE, "HTTP 503 again", attempts=8
    )
    again = Recorder()
    reconcile(
        runtime,
        "default",
        again,
        Recorder(),
        Thresholds(queued_after=3600, confirm_after=3600, final_after=7200, dead_letter_cool_down=0),
    )
    assert again.calls == []  # retried automatically once; now an operator decides
    assert runtime.redis.hexists("rsf:default:dlq", "flaky")


# --- releaseOn=confirmed: the outcome so far is released at the deadline, once ---

QUIET = Thresholds(queued_after=3600, confirm_after=3600, final_after=7200, dead_letter_cool_down=3600)


def releases(runtime):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange("rsf:default:outbox:release")]


def accepted_waiting_for_confirmation(runtime, execution, after="600"):
    runtime.ledger.claim(
        "default",
        execution,
        {
            "contactKey": f"C-{execution}",
            "eventId": event_id_for(execution),
            "args": {
                "releaseEventDefinitionKey": "K",
                "releaseOn": "confirmed",
                "releaseAfterSeconds": after,
            },
        },
    )
    executions.finish(runtime, "default", execution, State.ACCEPTED)


def past_deadline(runtime, execution):
    runtime.redis.zadd("rsf:default:release-due", {execution: time.time() - 1}, xx=True)


def test_no_confirmation_by_the_deadline_releases_the_outcome_so_far_once(runtime):
    accepted_waiting_for_confirmation(runtime, "late")
    accepted_waiting_for_confirmation(runtime, "in-time")
    assert reconcile(runtime, "default", Recorder(), Recorder(), QUIET).released_at_deadline == 0
    past_deadline(runtime, "late")
    report = reconcile(runtime, "default", Recorder(), Recorder(), QUIET)
    assert report.released_at_deadline == 1
    assert [(r["contactKey"], r["data"]["roktStatus"]) for r in releases(runtime)] == [("C-late", "accepted")]
    assert runtime.ledger.get("default", "late").status == "accepted"  # the execution itself goes on
    assert reconcile(runtime, "default", Recorder(), Recorder(), QUIET).released_at_deadline == 0
    # a confirmation after the deadline updates the status row, not the journey
    assert update_execution(runtime, "default", event_id_for("late"), State.CONFIRMED) is True
    assert update_execution(runtime, "default", event_id_for("in-time"), State.CONFIRMED) is True
    assert [(r["contactKey"], r["data"]["roktStatus"]) for r in releases(runtime)] == [
        ("C-late", "accepted"),
        ("C-in-time", "confirmed"),
    ]
    assert runtime.redis.zcard("rsf:default:release-due") == 0


def test_a_deadline_entry_of_a_contact_released_meanwhile_releases_nothing(runtime):
    accepted_waiting_for_confirmation(runtime, "e1")
    update_execution(runtime, "default", event_id_for("e1"), State.CONFIRMED)
    runtime.redis.zadd("rsf:default:release-due", {"e1": time.time() - 1})  # as after a crash
    runtime.redis.zadd("rsf:default:release-due", {"expired": time.time() - 1})  # gone from the ledger
    assert reconcile(runtime, "default", Recorder(), Recorder(), QUIET).released_at_deadline == 0
    assert [r["data"]["roktStatus"] for r in releases(runtime)] == ["confirmed"]
    assert runtime.redis.zcard("rsf:default:release-due") == 0


@responses.activate
def test_failing_unconfirmed_before_the_release_deadline_releases_the_failure_once(runtime):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.get("https://rokt.test/v1/subscription/s1", json={"eventsVisibleToSubscription": []})
    accepted_waiting_for_confirmation(runtime, "e1", after="86400")
    runtime.ledger.update("default", "e1", subscriptionIds=json.dumps(["s1"]))
    final = Thresholds(queued_after=3600, confirm_after=0, final_after=-1, dead_letter_cool_down=3600)
    assert reconcile(runtime, "default", Recorder(), Recorder(), final).timed_out == 1
    past_deadline(runtime, "e1")
    reconcile(runtime, "default", Recorder(), Recorder(), QUIET)
    assert [r["data"]["roktStatus"] for r in releases(runtime)] == ["failed"]
