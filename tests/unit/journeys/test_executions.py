"""The per-execution steps against fakeredis and a mocked Rokt: every outcome, once; the outcome
and its release in one script, the render reading each execution once, the batch's current rows,
and the time a tenant spent disabled left out of its executions' budget."""

import json
import threading
import time

import pytest
import responses

from pipeline.clients.errors import RetryableError
from pipeline.journeys import executions
from pipeline.journeys.templates import create_template, update_template
from pipeline.stores.ledger import event_id_for
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions.subscription_rows import apply_subscription
from pipeline.subscriptions.webhooks import update_execution
from pipeline.vocabulary import OutboxKind, State, TenantStatus
from tests.unit.conftest import COMPLETE
from tests.unit.conftest import claim_execution as claim

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
TEMPLATE = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/London"}


@pytest.fixture
def template_id(runtime):
    return create_template(runtime.redis, "default", TEMPLATE)["id"]


def rows(runtime):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange("rsf:default:outbox:status")]


def stream(runtime, kind):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange(f"rsf:default:outbox:{kind}")]


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
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "no_subscription" and "no live subscription" in ex.fields["error"]


def subscribe(runtime, subscription_id, contact="C1", webhook=None, event_type="Subscribe"):
    attrs = {"CalendarSubscriptionId": subscription_id, "SubscriberExternalId": contact}
    apply_subscription(
        runtime, "default", webhook or f"w-{subscription_id}-{event_type}", event_type, attrs, ""
    )


@pytest.mark.parametrize("binding", [None, "", "  "], ids=["absent", "empty", "blank"])
def test_without_a_subscription_id_the_contacts_live_subscriptions_are_used(runtime, template_id, binding):
    subscribe(runtime, "s-live-2")
    subscribe(runtime, "s-live-1")
    subscribe(runtime, "s-gone")
    subscribe(runtime, "s-gone", event_type="Unsubscribe")
    subscribe(runtime, "s-other", contact="C2")
    args = {"templateId": template_id, "FirstName": "A"}
    if binding is not None:
        args["subscriptionId"] = binding
    claim(runtime, "e1", **args)
    assert executions.render_step(runtime, "default", "e1") is True
    fields = runtime.ledger.get("default", "e1").fields
    assert json.loads(fields["subscriptionIds"]) == ["s-live-1", "s-live-2"]
    assert fields["subscriptionSource"] == "index"


def test_a_bound_subscription_id_wins_over_the_index(runtime, template_id):
    subscribe(runtime, "s-indexed")
    claim(runtime, "e1", templateId=template_id, FirstName="A", subscriptionId="s-bound")
    assert executions.render_step(runtime, "default", "e1") is True
    fields = runtime.ledger.get("default", "e1").fields
    assert (
        json.loads(fields["subscriptionIds"]) == ["s-bound"] and fields["subscriptionSource"] == "inArguments"
    )


def test_a_contact_whose_only_subscription_ended_has_none(runtime, template_id):
    subscribe(runtime, "s1", event_type="Unsubscribe")  # overtook its Subscribe
    subscribe(runtime, "s1")
    claim(runtime, "e1", templateId=template_id, FirstName="A", subscriptionId="")
    assert executions.render_step(runtime, "default", "e1") is False
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
def test_an_event_rokt_already_holds_ends_accepted_without_a_dead_letter(runtime, template_id):
    """A retry after a lost answer, to a Rokt that refuses a taken eventId
    (docs/vendors/rokt-calendar-api.md §7)."""
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=400, json={"Code": "DuplicateEventId", "Reason": "exists"})
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    executions.render_step(runtime, "default", "e1")
    executions.create_step(runtime, "default", "e1")
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "accepted" and not ex.fields.get("error")
    assert not runtime.redis.hlen("rsf:default:dlq")
    assert [r["values"]["Status"] for r in rows(runtime)] == ["accepted"]


def _render_and_create(runtime, execution="e1"):
    executions.render_step(runtime, "default", execution)
    executions.create_step(runtime, "default", execution)


def _send_an_edited_version_whose_answer_is_lost(runtime, template_id):
    """The template edited, then its version sent with the answer lost (the next mocked answer:
    500) and retried (the one after: refused as taken)."""
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "Bye {{FirstName}}"})
    with pytest.raises(RetryableError):
        _render_and_create(runtime)
    _render_and_create(runtime)


