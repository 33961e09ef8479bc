"""The per-execution steps against fakeredis and a mocked Rokt: every outcome, once."""

import json

import pytest
import responses

from pipeline import executions
from pipeline.clients.errors import RetryableError
from pipeline.ledger import event_id_for
from pipeline.templates import create_template
from pipeline.vocabulary import OutboxKind

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
TEMPLATE = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/London"}


@pytest.fixture
def template_id(runtime):
    return create_template(runtime.redis, "default", TEMPLATE)["id"]


def claim(runtime, execution, **args):
    runtime.ledger.claim(
        "default",
        execution,
        {"contactKey": "C1", "eventId": event_id_for(execution), "activityId": "a", "args": args},
    )


def rows(runtime):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange("rsf:default:outbox:status")]


def test_unknown_template_fails_with_reason(runtime):
    claim(runtime, "e1", templateId="tpl-nope", subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "e1") is False
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "failed" and "tpl-nope" in ex.fields["error"]
    assert rows(runtime)[0]["values"]["Status"] == "failed"


def test_missing_field_ends_the_execution_without_a_call(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName=" ")
    assert executions.render_step(runtime, "default", "e1") is False
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "missing_field" and "FirstName" in ex.fields["error"]


def test_no_subscription(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A")
    executions.render_step(runtime, "default", "e1")
    assert runtime.ledger.get("default", "e1").status == "no_subscription"


def test_subscription_ids_accept_lists_and_separated_strings():
    assert executions.subscription_ids({"subscriptionId": "a, b;a c"}) == ["a", "b", "c"]
    assert executions.subscription_ids({"subscriptionIds": ["x", "x", " y "]}) == ["x", "y"]
    assert executions.subscription_ids({"subscriptionId": ""}) == []


@responses.activate
def test_accepted_event_and_release_are_emitted_once(runtime, template_id):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    create = responses.post(ROKT_CREATE, status=202)
    claim(
        runtime,
        "e1",
        templateId=template_id,
        subscriptionId="s1",
        FirstName="Ava",
        releaseEventDefinitionKey="K",
    )
    assert executions.render_step(runtime, "default", "e1") is True
    executions.create_step(runtime, "default", "e1")
    body = json.loads(create.calls[0].request.body)
    assert body["event"]["title"] == "Hi Ava" and body["event"]["eventId"] == event_id_for("e1")
    assert body["event"]["timezone"] == "GMT Standard Time"
    assert body["subscriptionIds"] == ["s1"]
    assert runtime.ledger.get("default", "e1").status == "accepted"
    executions.create_step(runtime, "default", "e1")  # a redelivered task: no second post
    assert create.call_count == 1
    assert [r["values"]["Status"] for r in rows(runtime)] == ["accepted", "accepted"]  # idempotent upserts
    release = json.loads(runtime.redis.xrange("rsf:default:outbox:release")[0][1]["p"])
    assert release["eventDefinitionKey"] == "K" and release["data"]["roktStatus"] == "accepted"


@responses.activate
def test_permanent_rokt_error_fails_with_rokts_reason(runtime, template_id):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(
        ROKT_CREATE, status=400, json={"Code": "ValidationFailed", "Reason": "subscription s1 not found"}
    )
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    executions.render_step(runtime, "default", "e1")
    executions.create_step(runtime, "default", "e1")
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "failed" and "subscription s1 not found" in ex.fields["error"]


@responses.activate
def test_retryable_error_leaves_the_execution_queued_and_throttling_pauses_the_account(runtime, template_id):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=429, headers={"Retry-After": "3"})
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    executions.render_step(runtime, "default", "e1")
    with pytest.raises(RetryableError):
        executions.create_step(runtime, "default", "e1")
    assert runtime.ledger.get("default", "e1").status == "queued"
    assert runtime.limiter("default", "rokt").try_acquire() > 2
    assert runtime.redis.xlen("rsf:default:outbox:status") == 0


def test_give_up_dead_letters_and_fails(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    executions.give_up(runtime, "default", "e1", "create_event", RetryableError("HTTP 503"), 8)
    assert runtime.ledger.get("default", "e1").status == "failed"
    letter = json.loads(runtime.redis.hget("rsf:default:dlq", "e1"))
    assert (
        letter["stage"] == "create_event" and letter["attempts"] == 8 and letter["errorClass"] == "retryable"
    )
    assert letter["payload"]["args"]["subscriptionId"] == "s1"
    assert runtime.outbox("default", OutboxKind.STATUS_ROWS).backlog() == 1
    assert runtime.outbox("default", OutboxKind.RELEASES).backlog() == 0


def test_render_records_when_it_started_for_queue_wait(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "e1") is True
    fields = runtime.ledger.get("default", "e1").fields
    assert fields["createdAt"] <= fields["renderStartedAt"] <= fields["updatedAt"]


def test_new_execution_is_deterministic_per_activity_and_contact_instance():
    payload = {
        "activityId": "act",
        "definitionInstanceId": "def-1",
        "keyValue": "C1",
        "journeyId": "j",
        "args": {"templateId": "t"},
    }
    first, record = executions.new_execution(payload)
    again, _ = executions.new_execution(dict(payload))
    other, _ = executions.new_execution({**payload, "definitionInstanceId": "def-2"})
    assert first == again != other
    assert record["eventId"] == event_id_for(first) and record["contactKey"] == "C1"
