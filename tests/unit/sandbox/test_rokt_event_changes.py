"""The Rokt simulator's calls on events already sent: update everywhere, delete everywhere,
remove from one subscription and a subscriber's own removal; what each calendar then shows,
the webhooks each sends, and the rate limit and faults they share with create."""

import base64

import pytest

from pipeline.sandbox.rokt import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RoktSimulator
from schemas.rokt_webhook import EnvelopeSchema

ACCOUNT = "acct"


@pytest.fixture
def sim():
    simulator = RoktSimulator()
    simulator.faults.land_delay_ms = 0  # calendars change at once unless a test says otherwise
    yield simulator
    simulator.sender.stop()


@pytest.fixture
def sent(sim, monkeypatch):
    """Every webhook the simulator hands to its sender, with its delay."""
    envelopes: list[tuple[dict, float]] = []
    monkeypatch.setattr(sim.sender, "send", lambda envelope, delay=0.0: envelopes.append((envelope, delay)))
    return envelopes


@pytest.fixture
def client(sim):
    return sim.app.test_client()


@pytest.fixture
def bearer(client):
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    answer = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    return {"Authorization": f"Bearer {answer.json['access_token']}"}


@pytest.fixture
def subs(client):
    answer = client.post(
        "/__sandbox__/subscriptions",
        json={"accountCode": ACCOUNT, "subscriptions": [{"subscriberId": "a"}, {"subscriberId": "b"}]},
    )
    return answer.json["subscriptionIds"]


def event(event_id="rsf-1", **changes):
    return {
        "eventId": event_id,
        "title": "Summer sale starts Friday",
        "description": "https://example.com/sale",
        "start": "2026-06-05T09:00:00",
        "end": "2026-06-05T10:00:00",
        "timezone": "AUS Eastern Standard Time",
        **changes,
    }


def create(client, bearer, sub_ids, body=None):
    answer = client.post(
        f"/v1/subscriptionevent/{ACCOUNT}",
        json={"event": body or event(), "subscriptionIds": sub_ids},
        headers=bearer,
    )
    assert answer.status_code == 202, answer.json


def kinds(sent):
    return [envelope["eventType"] for envelope, _delay in sent]


@pytest.mark.parametrize("wrapped", [False, True])
def test_update_changes_every_calendar_holding_the_event(sim, client, bearer, subs, sent, wrapped):
    create(client, bearer, subs)
    create(client, bearer, subs[:1], event("rsf-2"))
    new = event(title="Summer sale starts Saturday", start="2026-06-06T09:00:00")
    answer = client.post(
        f"/v1/subscriptionevent/{ACCOUNT}/update", json={"event": new} if wrapped else new, headers=bearer
    )
    assert answer.status_code == 202
    calendars = sim.calendars()
    assert calendars[subs[0]] == {"rsf-1": new, "rsf-2": event("rsf-2")}
    assert calendars[subs[1]] == {"rsf-1": new}
    shown = client.get(f"/v1/subscription/{subs[1]}", headers=bearer).json["eventsVisibleToSubscription"]
    assert [(e["subscriptionEventId"], e["title"], e["startDateTime"]) for e in shown] == [
        ("rsf-1", "Summer sale starts Saturday", "2026-06-06T09:00:00")
    ]
    updated = [envelope for envelope, _ in sent if envelope["eventType"] == "SubscriptionEventUpdated"]
    assert len(updated) == 1  # one per event, not per subscription (the simulator's choice)
    assert updated[0]["eventDetails"]["subscriptionEvent"] == new
    assert "subscription" not in updated[0]["eventDetails"]
    state = sim.state()
    assert state["event_updates"] == 1 and state["calendar_entries"] == 3
    assert state["duplicate_calendar_entries"] == 0


def test_an_update_sent_twice_leaves_the_same_calendars(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    new = event(title="Moved")
    for _ in range(2):
        assert (
            client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=new, headers=bearer).status_code
            == 202
        )
    assert sim.calendars() == {subs[0]: {"rsf-1": new}, subs[1]: {"rsf-1": new}}
    assert sim.state()["calendar_entries"] == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/v1/subscriptionevent/{ACCOUNT}/update"),
        ("DELETE", f"/v1/subscriptionevent/{ACCOUNT}/rsf-9"),
        ("DELETE", f"/v2/subscription/{ACCOUNT}/SUB/subscriptionevent/rsf-9"),
    ],
)
def test_an_unknown_event_id_is_400_event_not_found(sim, client, bearer, subs, sent, method, path):
    create(client, bearer, subs)
    answer = client.open(path.replace("SUB", subs[0]), method=method, json=event("rsf-9"), headers=bearer)
    assert answer.status_code == 400
    assert answer.json["Code"] == "EventNotFound" and "rsf-9" in answer.json["Reason"]
    assert sim.state()["unknown_event_changes"] == 1
    assert sim.calendars()[subs[0]] == {"rsf-1": event()}
    assert kinds(sent) == ["SubscriptionEventAdded"] * 2


