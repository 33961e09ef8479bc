"""Rendering is pure: placeholders, the strict policy, time zones and link tagging."""

import random
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.journeys.render import (
    FIELD_LIMITS,
    KEEP_FORMAT,
    LINE_BREAKS,
    MissingFields,
    TemplateRenderError,
    canonical_time_zone,
    cap,
    clean_text,
    missing_fields_of,
    placeholder_problems,
    render_event,
    resolve_time_zone,
    substitute,
    tag_link,
    tag_links,
    time_zone_choices,
)

TEMPLATE = {
    "title": "Hi {{FirstName}}",
    "description": 'Sale in {{City | default: "your city"}}: https://shop.example/sale',
    "location": "https://shop.example/x?utm_source=email",
    "start": "2026-12-01T09:00:00",
    "end": "2026-12-01T10:00:00",
    "timezone": "Australia/Sydney",
    "allDay": False,
    "notifyBefore": 15,
    "missingFieldPolicy": "strict",
}


def test_renders_a_complete_event():
    event = render_event(TEMPLATE, {"FirstName": "Ava", "City": "Perth"}, "evt-1")
    assert event == {
        "eventId": "evt-1",
        "title": "Hi Ava",
        "description": "Sale in Perth: https://shop.example/sale?utm_source=RoktCalendar",
        "location": "https://shop.example/x?utm_source=email",
        "timezone": "AUS Eastern Standard Time",
        "timezoneIanaId": "Australia/Sydney",
        "start": "2026-12-01T09:00:00",
        "end": "2026-12-01T10:00:00",
        "allDayEvent": False,
        "notifyBefore": 15,
    }


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n"])
def test_strict_policy_names_missing_blank_or_whitespace_fields(value):
    args = {"City": "Perth"} if value is None else {"FirstName": value, "City": "Perth"}
    with pytest.raises(MissingFields) as caught:
        render_event(TEMPLATE, args, "evt-1")
    assert caught.value.fields == ["FirstName"]
    assert caught.value.outcome == "missing_field"


def test_default_fills_a_missing_value_under_strict():
    event = render_event(TEMPLATE, {"FirstName": "Ava", "City": "  "}, "e")
    assert event["description"].startswith("Sale in your city:")


def test_every_missing_field_is_named_once_in_order_of_use():
    template = {**TEMPLATE, "title": "{{B}} {{A}} {{B}}", "location": "{{C}}"}
    with pytest.raises(MissingFields) as caught:
        render_event(template, {}, "e")
    assert caught.value.fields == ["B", "A", "C"]


def test_blank_policy_substitutes_empty_text():
    template = {**TEMPLATE, "title": "Hello {{FirstName}}!", "missingFieldPolicy": "blank"}
    assert render_event(template, {}, "e")["title"] == "Hello !"


def test_title_empty_after_substitution_fails():
    template = {**TEMPLATE, "title": "{{X}}", "missingFieldPolicy": "blank"}
    with pytest.raises(TemplateRenderError) as caught:
        render_event(template, {}, "e")
    assert caught.value.outcome == "failed"


def test_placeholders_in_dates_and_offsets_become_local_wall_clock():
    template = {**TEMPLATE, "start": "{{When}}", "end": ""}
    event = render_event(template, {"FirstName": "A", "When": "2026-06-01T00:00:00Z"}, "e")
    assert event["start"] == "2026-06-01T10:00:00"  # Sydney is UTC+10 in June
    assert "end" not in event


def test_invalid_dates_and_reversed_ranges_fail_with_reason():
    with pytest.raises(TemplateRenderError, match="start"):
        render_event({**TEMPLATE, "start": "{{When}}"}, {"FirstName": "A", "When": "next tuesday"}, "e")
    with pytest.raises(TemplateRenderError, match="before start"):
        render_event({**TEMPLATE, "end": "2026-11-30T00:00:00"}, {"FirstName": "A"}, "e")


@pytest.mark.parametrize(
    ("name", "windows", "iana"),
    [
        ("America/New_York", "Eastern Standard Time", "America/New_York"),
        ("Eastern Standard Time", "Eastern Standard Time", "America/New_York"),
        ("Asia/Kolkata", "India Standard Time", "Asia/Kolkata"),
        ("US/Eastern", "Eastern Standard Time", "US/Eastern"),
    ],
)
def test_time_zones_map_to_windows_ids(name, windows, iana):
    pair = resolve_time_zone(name)
    assert (pair.windows, pair.iana) == (windows, iana)


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ValueError, match="unknown time zone"):
        resolve_time_zone("Mars/Olympus_Mons")


