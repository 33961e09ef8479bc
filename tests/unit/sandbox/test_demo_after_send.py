"""The demo's after-send part: the dates it moves its templates to, and its comparison of every
simulated calendar with what the ledger says it should hold."""

import json
from datetime import date, datetime

import pytest

from pipeline.journeys.render import render_event
from pipeline.sandbox import jbsim
from pipeline.sandbox.demo import calendar_mismatches, upcoming

TEMPLATE = {
    "id": "tpl-1",
    "title": "Sale, {{FirstName}}: now Sunday",
    "start": "2026-12-11T09:00:00",
    "timezone": "UTC",
}


def record(
    status: str, event_id: str, title: str, subscriptions: list[str], template_id: str = "tpl-1"
) -> dict:
    event = {"eventId": event_id, "title": title}
    args = {"templateId": template_id, "FirstName": "Ava"}
    return {
        "status": status,
        "eventId": event_id,
        "event": json.dumps(event),
        "subscriptionIds": json.dumps(subscriptions),
        "args": json.dumps(args),
    }


NEW_TITLE = render_event(TEMPLATE, {"FirstName": "Ava"}, "e-updated")["title"]
RECORDS = {
    "x-confirmed": record("confirmed", "e-confirmed", "Sale, Ava", ["sub-1"], template_id="tpl-2"),
    "x-updated": record("updated", "e-updated", NEW_TITLE, ["sub-1", "sub-2"]),
    "x-cancelled": record("cancelled", "e-cancelled", "VIP hour", ["sub-2"], template_id="tpl-2"),
    "x-removed": record("removed", "e-removed", "Sale, Ava", ["sub-3"]),
    "x-no-subscription": record("no_subscription", "e-none", "", []),
}
MATCHING = {
    "sub-1": {"e-confirmed": {"title": "Sale, Ava"}, "e-updated": {"title": NEW_TITLE}},
    "sub-2": {"e-updated": {"title": NEW_TITLE}},
    "sub-3": {},
    "sub-4": {},  # a subscription nothing was sent to
}


def test_calendars_that_hold_what_the_ledger_says_match():
    assert NEW_TITLE == "Sale, Ava: now Sunday"
    assert calendar_mismatches(MATCHING, RECORDS, {"tpl-1": TEMPLATE}) == []


@pytest.mark.parametrize(
    ("subscription", "shows", "problem"),
    [
        (
            "sub-2",
            {"e-updated": {"title": NEW_TITLE}, "e-cancelled": {"title": "VIP hour"}},
            "no longer holds",
        ),
        ("sub-3", {"e-removed": {"title": "Sale, Ava"}}, "no longer holds"),
        ("sub-2", {"e-updated": {"title": "Sale, Ava"}}, "not 'Sale, Ava: now Sunday'"),
        ("sub-2", {}, "does not show e-updated"),
        ("sub-4", {"e-other": {"title": "Someone else's"}}, "the ledger never sent"),
    ],
)
def test_each_difference_is_named(subscription, shows, problem):
    calendars = {**MATCHING, subscription: shows}
    found = calendar_mismatches(calendars, RECORDS, {"tpl-1": TEMPLATE})
    assert len(found) == 1 and problem in found[0] and found[0].startswith(subscription)


def test_an_updated_execution_must_hold_what_its_template_renders_now():
    """A correction that changed the calendars and the record alike, but to an old title, is
    caught by rendering the template as it is now."""
    stale = {**RECORDS, "x-updated": record("updated", "e-updated", "Sale, Ava", ["sub-1", "sub-2"])}
    calendars = {**MATCHING, "sub-1": {**MATCHING["sub-1"], "e-updated": {"title": "Sale, Ava"}}}
    calendars["sub-2"] = {"e-updated": {"title": "Sale, Ava"}}
    found = calendar_mismatches(calendars, stale, {"tpl-1": TEMPLATE})
    assert found == ["x-updated: updated, but its record holds 'Sale, Ava', not 'Sale, Ava: now Sunday'"]


@pytest.mark.parametrize(
    ("today", "friday"),
    [
        (date(2026, 12, 7), date(2026, 12, 11)),  # a Monday: Friday is four days away
        (date(2026, 12, 8), date(2026, 12, 11)),  # a Tuesday: Friday is three days away
        (date(2026, 12, 9), date(2026, 12, 18)),  # a Wednesday: two days is too soon
        (date(2026, 12, 11), date(2026, 12, 18)),  # a Friday
    ],
)
def test_the_demo_events_move_to_a_friday_at_least_three_days_ahead_keeping_their_times(today, friday):
    moved = upcoming(jbsim.DEMO_TEMPLATE, today)
    start, end = datetime.fromisoformat(moved["start"]), datetime.fromisoformat(moved["end"])
    assert (
        start.date() == friday and start.time() == datetime.fromisoformat(jbsim.DEMO_TEMPLATE["start"]).time()
    )
    assert end - start == datetime.fromisoformat(jbsim.DEMO_TEMPLATE["end"]) - datetime.fromisoformat(
        jbsim.DEMO_TEMPLATE["start"]
    )
    assert {k: v for k, v in moved.items() if k not in ("start", "end")} == {
        k: v for k, v in jbsim.DEMO_TEMPLATE.items() if k not in ("start", "end")
    }
