"""Subscription mapping: the 26 attributes, aliases, dates and arrival order."""

import pytest

from pipeline.subscriptions import DE_COLUMNS, attributes, merge, row_from_state, sfmc_date
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
