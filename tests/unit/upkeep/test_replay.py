"""Dead-letter replay: one handler per stage, and each does what its stage needs."""

from __future__ import annotations

import json

import pytest
import responses

from pipeline.infra import dispatch, keys
from pipeline.journeys import executions
from pipeline.journeys.templates import create_template
from pipeline.stores.deadletters import record_dead_letter
from pipeline.stores.ledger import event_id_for
from pipeline.upkeep.reconcile import Thresholds, reconcile
from pipeline.upkeep.replay import REPLAYERS, list_dead_letters, replay_one
from pipeline.vocabulary import JOB_STAGES, OutboxKind, Stage, State

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
TEMPLATE = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/London"}


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, item):
        self.calls.append((tenant, item))


def test_every_stage_has_a_replay_handler():
    assert set(REPLAYERS) == set(Stage)


def claim_failed(runtime, execution: str, stage: Stage) -> None:
    runtime.ledger.claim(
        "default", execution, {"contactKey": "C", "eventId": event_id_for(execution), "args": {}}
    )
    executions.fail(runtime, "default", execution, stage, "retryable", "HTTP 503")


LETTERS = {
    Stage.RECORD_STATUS: {"deKey": "D", "row": {"keys": {"ContactKey": "C"}, "values": {}}},
    Stage.RECORD_SUBSCRIPTION: {"deKey": "D", "row": {"keys": {"CalendarSubscriptionId": "s"}, "values": {}}},
    Stage.RELEASE: {"eventDefinitionKey": "K", "member": {"contactKey": "C", "data": {"executionId": "x"}}},
    Stage.RECORD_HISTORY: {"executionId": "x"},
    Stage.RECORD_SUBSCRIPTION_HISTORY: {"subscriptionId": "s"},
    **{stage: {"jobId": "job-1", "executionId": "x1"} for stage in JOB_STAGES.values()},
    Stage.RECORD_PERFORMANCE: {"day": "2026-12-08"},
}


# MATCH_CONTACT calls SFMC: test_a_refused_contact_is_matched_again_on_replay
@pytest.mark.parametrize("stage", [stage for stage in Stage if stage != Stage.MATCH_CONTACT])
def test_each_stage_replays_into_its_part_of_the_pipeline(runtime, stage, monkeypatch):
    executions_sent, webhooks_sent = Recorder(), Recorder()
    job_items: list[tuple[str, str, str]] = []
    monkeypatch.setattr(dispatch, "enqueue_event_job_item", lambda *args: job_items.append(args))
    exports: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(dispatch, "export_performance", lambda *args: exports.append(args))
    runtime.redis.hset(keys.performance_day("default", "2026-12-08"), "*|entered", 1)  # its figures
    if stage in (Stage.RENDER, Stage.CREATE_EVENT, Stage.PIPELINE, Stage.CONFIRM):
        claim_failed(runtime, "x1", stage)
        letter = list_dead_letters(runtime, "default")[0]
    else:
        payload = LETTERS.get(stage, {"eventId": "evt-1"})
        record_dead_letter(
            runtime.redis,
            "default",
            "item",
            stage=stage,
            error_class="permanent",
            reason="r",
            attempts=1,
            payload=payload,
        )
        letter = list_dead_letters(runtime, "default")[0]
    assert replay_one(runtime, "default", letter, executions_sent, webhooks_sent) is True
    assert list_dead_letters(runtime, "default") == []
    if stage in (Stage.RENDER, Stage.CREATE_EVENT, Stage.PIPELINE, Stage.CONFIRM):
        assert executions_sent.calls == [("default", "x1")]
        assert runtime.ledger.get("default", "x1").status == State.QUEUED
    elif stage == Stage.WEBHOOK:
        assert webhooks_sent.calls == [("default", "evt-1")]
    elif stage in JOB_STAGES.values():
        assert job_items == [("default", "job-1", "x1")]
    elif stage == Stage.RECORD_PERFORMANCE:
        assert exports == [("default", ["2026-12-08"])]  # the day's rows, rebuilt and upserted
    else:
        kind = {
            Stage.RECORD_STATUS: OutboxKind.STATUS_ROWS,
            Stage.RECORD_SUBSCRIPTION: OutboxKind.SUBSCRIPTION_ROWS,
            Stage.RECORD_HISTORY: OutboxKind.HISTORY,
            Stage.RECORD_SUBSCRIPTION_HISTORY: OutboxKind.SUBSCRIPTION_HISTORY,
        }
        box = runtime.outbox("default", kind.get(stage, OutboxKind.RELEASES))
        work = [e for e in box.take_new("c", 10) if "deadLetter" not in e.payload]
        assert len(work) == 1
    # the letter itself, done, waits in the history outbox for the store
    history = runtime.outbox("default", OutboxKind.HISTORY)
    [done] = [e.payload["deadLetter"] for e in history.take_recovered("c", 10) + history.take_new("c", 10)
              if "deadLetter" in e.payload]  # fmt: skip
    assert done["id"] == letter["id"] and done["replayedAt"]