def test_an_event_of_another_account_is_unknown_here(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    answer = client.delete("/v1/subscriptionevent/other/rsf-1", headers=bearer)
    assert answer.status_code == 400 and answer.json["Code"] == "EventNotFound"
    assert sim.state()["calendar_entries"] == 2


def test_an_update_is_validated_like_a_create(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    for body, field in [
        (event(title=" "), "title"),
        (event(timezone="Mars/Olympus"), "timezone"),
        ([], "body"),
    ]:
        answer = client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=body, headers=bearer)
        assert answer.status_code == 400 and answer.json["Code"] == "ValidationFailed"
        assert field in answer.json["Reason"]
    assert sim.calendars()[subs[0]] == {"rsf-1": event()}
    assert sim.state()["event_updates"] == 0


def test_delete_empties_every_calendar_and_a_repeat_finds_nothing(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    assert client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-1", headers=bearer).status_code == 202
    assert sim.calendars() == {subs[0]: {}, subs[1]: {}}
    deleted = sent[-1][0]
    assert deleted["eventType"] == "SubscriptionEventDeleted"
    assert deleted["eventDetails"]["subscriptionEvent"] == {"eventId": "rsf-1"}
    assert "subscription" not in deleted["eventDetails"]
    state = sim.state()
    assert (state["events"], state["calendar_entries"], state["removed_calendar_entries"]) == (0, 0, 2)
    assert state["event_deletes"] == 1
    repeat = client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-1", headers=bearer)
    assert repeat.status_code == 400 and repeat.json["Code"] == "EventNotFound"
    assert client.get(f"/v1/subscription/{subs[0]}", headers=bearer).json["eventsVisibleToSubscription"] == []


def test_a_deleted_event_id_created_again_is_a_new_event(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-1", headers=bearer)
    create(client, bearer, subs[:1], event(title="Back"))
    assert sim.calendars() == {subs[0]: {"rsf-1": event(title="Back")}, subs[1]: {}}
    assert sim.state()["repeated_event_posts"] == 0


def test_remove_takes_the_event_from_one_subscription_only(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    path = f"/v2/subscription/{ACCOUNT}/{subs[0]}/subscriptionevent/rsf-1"
    assert client.delete(path, headers=bearer).status_code == 202
    assert sim.calendars() == {subs[0]: {}, subs[1]: {"rsf-1": event()}}
    removed = sent[-1][0]
    assert removed["eventType"] == "SubscriptionEventRemoved"
    assert removed["eventDetails"]["subscription"]["calendarSubscriptionId"] == subs[0]
    assert removed["eventDetails"]["subscriptionEvent"] == {"eventId": "rsf-1"}
    repeat = client.delete(path, headers=bearer)
    assert repeat.status_code == 400 and repeat.json["Code"] == "EventNotFound"
    # an update now reaches only the calendar that still holds it
    new = event(title="Moved")
    assert client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=new, headers=bearer).status_code == 202
    assert sim.calendars() == {subs[0]: {}, subs[1]: {"rsf-1": new}}
    state = sim.state()
    assert (state["event_removals"], state["calendar_entries"], state["removed_calendar_entries"]) == (
        1,
        1,
        1,
    )


def test_remove_from_an_unknown_subscription_is_400(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    answer = client.delete(f"/v2/subscription/{ACCOUNT}/nope/subscriptionevent/rsf-1", headers=bearer)
    assert answer.status_code == 400 and answer.json["Code"] == "SubscriptionNotFound"
    assert sim.state()["calendar_entries"] == 2


def test_a_subscriber_removes_an_event_from_their_calendar(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    answer = client.post("/__sandbox__/remove-event", json={"subscriptionId": subs[1], "eventId": "rsf-1"})
    assert answer.status_code == 200
    assert sim.calendars() == {subs[0]: {"rsf-1": event()}, subs[1]: {}}
    assert sent[-1][0]["eventType"] == "SubscriptionEventRemoved"
    assert sent[-1][0]["eventDetails"]["subscription"]["calendarSubscriptionId"] == subs[1]
    assert sim.state()["removed_by_subscribers"] == 1
    again = client.post("/__sandbox__/remove-event", json={"subscriptionId": subs[1], "eventId": "rsf-1"})
    assert again.status_code == 404
    assert client.post("/__sandbox__/remove-event", json={"eventId": "rsf-1"}).status_code == 400


def test_the_webhooks_pass_our_receivers_schema(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=event(title="Moved"), headers=bearer)
    client.delete(f"/v2/subscription/{ACCOUNT}/{subs[0]}/subscriptionevent/rsf-1", headers=bearer)
    client.post("/__sandbox__/remove-event", json={"subscriptionId": subs[1], "eventId": "rsf-1"})
    create(client, bearer, subs, event("rsf-2"))
    client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-2", headers=bearer)
    assert kinds(sent) == [
        "SubscriptionEventAdded",
        "SubscriptionEventAdded",
        "SubscriptionEventUpdated",
        "SubscriptionEventRemoved",
        "SubscriptionEventRemoved",
        "SubscriptionEventAdded",
        "SubscriptionEventAdded",
        "SubscriptionEventDeleted",
    ]
    for envelope, _delay in sent:
        assert EnvelopeSchema().validate(envelope) == {}, envelope


def test_changes_land_after_the_delay_like_creates(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    sim.faults.land_delay_ms = 600_000
    client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=event(title="Moved"), headers=bearer)
    client.delete(f"/v2/subscription/{ACCOUNT}/{subs[0]}/subscriptionevent/rsf-1", headers=bearer)
    assert sim.calendars() == {subs[0]: {"rsf-1": event()}, subs[1]: {"rsf-1": event()}}
    state = sim.state()
    assert state["pending_calendar_changes"] == 2 and state["calendar_entries"] == 2
    assert [delay > 500 for _envelope, delay in sent[-2:]] == [True, True]


def test_changes_need_a_bearer_token(sim, client, subs, sent):
    for method, path in [
        ("POST", f"/v1/subscriptionevent/{ACCOUNT}/update"),
        ("DELETE", f"/v1/subscriptionevent/{ACCOUNT}/rsf-1"),
        ("DELETE", f"/v2/subscription/{ACCOUNT}/{subs[0]}/subscriptionevent/rsf-1"),
    ]:
        answer = client.open(path, method=method, json=event())
        assert answer.status_code == 401 and answer.json["Code"] == "Unauthorized"


def test_changes_share_the_accounts_rate_limit_with_creates(sim, client, bearer, subs, sent):
    sim.faults.rate_limit = 2
    create(client, bearer, subs)
    assert (
        client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=event(), headers=bearer).status_code
        == 202
    )
    answer = client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-1", headers=bearer)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert answer.json["Code"] == "RateLimited"
    assert sim.calendars()[subs[0]] == {"rsf-1": event()}  # the refused delete did nothing
    posts = client.get("/__sandbox__/posts").json
    assert (len(posts["accepted"]), len(posts["changes"]), len(posts["throttled_changes"])) == (1, 1, 1)
    assert posts["throttled"] == []
    state = sim.state()
    assert state["max_calls_in_any_1s_window"] == 2 and state["max_posts_in_any_1s_window"] == 1


def test_an_injected_500_applies_nothing(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    sim.faults.fail_next = 1
    answer = client.delete(f"/v1/subscriptionevent/{ACCOUNT}/rsf-1", headers=bearer)
    assert answer.status_code == 500 and answer.json["Code"] == "InternalError"
    assert sim.state()["calendar_entries"] == 2 and sim.state()["event_deletes"] == 0


def test_a_lost_answer_applies_the_change_then_answers_500(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    sim.faults.lose_next_answers = 1
    new = event(title="Moved")
    answer = client.post(f"/v1/subscriptionevent/{ACCOUNT}/update", json=new, headers=bearer)
    assert answer.status_code == 500
    assert sim.calendars()[subs[1]] == {"rsf-1": new}
    assert sim.state()["lost_answers"] == 1
    assert kinds(sent)[-1] == "SubscriptionEventUpdated"


def test_state_keeps_its_keys_and_adds_the_new_counts(sim, client, bearer, subs, sent):
    create(client, bearer, subs)
    state = sim.state()
    for key in (
        "subscriptions",
        "events",
        "event_posts",
        "repeated_event_posts",
        "refused_repeats",
        "lost_answers",
        "calendar_entries",
        "pending_calendar_entries",
        "duplicate_calendar_entries",
        "max_posts_in_any_1s_window",
        "rate_limit",
        "active_subscriptions",
        "webhooks_created",
    ):
        assert key in state, key
    assert (state["events"], state["event_posts"], state["calendar_entries"]) == (1, 1, 2)
    assert state["pending_calendar_entries"] == 0 and state["pending_calendar_changes"] == 0
    assert client.get("/__sandbox__/calendars").json == {
        subs[0]: {"rsf-1": event()},
        subs[1]: {"rsf-1": event()},
    }
    client.post("/__sandbox__/reset")
    assert sim.calendars() == {} and sim.state()["event_updates"] == 0