@responses.activate
def test_a_taken_event_id_after_a_lost_answer_of_the_same_content_ends_accepted(runtime, template_id):
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=500)  # created, the answer lost on its way back
    responses.post(ROKT_CREATE, status=409)
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    with pytest.raises(RetryableError):
        _render_and_create(runtime)
    _render_and_create(runtime)  # a redelivered render renders the same event: the retry
    assert runtime.ledger.get("default", "e1").status == "accepted"


@responses.activate
def test_a_taken_event_id_after_the_event_changed_fails_saying_which_version_rokt_shows(runtime, template_id):
    """Sent (answer lost), then rendered again from an edited template: Rokt refuses the
    eventId and the calendar shows the first version, so the execution must not say accepted."""
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=500)
    responses.post(ROKT_CREATE, status=409)
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    with pytest.raises(RetryableError):
        _render_and_create(runtime)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "Bye {{FirstName}}"})
    _render_and_create(runtime)
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "failed" and "calendar shows that version" in ex.fields["error"]
    assert runtime.redis.hexists("rsf:default:dlq", "e1")


@responses.activate
def test_a_call_the_limiter_held_back_does_not_count_as_sent(runtime, template_id):
    """v1 deferred by the limiter (never sent), the template edited, v2 sent with its answer
    lost, and its retry refused as taken: that is v2 at Rokt, so accepted."""
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=500)
    responses.post(ROKT_CREATE, status=409)
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    limiter = runtime.limiter("default", "rokt")
    limiter.pause(5)
    with pytest.raises(RateLimited):
        _render_and_create(runtime)
    runtime.redis.delete(limiter.cooldown_key)
    _send_an_edited_version_whose_answer_is_lost(runtime, template_id)
    assert runtime.ledger.get("default", "e1").status == "accepted"


@responses.activate
def test_a_version_rokt_refused_outright_does_not_count_as_sent(runtime, template_id):
    """v1 failed Rokt's validation (nothing created); fixed and replayed, v2 is sent, its answer
    lost, and its retry refused as taken: that is v2 at Rokt, so accepted."""
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    responses.post(ROKT_CREATE, status=400, json={"Code": "ValidationFailed", "Reason": "title too long"})
    responses.post(ROKT_CREATE, status=500)
    responses.post(ROKT_CREATE, status=409)
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    _render_and_create(runtime)
    assert runtime.ledger.get("default", "e1").status == "failed"
    assert runtime.ledger.reopen("default", "e1")
    _send_an_edited_version_whose_answer_is_lost(runtime, template_id)
    assert runtime.ledger.get("default", "e1").status == "accepted"


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


# --- release once ---


def releases(runtime):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange("rsf:default:outbox:release")]


def released_statuses(runtime):
    return [item["data"]["roktStatus"] for item in releases(runtime)]


def accept(runtime, template_id, execution="e1", **release):
    """Claim, render and end `accepted` (as create_step does after Rokt's 202)."""
    claim(
        runtime,
        execution,
        templateId=template_id,
        subscriptionId="s1",
        FirstName="A",
        releaseEventDefinitionKey="K",
        **release,
    )
    assert executions.render_step(runtime, "default", execution) is True
    executions.finish(runtime, "default", execution, State.ACCEPTED)