@responses.activate
def test_a_refused_contact_is_matched_again_on_replay(runtime):
    responses.post(
        "https://auth.sfmc.test/v2/token",
        json={"access_token": "t", "rest_instance_url": "https://rest.sfmc.test"},
    )
    responses.get("https://rest.sfmc.test/contacts/v1/contacts/0031X00000abcDE", status=200, json={})
    attrs = {"CalendarSubscriptionId": "s-1", "SubscriberExternalId": "0031X00000abcDE"}
    record_dead_letter(
        runtime.redis,
        "default",
        "contact:s-1",
        stage=Stage.MATCH_CONTACT,
        error_class="permanent",
        reason="r",
        attempts=1,
        payload=attrs,
    )
    assert replay_one(runtime, "default", list_dead_letters(runtime, "default")[0], Recorder(), Recorder())
    (entry,) = runtime.redis.xrange("rsf:default:outbox:subscription")
    assert json.loads(entry[1]["p"])["values"]["ContactMatch"] == "matched"


def test_a_letter_of_an_unknown_stage_is_left_in_the_store(runtime):
    record_dead_letter(
        runtime.redis,
        "default",
        "future",
        stage="teleport",
        error_class="x",
        reason="r",
        attempts=1,
        payload={},
    )
    letter = list_dead_letters(runtime, "default")[0]
    assert replay_one(runtime, "default", letter, Recorder(), Recorder()) is False
    assert [d["id"] for d in list_dead_letters(runtime, "default")] == ["future"]


@responses.activate
def test_a_confirm_dead_letter_reopens_and_resends_with_the_same_event_id(runtime):
    """Reconciliation fails an execution Rokt never confirmed, with stage `confirm`; the
    replay must send it again (it used to be left in the store forever)."""
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.get("https://rokt.test/v1/subscription/s1", json={"eventsVisibleToSubscription": []})
    create = responses.post(ROKT_CREATE, status=202)
    template = create_template(runtime.redis, "default", TEMPLATE)["id"]
    args = {"templateId": template, "subscriptionId": "s1", "FirstName": "Ava"}
    runtime.ledger.claim("default", "e1", {"contactKey": "C1", "eventId": event_id_for("e1"), "args": args})
    assert executions.render_step(runtime, "default", "e1") is True
    executions.create_step(runtime, "default", "e1")
    assert runtime.ledger.get("default", "e1").status == State.ACCEPTED

    never = Thresholds(queued_after=3600, confirm_after=0, final_after=-1, dead_letter_cool_down=3600)
    assert reconcile(runtime, "default", Recorder(), Recorder(), never).timed_out == 1
    (letter,) = list_dead_letters(runtime, "default")
    assert letter["stage"] == Stage.CONFIRM and runtime.ledger.get("default", "e1").status == State.FAILED

    redriven = Recorder()
    assert replay_one(runtime, "default", letter, redriven, Recorder()) is True
    assert redriven.calls == [("default", "e1")]
    assert list_dead_letters(runtime, "default") == []
    assert runtime.ledger.get("default", "e1").status == State.QUEUED
    # what the re-driven chain does: render, then the same event to Rokt
    assert executions.render_step(runtime, "default", "e1") is True
    executions.create_step(runtime, "default", "e1")
    first, again = (json.loads(call.request.body)["event"]["eventId"] for call in create.calls)
    assert first == again == event_id_for("e1")
    assert runtime.ledger.get("default", "e1").status == State.ACCEPTED
    assert replay_one(runtime, "default", letter, redriven, Recorder()) is False  # once only


def test_the_ledgers_scripts_spell_the_states_as_the_vocabulary_does():
    from pipeline.stores import ledger

    scripts = ledger._CLAIM + ledger._TRANSITION + ledger._REOPEN
    for spelled in ("'queued'", "'accepted'", "'failed'"):
        assert spelled.strip("'") in set(State), spelled
        assert spelled in scripts
