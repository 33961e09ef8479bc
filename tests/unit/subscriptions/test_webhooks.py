"""SubscriptionEvent* webhooks move our executions: confirmed, removed, or not ours."""

import json

import pytest

from pipeline.journeys import executions
from pipeline.stores.ledger import event_id_for
from pipeline.subscriptions.webhooks import NotYetAccepted, claim_webhook, process_webhook, update_execution
from pipeline.vocabulary import OutboxKind, State
from schemas.rokt_webhook import EVENT_ADDED
from tests.unit.samples import RECEIPT_TTL


def claim(runtime, execution, **args):
    runtime.ledger.claim(
        "default", execution, {"contactKey": "C1", "eventId": event_id_for(execution), "args": args}
    )
    return event_id_for(execution)


def release_statuses(runtime):
    return [
        json.loads(f["p"])["data"]["roktStatus"]
        for _id, f in runtime.redis.xrange("rsf:default:outbox:release")
    ]


def test_added_confirms_an_accepted_execution_once(runtime):
    event = claim(runtime, "e1")
    runtime.ledger.transition("default", "e1", State.ACCEPTED)
    assert update_execution(runtime, "default", event, State.CONFIRMED) is True
    assert update_execution(runtime, "default", event, State.CONFIRMED) is False  # second subscription
    assert runtime.ledger.get("default", "e1").status == "confirmed"


@pytest.mark.parametrize("release", [{}, {"releaseOn": "accepted"}], ids=["default", "accepted"])
def test_a_confirmation_does_not_release_a_contact_released_at_acceptance(runtime, release):
    event = claim(runtime, "e1", releaseEventDefinitionKey="K", **release)
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert release_statuses(runtime) == ["accepted"]
    assert update_execution(runtime, "default", event, State.CONFIRMED) is True
    assert release_statuses(runtime) == ["accepted"]  # once: the journey moved on already
    assert status_rows(runtime) == ["accepted", "confirmed"]


def test_in_confirmed_mode_the_confirmation_releases_once(runtime):
    event = claim(runtime, "e1", releaseEventDefinitionKey="K", releaseOn="confirmed")
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert release_statuses(runtime) == []
    assert update_execution(runtime, "default", event, State.CONFIRMED) is True
    assert update_execution(runtime, "default", event, State.CONFIRMED) is False  # a second subscription's
    assert update_execution(runtime, "default", event, State.REMOVED) is True
    assert release_statuses(runtime) == ["confirmed"]


def test_in_confirmed_mode_a_removal_before_confirmation_releases_it(runtime):
    event = claim(runtime, "e1", releaseEventDefinitionKey="K", releaseOn="confirmed")
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert update_execution(runtime, "default", event, State.REMOVED) is True
    assert update_execution(runtime, "default", event, State.REMOVED) is False
    assert release_statuses(runtime) == ["removed"]


def status_rows(runtime):
    return [
        json.loads(f["p"])["values"]["Status"] for _id, f in runtime.redis.xrange("rsf:default:outbox:status")
    ]


def test_removed_after_confirmed(runtime):
    event = claim(runtime, "e1")
    runtime.ledger.transition("default", "e1", State.ACCEPTED)
    update_execution(runtime, "default", event, State.CONFIRMED)
    assert update_execution(runtime, "default", event, State.REMOVED) is True
    assert runtime.ledger.get("default", "e1").status == "removed"


def test_events_we_did_not_send_are_ignored(runtime):
    assert update_execution(runtime, "default", "someone-elses-event", State.CONFIRMED) is False


def test_a_confirmation_that_overtook_our_202_asks_for_a_retry(runtime):
    event = claim(runtime, "e1")
    with pytest.raises(NotYetAccepted):
        update_execution(runtime, "default", event, State.CONFIRMED)
    assert runtime.ledger.get("default", "e1").status == "queued"


def test_a_confirmation_webhook_asks_for_the_release_flush_too(runtime):
    event = claim(runtime, "e1", releaseEventDefinitionKey="K", releaseOn="confirmed")
    executions.finish(runtime, "default", "e1", State.ACCEPTED)
    envelope = {
        "eventId": "hook-1",
        "eventType": EVENT_ADDED,
        "eventDetails": {"subscriptionEvent": {"eventId": event}},
    }
    assert claim_webhook(runtime.redis, "default", envelope, ttl_seconds=RECEIPT_TTL) is True
    assert process_webhook(runtime, "default", "hook-1") == (
        OutboxKind.STATUS_ROWS,
        OutboxKind.RELEASES,
        OutboxKind.SUBSCRIPTION_HISTORY,  # its receipt
    )
    assert release_statuses(runtime) == ["confirmed"]