@pytest.mark.parametrize("release", [{}, {"releaseOn": "accepted"}], ids=["default", "accepted"])
def test_release_on_accepted_releases_at_the_outcome_and_never_again(runtime, template_id, release):
    accept(runtime, template_id, **release)
    assert released_statuses(runtime) == ["accepted"]
    executions.create_step(runtime, "default", "e1")  # a redelivered task re-emits
    executions.render_step(runtime, "default", "e1")
    assert update_execution(runtime, "default", event_id_for("e1"), State.CONFIRMED) is True
    assert update_execution(runtime, "default", event_id_for("e1"), State.REMOVED) is True
    assert released_statuses(runtime) == ["accepted"]
    statuses = [r["values"]["Status"] for r in rows(runtime)]
    assert statuses[-2:] == ["confirmed", "removed"]  # the status rows still follow every move
    fields = runtime.ledger.get("default", "e1").fields
    assert fields["releasedStatus"] == "accepted" and fields["releasedAt"]


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        ({"FirstName": " "}, "missing_field"),
        ({"FirstName": "A", "subscriptionId": ""}, "no_subscription"),
        ({"FirstName": "A", "templateId": "tpl-nope"}, "failed"),
    ],
)
@pytest.mark.parametrize("release_on", ["accepted", "confirmed"])
def test_outcomes_other_than_accepted_release_at_once_in_both_modes(
    runtime, template_id, args, outcome, release_on
):
    claim(
        runtime,
        "e1",
        **{"templateId": template_id, "subscriptionId": "s1", "releaseEventDefinitionKey": "K", **args},
        releaseOn=release_on,
    )
    assert executions.render_step(runtime, "default", "e1") is False
    executions.render_step(runtime, "default", "e1")  # redelivered
    assert released_statuses(runtime) == [outcome]
    assert releases(runtime)[0]["contactKey"] == "C1"
    assert runtime.redis.zcard("rsf:default:release-due") == 0


def test_release_on_confirmed_waits_for_the_confirmation_and_releases_once(runtime, template_id):
    accept(runtime, template_id, releaseOn="confirmed", releaseAfterSeconds="600")
    assert released_statuses(runtime) == []
    deadline = runtime.redis.zscore("rsf:default:release-due", "e1")
    assert 590 < deadline - time.time() <= 600
    executions.create_step(runtime, "default", "e1")  # redelivered: the deadline is not pushed
    assert runtime.redis.zscore("rsf:default:release-due", "e1") == deadline
    assert update_execution(runtime, "default", event_id_for("e1"), State.CONFIRMED) is True
    update_execution(runtime, "default", event_id_for("e1"), State.REMOVED)
    executions.create_step(runtime, "default", "e1")
    assert released_statuses(runtime) == ["confirmed"]
    assert releases(runtime)[0]["data"]["roktEventId"] == event_id_for("e1")
    assert runtime.redis.zcard("rsf:default:release-due") == 0


def test_release_on_confirmed_with_no_time_limit_releases_at_acceptance(runtime, template_id):
    accept(runtime, template_id, releaseOn="confirmed", releaseAfterSeconds="0")
    update_execution(runtime, "default", event_id_for("e1"), State.CONFIRMED)
    assert released_statuses(runtime) == ["accepted"]


def test_no_release_key_no_release(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A", releaseOn="confirmed")
    executions.render_step(runtime, "default", "e1")
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    update_execution(runtime, "default", event_id_for("e1"), State.CONFIRMED)
    assert releases(runtime) == [] and runtime.redis.zcard("rsf:default:release-due") == 0


def test_a_release_racing_another_is_appended_once(runtime, template_id, monkeypatch):
    """Two releasers read `releasedAt` absent at the same time: the WATCHed transaction lets
    one append; the other's EXEC fails, it reads again and finds the contact released."""
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.NO_SUBSCRIPTION)
    real_now = executions.ledger.now_iso
    raced = []

    def now_with_a_rival():
        if not raced:  # between our read and our EXEC, a rival releases first
            raced.append(None)
            raced[0] = executions.release_once(runtime, "default", "e1")
        return real_now()

    monkeypatch.setattr(executions.ledger, "now_iso", now_with_a_rival)
    assert executions.release_once(runtime, "default", "e1") is False
    assert raced == [True]
    assert released_statuses(runtime) == ["no_subscription"]


