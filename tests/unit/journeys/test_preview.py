"""Preview: the renderer's own event, lock-screen strings cut as each platform cuts them, and
best-practice advice that never blocks."""

import pytest

from pipeline.journeys.preview import LOCK_SCREEN_LIMITS, preview, truncate
from pipeline.journeys.render import render_event

GOOD = {
    "title": "🎉 {{FirstName}}, Acme sale 🎉",
    "description": 'Shop https://acme.test/sale?utm_source=mail and {{Promo | default: "more"}}',
    "location": "Last chance: https://acme.test/s",
    "start": "2026-12-01T09:00:00",
    "end": "{{End}}",
    "timezone": "Europe/Paris",
    "notifyBefore": 15,
}
VALUES = {"FirstName": "Ava", "End": "2026-12-01T10:00:00+01:00"}


def codes(result):
    return {note["code"] for note in result["advice"]}


@pytest.mark.parametrize(
    "values",
    [VALUES, {**VALUES, "Promo": "a {{trick}} https://x.test"}, {**VALUES, "FirstName": "Zoë-Ånne"}],
)
def test_the_event_is_the_renderers_for_the_same_values(values):
    result = preview(GOOD, values)
    assert result["outcome"] == "ok" and result["reason"] == ""
    assert result["event"] == render_event(GOOD, values, "preview")
    assert preview(GOOD, values, event_id="rsf-1")["event"] == render_event(GOOD, values, "rsf-1")


def test_a_template_following_the_guide_gets_no_advice():
    result = preview(GOOD, VALUES, brand="Acme")
    assert result["advice"] == []
    assert result["lockScreen"] == {
        "ios": {"title": "🎉 Ava, Acme sale 🎉", "location": "Last chance: https://acme.test/s?utm_source=…"},
        "android": {"title": "🎉 Ava, Acme sale 🎉", "location": "Last chance: https://acme.test/s?utm_so…"},
    }
    assert result["event"]["location"] == "Last chance: https://acme.test/s?utm_source=RoktCalendar"


def test_advice_from_the_guides_lock_screen_best_practices():
    plain = {
        "title": "Sale starts",
        "description": "Come by www.acme.test",
        "location": "Main street",
        "start": "2026-12-01T09:00:00",
        "timezone": "UTC",
    }
    result = preview(plain, {}, brand="Acme")
    assert result["outcome"] == "ok"
    assert codes(result) == {
        "emoji_around_title",
        "first_name_in_title",
        "brand_in_title",
        "urgency_in_location",
        "link_in_location",
        "utm_source_on_links",
    }
    assert all(note["message"] for note in result["advice"])
    assert (
        "www.acme.test" in next(n for n in result["advice"] if n["code"] == "utm_source_on_links")["message"]
    )
    # without a brand name: advised only when the title has no fixed text at all
    assert "brand_in_title" not in codes(preview(plain, {}))
    assert "brand_in_title" in codes(preview({**plain, "title": "🎉 {{FirstName}} 🎉"}, {"FirstName": "Ava"}))
    # one emoji only on one side is not "around"
    assert "emoji_around_title" in codes(preview({**plain, "title": "🎉 Sale"}, {}))
    # a skin-toned emoji at the end still counts; curly apostrophes count as urgency
    around = preview({**plain, "title": "👋 Sale 👍🏽", "location": "Don\u2019t miss it"}, {})
    assert not {"emoji_around_title", "urgency_in_location"} & codes(around)
    # a first name under another spelling
    assert "first_name_in_title" not in codes(
        preview({**plain, "title": "Hi {{first_name}}"}, {"first_name": "A"})
    )
    # no link in the description
    assert "link_in_description" in codes(preview({**plain, "description": ""}, {}))


def test_lengths_are_advised_and_cut_with_an_ellipsis():
    long_title = "🎉 " + "Huge winter clearance event at Acme stores " * 2 + "🎉"
    result = preview({**GOOD, "title": long_title}, VALUES)
    assert "title_length" in codes(result)
    ios, android = result["lockScreen"]["ios"], result["lockScreen"]["android"]
    assert len(ios["title"]) == LOCK_SCREEN_LIMITS["ios"][0] and ios["title"].endswith("…")
    assert len(android["title"]) <= LOCK_SCREEN_LIMITS["android"][0] and android["title"].endswith("…")
    assert ios["title"].startswith("🎉 Huge winter")
    assert "location_length" not in codes(result)  # only the trailing link is cut

    wordy = preview(
        {**GOOD, "location": "Last chance to see every deal in the store, today: https://a.test"}, VALUES
    )
    assert "location_length" in codes(wordy)
    two_links = preview({**GOOD, "location": "Swipe now https://a.test https://b.test"}, VALUES)
    assert "location_length" not in codes(two_links)


def test_truncate_keeps_emoji_sequences_whole_and_lines_single():
    assert truncate("short", 10) == "short"
    assert truncate("a\nb   c", 10) == "a b c"
    assert truncate("abcdefghij", 5) == "abcd…"
    assert truncate("ab 👍🏽 cdef", 4) == "ab…"  # never "ab 👍…" without its skin tone
    assert truncate("abc👩\u200d💻 xyz", 5) == "abc…"  # the ZWJ sequence stays whole
    assert truncate("abcdé", 4) == "abc…"


def test_missing_fields_and_bad_dates_give_an_outcome_never_an_error():
    result = preview(GOOD, {"End": "2026-12-01T10:00:00"})
    assert result["event"] is None
    assert result["outcome"] == "missing_field" and result["reason"] == "missing value for FirstName"
    assert result["lockScreen"]["ios"]["title"] == "🎉 , Acme sale 🎉"  # the value left blank
    assert isinstance(result["advice"], list)

    result = preview({**GOOD, "start": "next week"}, VALUES)
    assert result["outcome"] == "failed" and "start" in result["reason"] and result["event"] is None

    blank_policy = {**GOOD, "missingFieldPolicy": "blank"}
    result = preview(blank_policy, {})
    assert result["outcome"] == "ok" and result["event"] == render_event(blank_policy, {}, "preview")


def test_a_malformed_link_gives_a_failed_outcome_and_still_a_preview():
    """Issue 13: the fallback tagged links again and raised ValueError for `http://[x`."""
    result = preview({**GOOD, "location": "Last chance: {{Link}}"}, {**VALUES, "Link": "http://[x"})
    assert result["event"] is None and result["outcome"] == "failed"
    assert result["reason"] == "location: malformed link (Invalid IPv6 URL)"
    assert result["lockScreen"]["ios"]["location"] == "Last chance: http://[x"  # shown untagged


def test_the_fallback_is_cleaned_and_capped_like_the_event():
    result = preview({**GOOD, "start": "bad"}, {**VALUES, "FirstName": "A\r\nB\u202e" + "x" * 1000})
    assert result["outcome"] == "failed"
    title = result["lockScreen"]["ios"]["title"]
    assert "\u202e" not in title and title.startswith("🎉 A Bxxx")  # the bidi override is gone


def test_a_placeholder_with_spaces_previews_with_its_value():
    template = {
        "title": "🎉 {{FirstName}} in {{Home City}} 🎉",
        "start": "2026-12-01T09:00:00",
        "timezone": "UTC",
    }
    shown = preview(template, {"FirstName": "Ava", "Home City": "Perth"})
    assert shown["outcome"] == "ok" and shown["event"]["title"] == "🎉 Ava in Perth 🎉"
    missing = preview(template, {"FirstName": "Ava"})
    assert (missing["outcome"], missing["reason"]) == ("missing_field", "missing value for Home City")