def test_values_are_substituted_once_never_re_expanded():
    text, missing = substitute("{{A}}", {"A": "{{B}}", "B": "boom"})
    assert (text, missing) == ("{{B}}", [])


def test_non_string_values_render_as_text():
    text, _ = substitute("{{N}} {{F}} {{T}}", {"N": 3, "F": 1.5, "T": True})
    assert text == "3 1.5 true"


def test_escaped_quotes_in_defaults():
    text, _ = substitute('{{X | default: "say \\"hi\\""}}', {})
    assert text == 'say "hi"'


def test_links_get_utm_source_unless_present():
    assert tag_link("https://a.example/p") == "https://a.example/p?utm_source=RoktCalendar"
    assert tag_link("https://a.example/p?x=1#f") == "https://a.example/p?x=1&utm_source=RoktCalendar#f"
    assert tag_link("https://a.example/p?UTM_SOURCE=sms") == "https://a.example/p?UTM_SOURCE=sms"
    assert tag_links("See https://a.example/p.") == "See https://a.example/p?utm_source=RoktCalendar."


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
texts = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=30)


@given(st.dictionaries(names, texts, max_size=5), st.lists(names, max_size=5))
def test_strict_substitution_leaves_no_placeholder_or_reports_it(values, used):
    template = " ".join("{{" + n + "}}" for n in used)
    text, missing = substitute(template, values, "strict")
    expected_missing = [n for n in used if not (values.get(n) or "").strip()]
    assert missing == expected_missing
    if not missing:  # values are cleaned of control and format characters (test_value_cleaning_*)
        assert text == " ".join(clean_text(values[n]) for n in used)


paths = st.from_regex(r"/[a-z0-9/]{0,12}", fullmatch=True)
queries = st.lists(
    st.tuples(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True)),
    max_size=3,
)


@given(paths, queries)
def test_tagging_is_idempotent_and_keeps_the_query(path, query):
    url = "https://shop.example" + path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    once = tag_link(url)
    assert tag_link(once) == once
    pairs = parse_qsl(urlsplit(once).query, keep_blank_values=True)
    sources = [v for k, v in pairs if k.lower() == "utm_source"]
    assert len(sources) >= 1
    assert [p for p in pairs if p[0].lower() != "utm_source"] == [
        p for p in parse_qsl(urlsplit(url).query, keep_blank_values=True) if p[0].lower() != "utm_source"
    ]


def test_emails_in_free_text_are_masked():
    from pipeline.infra.logsafe import mask, mask_emails

    assert mask_emails("contact jane.doe@example.com already exists") == "contact ja***@ex*** already exists"
    assert mask("0031X00000abcDE") == "00***DE" and mask("abc") == "***"


# -- untrusted contact values (issue 13, "Inputs") ----------------------------------------

BIDI_AND_FORMAT = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\ufeff\u2060"


def _unsafe(text: str, keep_newlines: bool = False) -> list[str]:
    """Characters that must never reach Rokt from a contact value."""
    import unicodedata

    return [
        ch
        for ch in text
        if (unicodedata.category(ch) in ("Cc", "Zl", "Zp") and not (keep_newlines and ch == "\n"))
        or (unicodedata.category(ch) in ("Cf", "Cs") and ch not in "\u200c\u200d")
    ]


def test_value_cleaning_removes_line_breaks_controls_and_bidi_overrides():
    template = {
        **TEMPLATE,
        "title": "Hi {{FirstName}}",
        "description": "Line one\r\nfor {{City}}\rend",
        "location": "{{City}} store",
    }
    values = {"FirstName": "Ava\r\nDTSTART:19700101T000000\x00\x1b[31m", "City": "Pe\u202erth\u2028x\x85y\tz"}
    event = render_event(template, values, "e")
    assert event["title"] == "Hi Ava  DTSTART:19700101T000000  [31m"
    # the template's own line breaks stay (as LF); the value's become spaces
    assert event["description"] == "Line one\nfor Perth x y z\nend"
    assert event["location"] == "Perth x y z store"
    assert clean_text("a" + BIDI_AND_FORMAT + "b") == "ab"
    assert clean_text("👩\u200d💻 \u0645\u200c\u06cc") == "👩\u200d💻 \u0645\u200c\u06cc"  # ZWJ/ZWNJ kept