def test_concurrent_releasers_append_one_release(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.FAILED)
    start = threading.Barrier(8)
    results = []

    def release():
        start.wait()
        results.append(executions.release_once(runtime, "default", "e1"))

    threads = [threading.Thread(target=release) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert released_statuses(runtime) == ["failed"]


def test_a_replayed_execution_that_was_released_at_failure_is_not_released_again(runtime, template_id):
    claim(
        runtime,
        "e1",
        templateId=template_id,
        FirstName="A",
        subscriptionId="s1",
        releaseEventDefinitionKey="K",
    )
    executions.give_up(runtime, "default", "e1", "create_event", RetryableError("HTTP 503"), 8)
    assert runtime.ledger.reopen("default", "e1") is True
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert released_statuses(runtime) == ["failed"]


def test_a_malformed_link_in_a_value_fails_the_execution_with_a_reason(runtime):
    """`http://[x` in a contact value fails the execution, not render_step with a ValueError."""
    template = {**TEMPLATE, "description": "Shop at {{Link}}"}
    template_id = create_template(runtime.redis, "default", template)["id"]
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A", Link="http://[x")
    assert executions.render_step(runtime, "default", "e1") is False
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == "failed" and ex.fields["error"] == "description: malformed link (Invalid IPv6 URL)"
    letter = json.loads(runtime.redis.hget("rsf:default:dlq", "e1"))
    assert letter["stage"] == "render" and letter["errorClass"] == "permanent"
    assert rows(runtime)[0]["values"]["Status"] == "failed"


def test_contact_values_reach_the_stored_event_cleaned(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava\r\nX-INJECT:1\u202e")
    assert executions.render_step(runtime, "default", "e1") is True
    event = json.loads(runtime.ledger.get("default", "e1").fields["event"])
    assert event["title"] == "Hi Ava  X-INJECT:1"


# --- the outcome and the release in one script ---


def test_finish_releases_once_in_one_line(runtime, template_id, caplog):
    claim(
        runtime,
        "e1",
        templateId=template_id,
        subscriptionId="s1",
        FirstName="A",
        releaseEventDefinitionKey="K",
    )
    assert executions.render_step(runtime, "default", "e1") is True
    with caplog.at_level("INFO", logger="pipeline.journeys.executions"):
        executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert released_statuses(runtime) == ["accepted"]
    assert [r.getMessage().endswith("ended accepted; released") for r in caplog.records] == [True]
    ex = runtime.ledger.get("default", "e1")
    assert ex.fields["releasedStatus"] == "accepted"
    # emitted again (a redelivered task): the row again, never the release
    assert executions.emit_outcome(runtime, ex) is False
    assert released_statuses(runtime) == ["accepted"]
    assert [r["values"]["Status"] for r in stream(runtime, "status")] == ["accepted", "accepted"]


def test_an_outcome_read_before_the_execution_moved_releases_what_it_is_now(runtime, template_id):
    """The script is guarded by the status and updatedAt the release was built from: a stale
    read falls back to release_once, which decides on the hash as it is."""
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.FAILED, error="first")
    stale = runtime.ledger.get("default", "e1")
    assert runtime.ledger.reopen("default", "e1")  # a replay: queued again, nothing to release
    assert executions.emit_outcome(runtime, stale) is False
    assert released_statuses(runtime) == []
    runtime.ledger.transition("default", "e1", State.FAILED, error="second")
    stale = runtime.ledger.get("default", "e1")
    runtime.ledger.update("default", "e1", lastError="x")  # same status, newer updatedAt
    assert executions.emit_outcome(runtime, stale) is True
    assert released_statuses(runtime) == ["failed"]
    assert stream(runtime, "release")[0]["data"]["error"] == "second"


def test_an_expired_execution_releases_nothing(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.FAILED)
    ex = runtime.ledger.get("default", "e1")
    runtime.redis.zadd("rsf:default:release-due", {"e1": 1})
    runtime.redis.delete("rsf:default:exec:e1")
    assert executions.emit_outcome(runtime, ex) is False
    assert released_statuses(runtime) == [] and runtime.redis.zcard("rsf:default:release-due") == 0


# --- the render's one read and its parsed templates ---


def test_render_sees_a_template_updated_since_the_last_render(runtime, template_id):
    for execution in ("e1", "e2"):
        claim(runtime, execution, templateId=template_id, subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "e1") is True
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "Hello {{FirstName}}"})
    assert executions.render_step(runtime, "default", "e2") is True
    titles = [json.loads(runtime.ledger.get("default", e).fields["event"])["title"] for e in ("e1", "e2")]
    assert titles == ["Hi A", "Hello A"]


def test_an_execution_without_the_template_field_reads_the_template_by_its_args(runtime, template_id):
    """Executions claimed before the `templateId` field existed still render."""
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A")
    runtime.redis.hdel("rsf:default:exec:e1", "templateId")
    assert executions.render_step(runtime, "default", "e1") is True


