"""Preview a template for the activity UI: the rendered event, the lock-screen strings and advice.

`preview()` renders with `pipeline.journeys.render.render_event`, the very function the worker uses, so
what the marketer sees is what Rokt would receive for the same values. A template that cannot
render (a missing value under the strict policy, a bad date) gives `outcome` missing_field or
failed with the reason and `event` null; the lock-screen strings are then drawn from the text
with missing values left blank, so the preview still shows something.

Lock-screen strings: a calendar reminder on the lock screen shows the event's title and its
location; each platform cuts them to what fits and ends the cut with "…". The character limits
below are our approximations for a typical phone in portrait with the default text size, from
looking at reminders on the lock screen. They are NOT from an Apple or Google specification:
the real cut depends on the device width, the font, the user's text size and the characters
(emoji and wide letters take more room), so the preview is a guide, not a promise.

    iOS      title 40 characters, location 45 characters
    Android  title 30 characters, location 40 characters

Advice follows the integration guide's "Calendar lock screen best practices" and "Event card
description best practices" (docs/vendors/integration-guide.md §7: emoji before and after the
title, first name and brand in the title, urgency and a link in the location, trackable links
with utm_source). It is a list of
`{"code", "message"}` the marketer may ignore: never an error, never a block.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from pipeline.journeys.links import TOKEN_CHARS, LinkTracker
from pipeline.journeys.render import PLACEHOLDER, TemplateRenderError, finish_field, render_event, substitute
from pipeline.stores.ledger import execution_id

# (title, location) limits in characters; approximations, see the module docstring
LOCK_SCREEN_LIMITS: dict[str, tuple[int, int]] = {"ios": (40, 45), "android": (30, 40)}
ELLIPSIS = "…"
PLATFORM_NAMES = {"ios": "iOS", "android": "Android"}
RENDERED = ("title", "description", "location")

# phrases the guide names for urgency in the location, plus a few of the same kind
URGENCY_PHRASES = (
    "swipe now",
    "last chance",
    "don't miss",
    "don't forget",
    "stay updated",
    "tap now",
    "tap to",
    "swipe to",
    "today only",
    "ends soon",
    "ends today",
    "hurry",
    "limited time",
    "starts soon",
    "now live",
)
FIRST_NAME_WORDS = ("firstname", "givenname", "fname", "forename")
# links as a reader sees them: with a scheme, or a bare www. host
LINK = re.compile(r"(?:https?://|\bwww\.)[^\s<>\"'{}|\\^`]+", re.IGNORECASE)
# the preview's tracked links: a made-up execution under a key nothing verifies (its tokens lead
# nowhere), the same length and shape as a subscriber's
PREVIEW_EXECUTION = execution_id("preview", "preview")
PREVIEW_KEY = bytes(32)
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}


def _is_joined(ch: str) -> bool:
    """Characters that belong to the character before them (so a cut must not fall before them)."""
    return ch in _JOINERS or unicodedata.category(ch) in ("Mn", "Me", "Sk") or 0x1F3FB <= ord(ch) <= 0x1F3FF


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def truncate(text: str, limit: int) -> str:
    """The text on one line, cut to `limit` characters ending with "…" when longer; never
    splits an emoji from its modifiers or a letter from its accents."""
    text = _one_line(text)
    if len(text) <= limit:
        return text
    cut = limit - 1
    while cut > 0 and (_is_joined(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    return text[:cut].rstrip() + ELLIPSIS


def lock_screen(title: str, location: str) -> dict[str, dict[str, str]]:
    return {
        platform: {"title": truncate(title, t_limit), "location": truncate(location, l_limit)}
        for platform, (t_limit, l_limit) in LOCK_SCREEN_LIMITS.items()
    }


def _is_emoji(ch: str) -> bool:
    return len(ch) == 1 and unicodedata.category(ch) == "So" and ch not in "©®"


def _edge_chars(text: str) -> tuple[str, str]:
    """The first character and the last one that is not a modifier (skin tone, VS16, ZWJ)."""
    text = text.strip()
    if not text:
        return "", ""
    end = len(text) - 1
    while end > 0 and _is_joined(text[end]):
        end -= 1
    return text[0], text[end]


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _text_end(text: str) -> int:
    """Where the last character that is not part of a link ends, on the one-line text: a cut
    after it only shortens a trailing link (which the reminder's tap opens anyway)."""
    one = _one_line(text)
    end = len(one)
    for match in reversed(list(LINK.finditer(one))):
        if one[match.end() : end].strip():
            break
        end = len(one[: match.start()].rstrip())
    return end


def _has_links(text: str) -> bool:
    return bool(LINK.search(text or ""))


def _untagged_links(*texts: str, tracked: str = "") -> list[str]:
    """Links without utm_source; a tracked one (starting with `tracked`) keeps its target's."""
    return [
        link.rstrip(".,;:!?)]}'\"")
        for text in texts
        for link in LINK.findall(text or "")
        if not re.search(r"[?&]utm_source=", link, re.IGNORECASE)
        and not (tracked and link.startswith(tracked))
    ]


def advice(
    template: Mapping[str, Any],
    title: str,
    description: str,
    location: str,
    brand: str = "",
    tracked_prefix: str = "",
) -> list[dict[str, str]]:
    """Best-practice notes for the rendered `title`, `description` and `location` of `template`;
    `tracked_prefix`: what precedes a tracked link's token, when the template tracks clicks."""
    notes: list[dict[str, str]] = []

    def note(code: str, message: str) -> None:
        notes.append({"code": code, "message": message})

    first, last = _edge_chars(title)
    if not (_is_emoji(first) and _is_emoji(last)):
        note(
            "emoji_around_title",
            "Put an emoji before and after the title so the event stands out on the lock screen.",
        )
    title_names = [m.group("name") for m in PLACEHOLDER.finditer(template.get("title") or "")]
    if not any(word in _normal(name) for name in title_names for word in FIRST_NAME_WORDS):
        note("first_name_in_title", "Include the contact's first name in the title (e.g. {{FirstName}}).")
    fixed_title = PLACEHOLDER.sub("", template.get("title") or "")
    if brand.strip():
        if brand.strip().casefold() not in title.casefold():
            note("brand_in_title", f"Include your brand name ({brand.strip()}) in the title.")
    elif not any(ch.isalpha() for ch in fixed_title):
        note("brand_in_title", "Include your brand name in the title: it has no fixed text, only fields.")
    normalized_location = _one_line(location).casefold().replace("\u2019", "'")
    if not any(phrase in normalized_location for phrase in URGENCY_PHRASES):
        note(
            "urgency_in_location",
            "Add urgency to the location, e.g. 'Swipe now', 'Last chance', 'Don't miss', "
            "'Don't forget' or 'Stay updated'.",
        )
    if not _has_links(location):
        note("link_in_location", "Put a link in the location: it leads from the reminder into the event.")
    if not _has_links(description):
        note(
            "link_in_description",
            "Add trackable links (website, app download, social pages) to the description.",
        )
    if tracked_prefix and tracked_prefix in location:
        shown = len(tracked_prefix) + TOKEN_CHARS
        note(
            "tracked_link_on_lock_screen",
            f"Track clicks is on: the location's link shows as {tracked_prefix}… ({shown} characters), "
            "and the lock screen cuts at about 30-45, so the subscriber reads this address, not your "
            "site's. Put the words first and the link last.",
        )
    untagged = _untagged_links(title, description, location, tracked=tracked_prefix)
    if untagged:
        note(
            "utm_source_on_links",
            "Every link should carry utm_source (e.g. utm_source=RoktCalendar); links without "
            "https:// are not tagged: " + ", ".join(untagged[:3]),
        )
    for field, text, index in (("title", title, 0), ("location", location, 1)):
        words_end = _text_end(text)
        cut = [
            f"{PLATFORM_NAMES[platform]} {limits[index]}"
            for platform, limits in LOCK_SCREEN_LIMITS.items()
            if words_end > limits[index]
        ]
        if cut:
            note(
                f"{field}_length",
                f"The lock screen cuts the {field} before its text ends (at about "
                + ", ".join(cut)
                + " characters). Put what matters first.",
            )
    return notes


def preview(
    template: Mapping[str, Any],
    values: Mapping[str, Any],
    event_id: str = "preview",
    brand: str = "",
    link_prefix: str = "",
) -> dict[str, Any]:
    """Render `template` with `values` as the worker would, plus lock-screen strings and advice.
    A template that tracks clicks shows its links as the subscriber will see them: `link_prefix`
    (`<PUBLIC_BASE_URL>/t/<tenant>/c/`) and a token of the real length (a sample: each contact's
    differs)."""
    event: dict[str, Any] | None = None
    outcome, reason = "ok", ""
    tracked = link_prefix if template.get("trackClicks") and link_prefix else ""
    tracker = LinkTracker(PREVIEW_KEY, "preview", PREVIEW_EXECUTION, tracked) if tracked else None
    try:
        event = render_event(template, values, event_id, links=tracker)
    except TemplateRenderError as exc:
        outcome, reason = str(exc.outcome), exc.reason
    if event is not None:
        title, description, location = event["title"], event["description"], event["location"]
    else:  # what would show, with missing values left blank (cleaned, capped and links tagged as
        # the renderer does; a malformed link, perhaps the very reason, is left untagged)
        text = {
            name: finish_field(
                name, substitute(template.get(name) or "", values, "blank")[0], lenient=True, links=tracker
            )
            for name in RENDERED
        }
        title, description, location = text["title"], text["description"], text["location"]
    return {
        "event": event,
        "outcome": outcome,
        "reason": reason,
        "lockScreen": lock_screen(title, location),
        "advice": advice(template, title, description, location, brand, tracked),
    }
