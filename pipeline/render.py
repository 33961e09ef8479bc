"""Turn a stored event template plus one contact's inArguments into a Rokt event.

Pure functions, no I/O. The integration guide promises events "are not sent with blank or
unintended data values": under the `strict` policy a placeholder whose value is missing,
empty or whitespace-only (and has no default) stops the event and names the fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import tz_win, win_tz

from pipeline.vocabulary import State

UTM_SOURCE = "RoktCalendar"
RENDERED_FIELDS = ("title", "description", "location", "start", "end")

# {{Field}} or {{Field | default: "text"}}; names as JB binds them (letters, digits, _ . -)
PLACEHOLDER = re.compile(
    r"\{\{\s*(?P<name>[A-Za-z_][\w.\-]*)\s*"
    r"(?:\|\s*default\s*:\s*\"(?P<default>(?:[^\"\\]|\\.)*)\"\s*)?\}\}"
)
URL = re.compile(r"https?://[^\s<>\"'{}|\\^`]+", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\""


class TemplateRenderError(Exception):
    """The template cannot produce an event for this contact."""

    outcome = State.FAILED

    def __init__(self, reason: str, fields: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields or []


class MissingFields(TemplateRenderError):
    outcome = State.MISSING_FIELD

    def __init__(self, fields: list[str]) -> None:
        super().__init__("missing value for " + ", ".join(fields), fields)


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


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def substitute(text: str, values: Mapping[str, Any], policy: str = "strict") -> tuple[str, list[str]]:
    """Replace placeholders in one pass; return the text and the names left without a value.

    Substituted values are never scanned again, so a value holding `{{x}}` stays literal.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        value = values.get(name)
        if not is_blank(value):
            return _as_text(value)
        default = match.group("default")
        if default is not None:
            return re.sub(r"\\(.)", r"\1", default)
        if policy == "strict":
            missing.append(name)
        return ""

    return PLACEHOLDER.sub(replace, text or ""), missing


def tag_link(url: str) -> str:
    """Add utm_source=RoktCalendar to one URL unless it already carries a utm_source."""
    parts = urlsplit(url)
    if any(key.lower() == "utm_source" for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return url
    query = f"{parts.query}&utm_source={UTM_SOURCE}" if parts.query else f"utm_source={UTM_SOURCE}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def tag_links(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(URL_TRAILING)
        return tag_link(stripped) + url[len(stripped) :]

    return URL.sub(replace, text or "")


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


def render_event(template: Mapping[str, Any], values: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    """Build the Rokt `event` object for one contact, or raise MissingFields/TemplateRenderError."""
    policy = template.get("missingFieldPolicy", "strict")
    rendered: dict[str, str] = {}
    missing: list[str] = []
    for name in RENDERED_FIELDS:
        text, absent = substitute(template.get(name) or "", values, policy)
        rendered[name] = text.strip()
        missing.extend(n for n in absent if n not in missing)
    if missing:
        raise MissingFields(missing)
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
        "description": tag_links(rendered["description"]),
        "location": tag_links(rendered["location"]),
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