def test_a_finished_execution_rendered_again_only_re_emits_its_row(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A")
    executions.finish(runtime, "default", "e1", State.NO_SUBSCRIPTION, "none")
    assert executions.render_step(runtime, "default", "e1") is False
    assert [r["values"]["Status"] for r in stream(runtime, "status")] == ["no_subscription"] * 2
    assert executions.render_step(runtime, "default", "gone") is False  # not in the ledger


# --- the batch's current rows ---


def test_current_rows_are_read_for_a_batch_and_an_expired_one_keeps_its_row(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A")
    runtime.ledger.transition("default", "e1", State.FAILED, error="boom")
    buffered = [
        {"keys": {"ContactKey": "C1", "ExecutionId": "e1"}, "values": {"Status": "queued"}},
        {"keys": {"ContactKey": "C9", "ExecutionId": "gone"}, "values": {"Status": "accepted"}},
    ]
    current = executions.current_status_rows(runtime, "default", buffered)
    assert current[0] == executions.status_row(runtime.ledger.get("default", "e1"))
    assert current[0]["values"]["Status"] == "failed" and current[1] == buffered[1]


# --- a disabled tenant's time ---


def test_time_a_tenant_spent_disabled_does_not_count_against_its_executions(rt):
    rt.registry.add("brand-b", COMPLETE)
    claimed = rt.ledger.claim(
        "brand-b", "ex-1", {"eventId": "ev-1", "budgetStart": "2020-01-01T00:00:00+00:00", "args": "{}"}
    )
    assert claimed
    assert not executions.after_failed_call(rt, "brand-b", "ex-1", RateLimited(0.5)).retry  # budget spent
    rt.ledger.claim(
        "brand-b", "ex-2", {"eventId": "ev-2", "budgetStart": "2020-01-01T00:00:00+00:00", "args": "{}"}
    )
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    rt.registry.set_status("brand-b", TenantStatus.ACTIVE)
    assert executions.after_failed_call(rt, "brand-b", "ex-2", RateLimited(0.5)).retry


@responses.activate
def test_a_create_without_its_rendered_event_ends_in_a_replayable_dead_letter(runtime, template_id):
    """Only a render stores the event: a create that finds none (a hash cut short by hand or a
    lost write) fails under the render stage, so a replay renders it again and sends it."""
    from pipeline.infra import keys
    from pipeline.upkeep import replay
    from pipeline.vocabulary import Stage

    create = responses.post(ROKT_CREATE, status=202)
    responses.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="Ava")
    executions.create_step(runtime, "default", "e1")
    assert runtime.ledger.get("default", "e1").status == State.FAILED and create.call_count == 0
    (letter,) = [json.loads(v) for v in runtime.redis.hvals(keys.dead_letters("default"))]
    assert (letter["stage"], letter["reason"]) == (Stage.RENDER, "internal: no rendered event to send")
    sent = []
    assert replay.replay_one(runtime, "default", letter, lambda *a: sent.append(a), lambda *a: None)
    assert runtime.ledger.get("default", "e1").status == State.QUEUED and sent == [("default", "e1")]
    assert executions.render_step(runtime, "default", "e1") is True  # the chain again: rendered, sent
    executions.create_step(runtime, "default", "e1")
    assert runtime.ledger.get("default", "e1").status == State.ACCEPTED and create.call_count == 1


@pytest.mark.parametrize("error", ["=HYPERLINK(\"http://x\")", "-1 field refused", "@SUM(A1)", "+33 retries"])
def test_a_vendors_error_that_reads_as_a_formula_reaches_the_status_row_neutralised(runtime, error):
    """The status data extension's Error column holds a vendor's words; exported to a spreadsheet,
    one starting with = + - @ would run as a formula."""
    claim(runtime, "e1")
    runtime.redis.hset("rsf:default:exec:e1", "error", error)
    row = executions.status_row(runtime.ledger.get("default", "e1"))
    assert row["values"]["Error"] == "'" + error
    runtime.redis.hset("rsf:default:exec:e1", "error", "Rokt answered 400")
    plain = executions.status_row(runtime.ledger.get("default", "e1"))
    assert plain["values"]["Error"] == "Rokt answered 400"
