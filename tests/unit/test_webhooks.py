"""SubscriptionEvent* webhooks move our executions: confirmed, removed, or not ours."""

import json

import pytest

from pipeline.ledger import event_id_for
from pipeline.vocabulary import State
from pipeline.webhooks import NotYetAccepted, update_execution


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


def test_added_confirms_an_accepted_execution_once_and_releases_it_again(runtime):
    event = claim(runtime, "e1", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.ACCEPTED)
    assert update_execution(runtime, "default", event, State.CONFIRMED) is True
    assert update_execution(runtime, "default", event, State.CONFIRMED) is False  # second subscription
    assert runtime.ledger.get("default", "e1").status == "confirmed"
    assert release_statuses(runtime) == ["confirmed"]


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
