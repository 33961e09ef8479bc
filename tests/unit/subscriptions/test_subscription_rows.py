"""Subscription mapping: the 26 attributes, aliases, dates and arrival order."""

import json

import pytest

from pipeline.infra.cellsafe import neutralise
from pipeline.subscriptions.subscription_rows import (
    DE_COLUMNS,
    apply_subscription,
    attributes,
    live_subscriptions,
    merge,
    merge_backfill,
    row_from_state,
    sfmc_date,
)
from schemas.rokt_webhook import EnvelopeSchema, load_subscription
from tests.unit.samples import SUBSCRIBE


def test_mapping_fills_all_26_attributes_from_a_subscribe():
    envelope = EnvelopeSchema().load(SUBSCRIBE)
    attrs = attributes(
        envelope["eventId"], envelope["eventDetails"], load_subscription(envelope["eventDetails"])
    )
    assert len(DE_COLUMNS) == 26
    assert set(attrs) == set(DE_COLUMNS) - {"RemovedDateTime"}
    assert attrs["SubscriberExternalId"] == "0031X00000abcDE"
    assert attrs["Email"] == "fan@example.com" and attrs["optIn1"] is True and attrs["optIn2"] is False
    assert attrs["tagID"] == "6513319e-d3e1-4497-89ee-b5dcee9a58bc;7513319e-d3e1-4497-89ee-b5dcee9a58bc"
    assert attrs["TagText"] == "Team A;Team B"
    assert attrs["TimeZoneTag"] == "AUS Eastern Standard Time" and attrs["EventId"] == SUBSCRIBE["eventId"]


def test_aliases_are_folded():
    details = {
        "accountCode": "a",
        "calendarSubscriptionId": "top-level-id",
        "subscription": {
            "email": "x@example.com",
            "marketingAllowed": True,
            "additionalOptIn": True,
            "urlReferrer": "https://r.example",
            "subscriberExternalId": "EXT",
            "timezoneId": "UTC",
        },
    }
    attrs = attributes("e", details, load_subscription(details))
    assert attrs["CalendarSubscriptionId"] == "top-level-id"
    assert (attrs["Email"], attrs["optIn1"], attrs["optIn2"]) == ("x@example.com", True, True)
    assert (attrs["Referrer"], attrs["SubscriberExternalId"], attrs["TimeZoneTag"]) == (
        "https://r.example",
        "EXT",
        "UTC",
    )
    assert (
        EnvelopeSchema().load({**SUBSCRIBE, "eventType": "SubscriptionDetailsUpdate"})["eventType"]
        == "SubscriptionDetailsUpdated"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-05-06 01:18:49.755190", "2020-05-06T01:18:49Z"),
        ("2020-05-06T01:18:49Z", "2020-05-06T01:18:49Z"),
        ("2020-05-06T11:18:49+10:00", "2020-05-06T01:18:49Z"),
        ("garbage", ""),
        (None, ""),
    ],
)
def test_removed_dates(value, expected):
    assert sfmc_date(value) == expected


def test_an_unsubscribe_that_overtook_its_subscribe_stays_unsubscribed():
    subscribe = {"CalendarSubscriptionId": "s", "Email": "a@x", "optIn1": True}
    unsubscribe = {
        "CalendarSubscriptionId": "s",
        "RemovedDateTime": "2026-01-01T00:00:00Z",
        "countryCode": "US",
    }
    in_order = merge(merge({}, subscribe, 1), unsubscribe, 3)
    overtaken = merge(merge({}, unsubscribe, 3), subscribe, 1)
    assert row_from_state(in_order, "matched")["values"] | {"UpdatedAt": ""} == row_from_state(
        overtaken, "matched"
    )["values"] | {"UpdatedAt": ""}
    assert row_from_state(overtaken, "")["values"]["RemovedDateTime"] == "2026-01-01T00:00:00Z"


def test_a_late_subscribe_never_overwrites_an_update():
    state = merge({}, {"CalendarSubscriptionId": "s", "optIn1": False, "TimeZoneTag": "UTC"}, 2)
    state = merge(state, {"CalendarSubscriptionId": "s", "optIn1": True, "Email": "a@x"}, 1)
    values = row_from_state(state, "")["values"]
    assert values["optIn1"] is False and values["Email"] == "a@x" and values["TimeZoneTag"] == "UTC"