def test_a_title_of_only_invisible_characters_is_empty():
    with pytest.raises(TemplateRenderError, match="title: empty"):
        render_event({**TEMPLATE, "title": "{{FirstName}}"}, {"FirstName": "\u202e\u200b\r\n"}, "e")


def test_fields_are_capped_at_the_limits_never_inside_a_link():
    long = "x" * 20_000
    event = render_event(
        {**TEMPLATE, "location": "{{City}}", "description": "{{City}}"},
        {"FirstName": long, "City": long},
        "e",
    )
    for name in ("title", "description", "location"):
        assert len(event[name]) == FIELD_LIMITS[name] and event[name].endswith("…")
    # a link the cut would fall into is dropped whole, not sent pointing elsewhere
    text = "see " + "a" * 10 + " https://shop.example/" + "p" * 50
    assert cap(text, 30) == "see aaaaaaaaaa…"
    assert cap("abcdé", 5) == "abcdé" and cap("abc👍🏽def", 5) == "abc…"


def test_template_caps_match_the_render_caps():
    from schemas.templates import TemplateSchema

    fields = TemplateSchema().fields
    for name, limit in FIELD_LIMITS.items():
        assert fields[name].validators[0].max == limit


@pytest.mark.parametrize("link", ["http://[x", "https://[::1/path", "http://a\uff03b/"])
@pytest.mark.parametrize("field", ["description", "location"])
def test_a_malformed_link_in_a_value_fails_with_a_reason(field, link):
    template = {**TEMPLATE, field: "Go {{Link}}"}
    with pytest.raises(TemplateRenderError) as caught:
        render_event(template, {"FirstName": "A", "Link": link}, "e")
    assert caught.value.outcome == "failed"
    assert caught.value.reason.startswith(f"{field}: malformed link") and caught.value.fields == [field]
    assert tag_links(f"x {link} y", lenient=True) == f"x {link} y"


unsafe_texts = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from("\r\n\t\x00\x1b\x7f\x85\u2028\u2029" + BIDI_AND_FORMAT + "{}"),
        st.sampled_from(["http://", "https://[", "https://a.example/?q=1", " "]),
    ),
    max_size=300,
).map("".join)


@given(unsafe_texts, st.integers(min_value=1, max_value=40))
def test_any_value_renders_clean_and_within_the_caps(value, repeat):
    template = {
        **TEMPLATE,
        "title": "T {{V}} {{V}}",
        "description": "D\n{{V}}",
        "location": "L {{V}}",
    }
    try:
        event = render_event(template, {"FirstName": "A", "V": value * repeat}, "e")
    except TemplateRenderError as exc:  # blank or a malformed link: a reason, never a ValueError
        assert exc.outcome in ("failed", "missing_field") and exc.reason
        return
    for name in ("title", "description", "location"):
        assert not _unsafe(event[name], keep_newlines=name == "description"), name
        assert len(event[name]) <= FIELD_LIMITS[name]
    assert event["description"].count("\n") <= 1  # only the template's own line break


# ------------------------------------------------------------------------------------------
# placeholders with spaces, errors that name the placeholder and the rule, time zones as typed
# ------------------------------------------------------------------------------------------


