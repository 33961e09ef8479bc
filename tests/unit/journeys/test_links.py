"""Tracked links: the token, the render's rewrite (utm kept on the target), the preview."""

import base64
import json

import pytest

from pipeline.journeys import links
from pipeline.journeys.preview import preview
from pipeline.journeys.render import render_event
from pipeline.stores.ledger import execution_id

KEY = bytes(range(32))
EX = execution_id("activity-1", "instance-1")
PREFIX = "https://rsf.example/t/acme/c/"
TEMPLATE = {
    "title": "Hi {{FirstName}}",
    "description": "Shop https://brand.example/sale?x=1. Or https://brand.example/app",
    "location": "Swipe now https://brand.example/sale?x=1",
    "start": "2026-12-01T09:00:00",
    "timezone": "Europe/London",
    "trackClicks": True,
}


def tracker(execution=EX):
    return links.LinkTracker(KEY, "acme", execution, PREFIX)


@pytest.mark.parametrize("index", [0, 1, 15, 16, 47, 63])
def test_a_token_round_trips_its_execution_and_index(index):
    token = links.make_token(KEY, "acme", EX, index, "https://t.example/")
    assert len(token) == links.TOKEN_CHARS == 32 and links.TOKEN.fullmatch(token)
    parsed = links.parse_token(token)
    assert (parsed.execution_id, parsed.index) == (EX, index)
    assert links.gate_ok(KEY, "acme", parsed)
    stored = {"links": json.dumps(["https://other.example/"] * index + ["https://t.example/"])}
    assert links.target_of(KEY, "acme", parsed, stored) == "https://t.example/"


def test_a_token_of_another_tenant_key_or_target_is_refused():
    token = links.parse_token(links.make_token(KEY, "acme", EX, 0, "https://t.example/"))
    assert not links.gate_ok(KEY, "acme2", token)
    assert not links.gate_ok(bytes(32), "acme", token)
    assert links.target_of(KEY, "acme", token, {"links": json.dumps(["https://t.example/x"])}) is None
    assert links.target_of(KEY, "acme", token, {"links": "[]"}) is None
    assert links.target_of(KEY, "acme", token, {"links": "not json"}) is None
    assert links.target_of(KEY, "acme", token, {}) is None


def test_every_changed_bit_of_a_token_fails_its_checks():
    target = "https://t.example/"
    raw = bytearray(base64.urlsafe_b64decode(links.make_token(KEY, "acme", EX, 5, target)))
    stored = {"links": json.dumps([target] * 64)}
    for bit in range(len(raw) * 8):
        changed = bytearray(raw)
        changed[bit // 8] ^= 1 << (bit % 8)
        token = links.parse_token(base64.urlsafe_b64encode(bytes(changed)).decode())
        passes = links.gate_ok(KEY, "acme", token) and links.target_of(KEY, "acme", token, stored) is not None
        assert not passes, f"bit {bit} changed and the token still passes"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "A" * 31,
        "A" * 33,
        "A" * 30 + "==",
        "A" * 31 + "=",
        "A" * 31 + "+",
        "A" * 31 + "/",
        None,
        7,
    ],
)
def test_malformed_tokens_parse_to_none(text):
    assert links.parse_token(text) is None


def test_only_uuid5_executions_with_64_links_are_tracked():
    assert links.trackable(EX) and not links.trackable("e1") and not links.trackable(EX.upper())
    assert not links.trackable("6f1b0f64-8a52-4a8e-9a53-0c2d6a5e7c11")  # version 4
    with pytest.raises(ValueError):
        links.make_token(KEY, "acme", EX, 64, "https://t.example/")
    assert links.tracker_for(TEMPLATE, KEY, "https://rsf.example", "acme", "e1") is None
    assert (
        links.tracker_for({**TEMPLATE, "trackClicks": False}, KEY, "https://rsf.example", "acme", EX) is None
    )
    made = links.tracker_for(TEMPLATE, KEY, "https://rsf.example/", "acme", EX)
    assert made.prefix == PREFIX


def test_render_replaces_links_keeping_utm_on_the_target_and_one_token_per_target():
    track = tracker()
    event = render_event(TEMPLATE, {"FirstName": "Ava"}, "ev-1", links=track)
    assert track.targets == [
        "https://brand.example/sale?x=1&utm_source=RoktCalendar",
        "https://brand.example/app?utm_source=RoktCalendar",
    ]
    tokens = [links.make_token(KEY, "acme", EX, i, t) for i, t in enumerate(track.targets)]
    assert event["description"] == f"Shop {PREFIX}{tokens[0]}. Or {PREFIX}{tokens[1]}"
    assert event["location"] == f"Swipe now {PREFIX}{tokens[0]}"
    assert "brand.example" not in event["description"] + event["location"]
    # the same contact renders the same links (a correction keeps them)
    again = tracker()
    assert render_event(TEMPLATE, {"FirstName": "Ava"}, "ev-1", links=again) == event
    # another execution, other tokens
    other = render_event(TEMPLATE, {"FirstName": "Ava"}, "ev-1", links=tracker(execution_id("a", "b")))
    assert other["description"] != event["description"]


def test_without_tracking_links_are_only_tagged():
    event = render_event(TEMPLATE, {"FirstName": "Ava"}, "ev-1")
    assert event["location"] == "Swipe now https://brand.example/sale?x=1&utm_source=RoktCalendar"


def test_links_past_the_64th_stay_tagged_not_tracked():
    many = " ".join(f"https://b.example/{n}" for n in range(66))
    track = tracker()
    event = render_event({**TEMPLATE, "description": many}, {"FirstName": "A"}, "ev", links=track)
    assert len(track.targets) == 64
    assert event["description"].endswith(
        "https://b.example/64?utm_source=RoktCalendar https://b.example/65?utm_source=RoktCalendar"
    )


def test_preview_shows_the_tracked_link_and_advises_on_the_lock_screen():
    answer = preview(TEMPLATE, {"FirstName": "Ava"}, link_prefix=PREFIX)
    location = answer["event"]["location"]
    assert (
        location.startswith("Swipe now " + PREFIX) and len(location) == len("Swipe now ") + len(PREFIX) + 32
    )
    assert answer["lockScreen"]["ios"]["location"] == location[:44] + "…"  # shows our host, not theirs
    codes = {note["code"] for note in answer["advice"]}
    assert "tracked_link_on_lock_screen" in codes
    assert "utm_source_on_links" not in codes  # the target keeps its utm_source
    plain = preview({**TEMPLATE, "trackClicks": False}, {"FirstName": "Ava"}, link_prefix=PREFIX)
    assert "brand.example" in plain["event"]["location"]
    assert "tracked_link_on_lock_screen" not in {note["code"] for note in plain["advice"]}


def test_preview_of_a_template_that_cannot_render_still_shows_tracked_links():
    answer = preview({**TEMPLATE, "title": "{{Missing}}"}, {}, link_prefix=PREFIX)
    assert answer["event"] is None and answer["lockScreen"]["android"]["location"].startswith(
        "Swipe now https"
    )
    assert "tracked_link_on_lock_screen" in {note["code"] for note in answer["advice"]}
