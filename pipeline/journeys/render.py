"""Turn a stored event template plus one contact's inArguments into a Rokt event.

Pure functions, no I/O. The integration guide promises events "are not sent with blank or
unintended data values" (docs/vendors/integration-guide.md §5): under the `strict` policy a
placeholder whose value is missing, empty or whitespace-only (and has no default) stops the
event and names the fields.

Contact values are untrusted text that ends up in a calendar entry (an iCalendar file at Rokt's
side), so each rendered field is cleaned and capped (`finish_field`):

- in a substituted value, every control character (C0, DEL, C1, incl. CR, LF, TAB, NEL) and the
  Unicode line/paragraph separators become a space; format characters (category Cf: the bidi
  embeddings/overrides/isolates U+202A-U+202E, U+2066-U+2069, the marks U+200E/U+200F/U+061C,
  zero-width spaces, BOM, tag characters...) and lone surrogates are removed. ZWJ/ZWNJ
  (U+200D/U+200C) stay: emoji sequences and several scripts need them;
- the whole title and location get the same cleaning (one line); the description keeps the
  line breaks its template was written with (CR/CRLF become LF), nothing else;
- a link that cannot be parsed (`http://[x`) fails the event (`failed`, naming the field)
  instead of raising ValueError; the preview leaves it untagged;
- each field is cut to FIELD_LIMITS characters, ending with "…", never inside a link.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import tz_win, win_tz

from pipeline.vocabulary import State

UTM_SOURCE = "RoktCalendar"
RENDERED_FIELDS = ("title", "description", "location", "start", "end")

# {{Field}} or {{Field | default: "text"}}. A name is what JB binds and data extensions allow: it
# starts with a letter or `_` and holds letters, digits, `_ . -` and single spaces between words
# ("Home City"); spaces around it are ignored. The one definition: templates, schemas and the
# preview import it, and `placeholder_problems` explains every `{{` it does not match.
PLACEHOLDER = re.compile(
    r"\{\{\s*(?P<name>[^\W\d][\w.\-]*(?: [\w.\-]+)*)\s*"
    r"(?:\|\s*default\s*:\s*\"(?P<default>(?:[^\"\\]|\\.)*)\"\s*)?\}\}"
)
NAME = re.compile(r"[^\W\d][\w.\-]*(?: [\w.\-]+)*")
UNCLOSED = re.compile(r"\{\{[^{}\n,;!?]*\}?")  # how much of an unclosed placeholder an error shows
URL = re.compile(r"https?://[^\s<>\"'{}|\\^`]+", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\""

# Rendered field caps, in characters (code points). Rokt publishes no field lengths
# (docs/vendors/rokt-calendar-api.md §8: the max lengths of `title`, `description` and
# `location` are unknown). We cap at the template's own limits (schemas/templates.py imports
# these), so a rendered field is never longer than a template may be written literally, and an
# event stays ~10 KB of text.
FIELD_LIMITS = {"title": 500, "description": 8000, "location": 2000}
ELLIPSIS = "\u2026"
KEEP_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: emoji sequences and scripts need them
LINE_BREAKS = re.compile(r"\r\n?")


class TemplateRenderError(Exception):
    """The template cannot produce an event for this contact."""

    outcome = State.FAILED

    def __init__(self, reason: str, fields: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields or []


MISSING_PREFIX = "missing value for "


class MissingFields(TemplateRenderError):
    outcome = State.MISSING_FIELD

    def __init__(self, fields: list[str]) -> None:
        super().__init__(MISSING_PREFIX + ", ".join(fields), fields)


def missing_fields_of(reason: str) -> list[str]:
    """The placeholder names a MissingFields reason lists (names hold no comma), [] for others."""
    if not reason.startswith(MISSING_PREFIX):
        return []
    return [name.strip() for name in reason[len(MISSING_PREFIX) :].split(",") if name.strip()]


@dataclass(frozen=True)
class TimeZonePair:
    windows: str
    iana: str


def resolve_time_zone(name: str) -> TimeZonePair:
    """Accept an IANA name or a Windows ID; Rokt needs the Windows ID (CLDR mapping)."""
    name = (name or "").strip()
    if name in win_tz:
        return TimeZonePair(windows=name, iana=win_tz[name])
    if name in tz_win:
        return TimeZonePair(windows=tz_win[name], iana=name)
    raise ValueError(f"unknown time zone {name!r}: use an IANA name or a Windows time-zone ID")


# the regions of the IANA names offered in the UI's list (legacy aliases such as US/Pacific are
# still accepted when typed)
ZONE_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


def time_zone_choices() -> list[str]:
    """The IANA names the UI lists (every one renders): Area/City names and UTC, sorted."""
    names = {n for n in tz_win if n.split("/", 1)[0] in ZONE_AREAS and n.count("/") >= 1}
    return sorted(names | {"UTC"})


def _zone_key(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def canonical_time_zone(text: str) -> str:
    """What a marketer types, as the stored zone: an IANA name or Windows ID in any case
    ("australia/sydney"), or a city ("Sydney", "new york") when it names one zone. Raises
    ValueError saying what to type instead."""
    typed = " ".join((text or "").split())
    if not typed:
        raise ValueError("required: choose the time zone the start and end are in, e.g. Australia/Sydney")
    key = _zone_key(typed)
    exact = [n for n in (*tz_win, *win_tz) if _zone_key(n) == key]
    if exact:
        return exact[0]
    cities = [n for n in time_zone_choices() if _zone_key(n.rsplit("/", 1)[-1]) == key]
    if len({tz_win[n] for n in cities if n in tz_win}) == 1 or len(cities) == 1:
        return min(cities, key=lambda n: (n.count("/"), n))
    if cities:
        raise ValueError(f"{typed!r} names several time zones: choose one of {', '.join(cities)}")
    raise ValueError(
        f"unknown time zone {typed!r}: choose one from the list, e.g. Australia/Sydney or Europe/London"
    )


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def clean_text(text: str, keep_newlines: bool = False) -> str:
    """Controls and line/paragraph separators -> space; format characters (bidi overrides and
    isolates, zero-width and invisible characters, except ZWJ/ZWNJ) and surrogates removed.
    With `keep_newlines`, CR/CRLF become LF and LF is kept (a template's own line breaks)."""
    if keep_newlines:
        text = LINE_BREAKS.sub("\n", text)
    plain = text.replace("\n", "") if keep_newlines else text
    if plain.isascii() and plain.isprintable():
        return text  # nothing to clean (the common case, checked in C)
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


def cap(text: str, limit: int) -> str:
    """`text` cut to `limit` characters ending with "…"; a cut never falls inside a link (the
    link is dropped whole rather than sent pointing somewhere else)."""
    if len(text) <= limit:
        return text
    cut = limit - len(ELLIPSIS)
    for match in URL.finditer(text):
        if match.start() < cut < match.end():
            cut = match.start()
            break
    while cut > 0 and _belongs_to_previous(text[cut], text[cut - 1]):
        cut -= 1  # never part an emoji from its modifiers or a letter from its accents
    return text[:cut].rstrip() + ELLIPSIS


def _belongs_to_previous(ch: str, before: str) -> bool:
    return (
        before == "\u200d"
        or ch in "\u200d\ufe0e\ufe0f\u20e3"
        or unicodedata.category(ch) in ("Mn", "Me", "Sk")
        or 0x1F3FB <= ord(ch) <= 0x1F3FF
    )


def substitute(text: str, values: Mapping[str, Any], policy: str = "strict") -> tuple[str, list[str]]:
    """Replace placeholders in one pass; return the text and the names left without a value.

    Substituted values are never scanned again, so a value holding `{{x}}` stays literal.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        value = values.get(name)
        if not is_blank(value):
            return clean_text(_as_text(value))
        default = match.group("default")
        if default is not None:
            return re.sub(r"\\(.)", r"\1", default)
        if policy == "strict":
            missing.append(name)
        return ""

    return PLACEHOLDER.sub(replace, text or ""), missing


MAX_PLACEHOLDER_PROBLEMS = 20


def placeholder_problems(text: str) -> list[str]:
    """Why each `{{` of `text` that PLACEHOLDER does not match is not a placeholder, one message
    per placeholder naming it and the rule it breaks (the marketer fixes them all in one go)."""
    problems: list[str] = []
    position = 0
    text = text or ""
    while (start := text.find("{{", position)) != -1:
        match = PLACEHOLDER.match(text, start)
        if match:
            position = match.end()
            continue
        if text.startswith("{", start + 2):  # `{{{Field}}}`: the first brace is text, as it renders
            position = start + 1
            continue
        close = text.find("}}", start + 2)
        reopen = text.find("{{", start + 2)
        if close == -1 or (reopen != -1 and reopen < close):
            shown = UNCLOSED.match(text, start).group(0).rstrip()[:40]
            problems.append(f'{shown}: not closed; end it with "}}}}"')
            position = start + 2
            continue
        problems.append(_explain(text[start : close + 2]))
        position = close + 2
    if len(problems) > MAX_PLACEHOLDER_PROBLEMS:  # a paste of stray braces: the first ones say enough
        more = len(problems) - MAX_PLACEHOLDER_PROBLEMS
        problems = [*problems[:MAX_PLACEHOLDER_PROBLEMS], f"... and {more} more like these"]
    return problems


def _explain(whole: str) -> str:
    """The rule a `{{...}}` breaks (see placeholder_problems)."""
    inner = whole[2:-2]
    name, bar, rest = inner.partition("|")
    name = name.strip()
    if not name:
        return f"{whole}: the placeholder has no name; write the field's name, e.g. {{{{FirstName}}}}"
    if "{" in name or "}" in name:
        return f"{whole}: use exactly two braces on each side, e.g. {{{{{name.strip('{} ')}}}}}"
    if not NAME.fullmatch(" ".join(name.split())):
        return (
            f"{whole}: {name!r} is not a field name; it starts with a letter or _ and holds "
            "letters, digits, spaces, _ . or -"
        )
    if "  " in name or "\t" in name or "\n" in name:
        return f"{whole}: put single spaces between the words of a field name: {' '.join(name.split())!r}"
    if bar:
        option, colon, value = rest.partition(":")
        value = value.strip()
        if option.strip() != "default" or not colon:
            return f'{whole}: the only option after "|" is default, e.g. {{{{{name} | default: "text"}}}}'
        if value.startswith("'") or value.startswith("\u2018") or value.startswith("\u201c"):
            plain = value.strip("'\u2018\u2019\u201c\u201d")
            return f'{whole}: put the default in straight double quotes: {{{{{name} | default: "{plain}"}}}}'
        if not value:
            return f'{whole}: the default has no text; write {{{{{name} | default: "text"}}}} or drop it'
        if not value.startswith('"') or not value.endswith('"') or len(value) < 2:
            plain = value.strip('"')
            return f'{whole}: put the default in double quotes: {{{{{name} | default: "{plain}"}}}}'
        return f'{whole}: a double quote inside the default needs a backslash: \\"'
    return f'{whole}: write {{{{{name}}}}} or {{{{{name} | default: "text"}}}}'


def tag_link(url: str, field_name: str = "text") -> str:
    """Add utm_source=RoktCalendar to one URL unless it already carries a utm_source.

    A URL that cannot be parsed (`http://[x`: urlsplit raises ValueError) raises a
    TemplateRenderError naming the field: the event fails with a reason, not a traceback.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise TemplateRenderError(f"{field_name}: malformed link ({exc})", [field_name]) from exc
    if any(key.lower() == "utm_source" for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return url
    query = f"{parts.query}&utm_source={UTM_SOURCE}" if parts.query else f"utm_source={UTM_SOURCE}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def tag_links(text: str, field_name: str = "text", lenient: bool = False) -> str:
    """Tag every link in `text`; a malformed one raises TemplateRenderError, or with `lenient`
    (the preview's fallback) is left as it is."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(URL_TRAILING)
        try:
            return tag_link(stripped, field_name) + url[len(stripped) :]
        except TemplateRenderError:
            if lenient:
                return url
            raise

    return URL.sub(replace, text or "")


def track_links(text: str, track: Callable[[str], str]) -> str:
    """Every (tagged) link of `text` replaced by what `track` makes of it (a tracked link:
    pipeline/journeys/links.py); trailing punctuation stays text, as tag_links leaves it."""

    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(URL_TRAILING)
        return track(stripped) + url[len(stripped) :]

    return URL.sub(replace, text or "")


def finish_field(
    name: str, text: str, lenient: bool = False, links: Callable[[str], str] | None = None
) -> str:
    """One substituted field as sent: cleaned, links tagged (description, location) and, with
    `links` (a template that tracks clicks), replaced by tracked ones, then capped (the cap sees
    the links as sent, and never cuts one)."""
    text = clean_text(text, keep_newlines=name == "description").strip()
    if name in ("description", "location"):
        text = tag_links(text, name, lenient)
        if links is not None:
            text = track_links(text, links)
    return cap(text, FIELD_LIMITS[name]) if name in FIELD_LIMITS else text


def local_wall_clock(value: str, zone: TimeZonePair, field_name: str) -> str:
    """ISO date-time as local wall-clock time in the event's zone, no offset (what Rokt reads)."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise TemplateRenderError(f"{field_name}: {value!r} is not an ISO 8601 date-time") from exc
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(ZoneInfo(zone.iana))
        except ZoneInfoNotFoundError as exc:  # pragma: no cover - tzdata ships every CLDR target
            raise TemplateRenderError(f"timezone: {zone.iana} unavailable") from exc
    return parsed.replace(tzinfo=None).isoformat(timespec="seconds")


def render_event(
    template: Mapping[str, Any],
    values: Mapping[str, Any],
    event_id: str,
    links: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Build the Rokt `event` object for one contact, or raise MissingFields/TemplateRenderError.
    `links`: the execution's LinkTracker when its template tracks clicks (it collects the targets)."""
    policy = template.get("missingFieldPolicy", "strict")
    rendered: dict[str, str] = {}
    missing: list[str] = []
    for name in RENDERED_FIELDS:
        text, absent = substitute(template.get(name) or "", values, policy)
        rendered[name] = text.strip() if name in ("start", "end") else text
        missing.extend(n for n in absent if n not in missing)
    if missing:
        raise MissingFields(missing)
    for name in FIELD_LIMITS:
        rendered[name] = finish_field(name, rendered[name], links=links)
    if not rendered["title"]:
        raise TemplateRenderError("title: empty after substitution", ["title"])
    zone = resolve_time_zone(template["timezone"])
    start = local_wall_clock(rendered["start"], zone, "start")
    end = local_wall_clock(rendered["end"], zone, "end") if rendered["end"] else None
    if end is not None and end < start:
        raise TemplateRenderError(f"end {end} is before start {start}", ["end"])
    event: dict[str, Any] = {
        "eventId": event_id,
        "title": rendered["title"],
        "description": rendered["description"],
        "location": rendered["location"],
        "timezone": zone.windows,
        "timezoneIanaId": zone.iana,
        "start": start,
        "allDayEvent": bool(template.get("allDay", False)),
    }
    if end is not None:
        event["end"] = end
    if template.get("notifyBefore") is not None:
        event["notifyBefore"] = int(template["notifyBefore"])
    return event