def test_a_field_name_with_spaces_is_a_placeholder():
    template = {**TEMPLATE, "title": 'Deals in {{Home City}} and {{ Home City | default: "x" }}'}
    event = render_event(template, {"FirstName": "Ava", "Home City": "Perth"}, "e1")
    assert event["title"] == "Deals in Perth and Perth"
    with pytest.raises(MissingFields) as caught:
        render_event(template | {"title": "Deals in {{Home City}}"}, {}, "e1")
    assert caught.value.fields == ["Home City"]
    assert missing_fields_of(caught.value.reason) == ["Home City"]
    assert placeholder_problems("{{Home City}} {{FirstName}} {{_x.y-z}}") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hi {{FirstName}, see", '{{FirstName}: not closed; end it with "}}"'),
        ("Hi {{FirstName", '{{FirstName: not closed; end it with "}}"'),
        (
            "{{City | default: 'you'}}",
            "{{City | default: 'you'}}: put the default in straight double quotes: "
            '{{City | default: "you"}}',
        ),
        (
            "{{City | default: you}}",
            '{{City | default: you}}: put the default in double quotes: {{City | default: "you"}}',
        ),
        (
            "{{City | default:}}",
            '{{City | default:}}: the default has no text; write {{City | default: "text"}} or drop it',
        ),
        (
            "{{City | upper}}",
            '{{City | upper}}: the only option after "|" is default, e.g. {{City | default: "text"}}',
        ),
        ("{{}}", "{{}}: the placeholder has no name; write the field's name, e.g. {{FirstName}}"),
        ("{{ }}", "{{ }}: the placeholder has no name; write the field's name, e.g. {{FirstName}}"),
        (
            "{{1st}}",
            "{{1st}}: '1st' is not a field name; it starts with a letter or _ and holds letters, "
            "digits, spaces, _ . or -",
        ),
        (
            "{{Home  City}}",
            "{{Home  City}}: put single spaces between the words of a field name: 'Home City'",
        ),
    ],
)
def test_each_malformed_placeholder_is_named_with_the_rule_it_breaks(text, message):
    assert placeholder_problems(text) == [message]


def test_every_malformed_placeholder_of_a_text_is_reported_once():
    text = "{{FirstName}} {{A | default: 'x'}} {{Brand | default: \"R\"}} {{}}"
    assert [p.split(":")[0] for p in placeholder_problems(text)] == ["{{A | default", "{{}}"]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Australia/Sydney", "Australia/Sydney"),
        ("australia/sydney", "Australia/Sydney"),
        (" Sydney ", "Australia/Sydney"),
        ("new york", "America/New_York"),
        ("America/New York", "America/New_York"),
        ("utc", "UTC"),
        ("AUS Eastern Standard Time", "AUS Eastern Standard Time"),
        ("buenos aires", "America/Buenos_Aires"),  # two names, one zone
    ],
)
def test_a_time_zone_is_understood_as_typed(typed, stored):
    assert canonical_time_zone(typed) == stored
    resolve_time_zone(stored)  # and it renders


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "required: choose the time zone"),
        ("  ", "required"),
        ("Atlantis", "unknown time zone 'Atlantis'"),
    ],
)
def test_an_empty_or_unknown_time_zone_is_refused_never_utc(typed, message):
    with pytest.raises(ValueError, match=message):
        canonical_time_zone(typed)


def test_every_listed_time_zone_renders():
    for name in time_zone_choices():
        assert resolve_time_zone(name).windows  # Rokt gets a Windows ID for each
    assert "Australia/Sydney" in time_zone_choices() and "US/Pacific" not in time_zone_choices()


# -- clean_text's fast path --------------------------------------------------------------------


def _clean_text_reference(text: str, keep_newlines: bool = False) -> str:
    """clean_text before its fast path (character by character)."""
    import unicodedata

    if keep_newlines:
        text = LINE_BREAKS.sub("\n", text)
    out = []
    for ch in text:
        if ch.isascii() and ch.isprintable():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category in ("Cf", "Cs") and ch not in KEEP_FORMAT:
            continue
        else:
            out.append(ch)
    return "".join(out)


def test_clean_text_fast_path_changes_nothing():
    rng = random.Random(14)
    alphabet = "ab Z~!\t\n\r\x00\x7f\x85\u2028\u202e\u200d\u200b\ufeffé😀"
    samples = ["", "plain text", "two\nlines", "crlf\r\nline", "tab\there"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(2000)]
    for text in samples:
        for keep in (False, True):
            assert clean_text(text, keep) == _clean_text_reference(text, keep), (text, keep)


def test_triple_braces_stay_accepted_as_they_render_and_stray_braces_get_a_bounded_answer():
    """A stored `{{{Field}}}` rendered (the outer braces as text) before placeholders could hold
    spaces, so it must stay valid; a paste of thousands of `{{` gets 20 messages, not 4,000."""
    from pipeline.journeys.render import MAX_PLACEHOLDER_PROBLEMS, placeholder_problems

    assert placeholder_problems("Hi {{{FirstName}}}!") == []
    assert placeholder_problems("{{{{Brand}}}}") == []
    flood = placeholder_problems("{{ " * 4000)
    assert len(flood) == MAX_PLACEHOLDER_PROBLEMS + 1 and flood[-1].endswith("more like these")
    assert placeholder_problems("{{FirstName}")  # still refused: not closed