# --- the index contact key -> live subscriptions (for executes without a subscriptionId) ---


def apply(runtime, webhook, event_type, subscription="s1", **attrs):
    values = {"CalendarSubscriptionId": subscription, **attrs}
    return apply_subscription(runtime, "default", webhook, event_type, values, "")


def live(runtime, key="EXT-1"):
    return live_subscriptions(runtime.redis, "default", key)


def test_subscribe_indexes_and_unsubscribe_removes(runtime):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1", Email="a@x")
    apply(runtime, "w2", "Subscribe", "s2", SubscriberExternalId="EXT-1")
    apply(runtime, "w3", "Subscribe", "s3", SubscriberExternalId="EXT-2")
    assert live(runtime) == ["s1", "s2"] and live(runtime, "EXT-2") == ["s3"]
    apply(runtime, "w4", "SubscriptionDetailsUpdated", "s1", optIn1=False)
    assert live(runtime) == ["s1", "s2"]
    apply(runtime, "w5", "Unsubscribe", "s1", RemovedDateTime="2026-01-01T00:00:00Z")
    assert live(runtime) == ["s2"]
    assert live(runtime, "a@x") == [] and live(runtime, "") == []


def test_an_unsubscribe_that_overtook_its_subscribe_leaves_it_out(runtime):
    apply(runtime, "w-unsub", "Unsubscribe", "s1")  # carries no identity, no removal date
    apply(runtime, "w-sub", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    apply(runtime, "w-upd", "SubscriptionDetailsUpdated", "s1", SubscriberExternalId="EXT-1", optIn1=True)
    assert live(runtime) == []


def test_a_redelivered_subscribe_after_the_unsubscribe_does_not_revive_it(runtime):
    apply(runtime, "w-sub", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    apply(runtime, "w-unsub", "Unsubscribe", "s1")
    assert apply(runtime, "w-sub", "Subscribe", "s1", SubscriberExternalId="EXT-1") is False
    assert apply(runtime, "w-sub-2", "Subscribe", "s1", SubscriberExternalId="EXT-1") is True  # Rokt re-sent
    assert live(runtime) == []


def test_an_email_capture_is_indexed_under_the_email_its_contact_was_created_with(runtime):
    apply(runtime, "w1", "Subscribe", "s1", Email="fan@example.com")
    assert live(runtime, "fan@example.com") == ["s1"]
    apply(runtime, "w2", "SubscriptionDetailsUpdated", "s1", SubscriberExternalId="EXT-1")
    assert live(runtime, "fan@example.com") == [] and live(runtime) == ["s1"]


def test_the_backfill_feeds_the_index_below_every_webhook(runtime):
    merge_backfill(runtime, "default", {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "EXT-1"}, "")
    merge_backfill(
        runtime,
        "default",
        {
            "CalendarSubscriptionId": "s2",
            "SubscriberExternalId": "EXT-1",
            "RemovedDateTime": "2025-01-01T00:00:00Z",
        },
        "",
    )
    assert live(runtime) == ["s1"]
    apply(runtime, "w-unsub", "Unsubscribe", "s1")
    merge_backfill(runtime, "default", {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "EXT-1"}, "")
    assert live(runtime) == []  # a backfill re-run after go-live cannot undo an Unsubscribe


# --- spreadsheet formula injection ---


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_a_webhook_row_never_starts_a_text_with_a_formula_character(runtime, start):
    payload = start + 'HYPERLINK("https://evil.example","x")'
    apply(
        runtime,
        "w1",
        "Subscribe",
        "s1",
        SubscriberExternalId=start + "EXT",
        Email=start + "a@x",
        calendarTitle=payload,
        TagText=payload,
        UtmSource=payload,
        accountName="Acme",
        optIn1=True,
    )
    ((_id, fields),) = runtime.redis.xrange("rsf:default:outbox:subscription")
    row = json.loads(fields["p"])
    values = row["values"]
    for name in ("calendarTitle", "TagText", "UtmSource"):
        assert values[name] == "'" + payload, name
    assert values["accountName"] == "Acme" and values["optIn1"] is True
    # identities stay byte for byte: the contact key, the email and the primary key
    assert values["SubscriberExternalId"] == start + "EXT" and values["Email"] == start + "a@x"
    assert live(runtime, (start + "EXT").strip()) == ["s1"]  # the index key as before
    # the stored state keeps what Rokt sent; neutralising twice adds nothing
    assert neutralise(neutralise(payload)) == "'" + payload and neutralise(5) == 5


def test_a_backfill_row_is_neutralised_too(runtime):
    row = merge_backfill(runtime, "default", {"CalendarSubscriptionId": "-s9", "deviceName": "@dev"}, "")
    assert row["keys"] == {"CalendarSubscriptionId": "-s9"} and row["values"]["deviceName"] == "'@dev"


# --- the contact match: decided and counted once per subscription ------------------------------


class FakeContacts:
    """SFMC's contacts as match_contact sees them; `during_lookup` runs inside the first lookup
    (another task of the same subscription, between this one's read and its write)."""

    def __init__(self, existing=()):
        self.existing = set(existing)
        self.created = []
        self.during_lookup = None

    def contact_exists(self, key):
        if self.during_lookup is not None:
            run, self.during_lookup = self.during_lookup, None
            run()
        return key in self.existing

    def create_contact(self, key, email):
        self.created.append(key)
        self.existing.add(key)


def match_figures(runtime):
    from pipeline.infra import keys

    day = runtime.redis.hgetall(keys.performance_day("default", runtime.reporting_days.today("default")))
    return {name: int(day.get(f"*|{name}", 0)) for name in ("matched", "contacts_created")}


def test_two_tasks_of_a_new_subscription_count_its_contact_once(runtime, monkeypatch):
    from pipeline.subscriptions.subscription_rows import match_contact

    contacts = FakeContacts()
    monkeypatch.setattr(runtime, "sfmc", lambda _tenant: contacts)
    attrs = {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "EXT-1"}
    other = []
    contacts.during_lookup = lambda: other.append(match_contact(runtime, "default", "s1", attrs))

    # this task read nothing decided, then the other one created the contact, then this one finds it
    assert match_contact(runtime, "default", "s1", attrs) == "created"  # the first decision stands
    assert other == ["created"] and contacts.created == ["EXT-1"]
    assert match_figures(runtime) == {"matched": 0, "contacts_created": 1}


def test_a_task_that_finds_the_contact_another_is_creating_says_created(runtime, monkeypatch):
    from pipeline.infra import keys
    from pipeline.subscriptions.subscription_rows import match_contact

    contacts = FakeContacts(existing={"EXT-1"})
    monkeypatch.setattr(runtime, "sfmc", lambda _tenant: contacts)
    attrs = {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "EXT-1"}
    sub_key = keys.subscription("default", "s1")
    contacts.during_lookup = lambda: runtime.redis.hset(sub_key, "contactMatch", "creating")  # the other task

    assert match_contact(runtime, "default", "s1", attrs) == "created"
    assert match_figures(runtime) == {"matched": 0, "contacts_created": 1}


def test_a_replay_counts_a_contact_match_decided_before_once(runtime, monkeypatch):
    from pipeline.delivery.flush import flush_subscription_history
    from pipeline.infra import keys
    from pipeline.subscriptions.subscription_rows import match_contact, matched_or_failed

    contacts = FakeContacts(existing={"EXT-1"})
    monkeypatch.setattr(runtime, "sfmc", lambda _tenant: contacts)
    attrs = {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "EXT-1"}
    assert match_contact(runtime, "default", "s1", attrs) == "matched"
    assert match_contact(runtime, "default", "s1", attrs, again=True) == "matched"  # decided anew
    assert match_figures(runtime) == {"matched": 1, "contacts_created": 0}
    # the working copy written to the store and dropped: the store's decision counted it
    apply_subscription(runtime, "default", "w1", "Subscribe", attrs, "matched")
    flush_subscription_history(runtime, "default", consumer="c", max_wait=0)
    assert not runtime.redis.exists(keys.subscription("default", "s1"))
    assert matched_or_failed(runtime, "default", attrs, again=True) == "matched"
    assert match_figures(runtime) == {"matched": 1, "contacts_created": 0}
    # a subscription never decided (its match parked while SFMC refused the credentials): counted
    attrs2 = {"CalendarSubscriptionId": "s2", "SubscriberExternalId": "EXT-2"}
    apply_subscription(runtime, "default", "w2", "Subscribe", attrs2, "")
    assert matched_or_failed(runtime, "default", attrs2, again=True) == "created"
    assert match_figures(runtime) == {"matched": 1, "contacts_created": 1}
