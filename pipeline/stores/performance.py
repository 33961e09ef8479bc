"""What the calendar channel did, day by day: the exact figures behind `rokt-sfmc report`, the
Performance page, the performance data extension and the exporter.

Counted where each thing happens, in the same Redis script or transaction that makes it happen
(the ledger's claim and transition scripts, the subscription merge, the click script), so a
figure is exact under concurrency and redelivery: a redelivered task whose move is refused
counts nothing. Aggregating the history store instead would miss what is still in Redis (a
confirmation, a click, an unsubscribe arrives long after the row) and would cost a scan per
read.

One hash per tenant and day (`keys.performance_day`), the day being the tenant's own
(`reporting_time_zone`, App Settings; UTC by default) at the moment of counting: a field per
scope and figure, `<scope>|<figure>` or `<scope>|<figure>:<reason>`, the scope being the whole
tenant (`*`), one activity (`a:<activityId>`) or one template (`t:<templateId>`). Subscriptions
and contact matches are the tenant's only. Each day's hash is kept `PERFORMANCE_DAYS` and goes
with its tenant. The claim also names each activity's journey there (`j:<activityId>` -> the
execute's journeyId, no figure), which the performance rows look the names up by.

Names (`activity_names`): what Journey Builder calls an activity and its journey, one small key
per activity (`keys.activity_names`, kept ACTIVITY_NAMES_DAYS), written by
pipeline/delivery/performance_rows.py: free text, stored cell-safe and capped; never personal data.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import redis

from pipeline.infra import keys
from pipeline.infra.cellsafe import neutralise
from pipeline.settings import zone_problem
from pipeline.vocabulary import State

ALL = "*"  # the tenant's scope
JOURNEY_OF = "j:"  # `j:<activityId>` -> the journey id the activity's executions came with
NAME_LENGTH = 200  # names are capped (the performance DE's name columns)
ACTIVITY_NAMES_DAYS = 30  # a name not looked up again for this long goes
SLACK_DAYS = 2  # a day's hash outlives its last count by this much (a day ahead of UTC, rounding)


class Figure(StrEnum):
    """The day's figures. `not_sent` and `failed` are stored by reason (`not_sent:<reason>`) and
    summed when read."""

    ENTERED = "entered"  # Journey Builder's execute claimed a new execution
    CREATED = "created"  # Rokt accepted its event (a replay's second send is not a new one)
    IN_CALENDARS = "in_calendars"  # Rokt confirmed the event in the subscriber's calendar
    UPDATED = "updated"  # a sent event was corrected
    REMOVED = "removed"  # the subscriber took the event out of the calendar
    DELETED = "deleted"  # a sent event was cancelled (deleted everywhere)
    WITHDRAWN = "withdrawn"  # we removed the event from the contact's subscription
    NOT_SENT = "not_sent"  # by reason: no_subscription, missing_field, cancelled
    FAILED = "failed"  # by reason: the failure's text
    CLICKS = "clicks"  # a tracked link was followed
    CLICKERS = "clickers"  # an execution's first click (people who clicked)
    SUBSCRIBED = "subscribed"  # a subscription was created (tenant only)
    UNSUBSCRIBED = "unsubscribed"  # a subscription ended (tenant only)
    CONTACTS_MATCHED = "matched"  # a new subscriber matched an existing SFMC contact (tenant only)
    CONTACTS_CREATED = "contacts_created"  # ... or we created the contact (tenant only)


REASONED = (Figure.NOT_SENT, Figure.FAILED)
TENANT_ONLY = (Figure.SUBSCRIBED, Figure.UNSUBSCRIBED, Figure.CONTACTS_MATCHED, Figure.CONTACTS_CREATED)
EXECUTION_FIGURES = tuple(f for f in Figure if f not in TENANT_ONLY)


# What a move into each state counts: (when it comes from `queued`, otherwise). None counts
# nothing. `failed` counts `failed:<reason>` (the reason the transition records). A move to
# `accepted` counts only the first time (the transition script checks `acceptedAt`).
MOVE_FIGURES: dict[State, tuple[str | None, str | None]] = {
    State.QUEUED: (None, None),  # a replay's reopen: the failure stays counted that day
    State.ACCEPTED: (Figure.CREATED, Figure.CREATED),
    State.CONFIRMED: (Figure.IN_CALENDARS, Figure.IN_CALENDARS),
    State.NO_SUBSCRIPTION: (f"{Figure.NOT_SENT}:no_subscription", f"{Figure.NOT_SENT}:no_subscription"),
    State.MISSING_FIELD: (f"{Figure.NOT_SENT}:missing_field", f"{Figure.NOT_SENT}:missing_field"),
    State.FAILED: (Figure.FAILED, Figure.FAILED),
    State.REMOVED: (Figure.REMOVED, Figure.REMOVED),
    State.UPDATED: (Figure.UPDATED, Figure.UPDATED),
    State.CANCELLED: (f"{Figure.NOT_SENT}:cancelled", Figure.DELETED),  # not sent, or deleted
    State.WITHDRAWN: (Figure.WITHDRAWN, Figure.WITHDRAWN),
}

# A move to failed counts as `failed:<stage>:<error class>` (the value of this transition field,
# which the ledger takes out of what it stores): where and how it failed, from fixed vocabularies,
# never the failure's text, which may quote a contact's values.
FAILED_AS = "failedAs"
FAILURE_KIND = re.compile(r"^[a-z_]{1,40}:[A-Za-z_]{1,60}$")


def failure_kind(value: str) -> str:
    """`<stage>:<error class>` when `value` is one, else `other` (nothing free-form is counted)."""
    return value if FAILURE_KIND.match(value or "") else "other"


# Lua shared by the scripts that count (the ledger's, the click script): one figure in the
# day's hash for the tenant, the activity and the template. `day` is the hash's key.
COUNT_DAY_LUA = """
local function count_day(day, ttl, activity, template, figure, n)
  redis.call('HINCRBY', day, '*|' .. figure, n)
  if activity and activity ~= '' then redis.call('HINCRBY', day, 'a:' .. activity .. '|' .. figure, n) end
  if template and template ~= '' then redis.call('HINCRBY', day, 't:' .. template .. '|' .. figure, n) end
  redis.call('EXPIRE', day, ttl)
end
"""


def activity_scope(activity_id: str) -> str:
    return f"a:{activity_id}"


def template_scope(template_id: str) -> str:
    return f"t:{template_id}"


def field_name(scope: str, figure: str) -> str:
    return f"{scope}|{figure}"


def ttl_seconds(days: int) -> int:
    return (days + SLACK_DAYS) * 86400


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (ValueError naming it when unknown)."""
    return _zone(name or "UTC")


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    problem = zone_problem(name)
    if problem:
        raise ValueError(problem)
    return ZoneInfo(name)


def local_day(zone_name: str, at: datetime | None = None) -> str:
    """The date, in zone `zone_name`, of `at` (now by default), as YYYY-MM-DD."""
    return (at or datetime.now(UTC)).astimezone(zone(zone_name)).date().isoformat()


class ReportingDays:
    """Today in each tenant's reporting time zone, for the counting scripts: the zone is read
    from the tenant registry (its own cache), the ZoneInfo from a cache."""

    def __init__(self, zone_of: Callable[[str], str]) -> None:
        self._zone_of = zone_of

    def today(self, tenant: str) -> str:
        try:
            name = self._zone_of(tenant)
            return local_day(name)
        except (LookupError, ValueError):  # an unknown tenant or a zone this machine lacks: UTC
            return local_day("UTC")


def utc_today(_tenant: str) -> str:
    return local_day("UTC")


def count(
    pipe: redis.client.Pipeline | redis.Redis,
    tenant: str,
    day: str,
    figure: Figure,
    days_kept: int,
    n: int = 1,
) -> None:
    """Count a tenant-only figure (subscriptions, contact matches) in `pipe`, so it lands with
    the write it counts."""
    key = keys.performance_day(tenant, day)
    pipe.hincrby(key, field_name(ALL, figure), n)
    pipe.expire(key, ttl_seconds(days_kept))


@dataclass
class DayFigures:
    """One day of one scope: every figure (reasoned ones summed) and the reasons apart."""

    day: str
    figures: dict[str, int]
    not_sent_reasons: dict[str, int] = field(default_factory=dict)
    failed_reasons: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The flat row of a report: date, every figure, and the net subscription growth."""
        return {"date": self.day, **self.figures}


def _scope_of(activity: str | None, template: str | None) -> str:
    if activity:
        return activity_scope(activity)
    if template:
        return template_scope(template)
    return ALL


def figures_of(day: str, raw: dict[str, str], scope: str) -> DayFigures:
    """One scope's figures out of a day's hash."""
    prefix = scope + "|"
    found: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {Figure.NOT_SENT: {}, Figure.FAILED: {}}
    for name, value in raw.items():
        if not name.startswith(prefix):
            continue
        figure, _, reason = name[len(prefix) :].partition(":")
        n = int(value)
        if figure in reasons and reason:
            reasons[figure][reason] = reasons[figure].get(reason, 0) + n
        found[figure] = found.get(figure, 0) + n
    names = Figure if scope == ALL else EXECUTION_FIGURES
    figures = {str(f): max(0, found.get(f, 0)) for f in names}
    if scope == ALL:
        figures["net"] = figures[Figure.SUBSCRIBED] - figures[Figure.UNSUBSCRIBED]
    return DayFigures(day, figures, reasons[Figure.NOT_SENT], reasons[Figure.FAILED])


def day_range(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def read_raw(r: redis.Redis, tenant: str, days: Iterable[str]) -> list[dict[str, str]]:
    """Each day's hash as it is (oldest first as given): one HGETALL a day, in one round trip."""
    pipe = r.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(keys.performance_day(tenant, day))
    return pipe.execute()


def read_days(
    r: redis.Redis, tenant: str, days: Iterable[str], activity: str | None = None, template: str | None = None
) -> list[DayFigures]:
    """The figures of each day (oldest first as given) for the tenant, one activity or one
    template: one HGETALL a day, in one round trip."""
    days = list(days)
    scope = _scope_of(activity, template)
    return [figures_of(day, raw, scope) for day, raw in zip(days, read_raw(r, tenant, days), strict=True)]


def scopes_of(raws: Iterable[dict[str, str]]) -> dict[str, list[str]]:
    """The activities and templates that counted anything in these days' hashes."""
    activities: set[str] = set()
    templates: set[str] = set()
    for raw in raws:
        for name in raw:
            scope = name.partition("|")[0]
            if scope.startswith("a:"):
                activities.add(scope[2:])
            elif scope.startswith("t:"):
                templates.add(scope[2:])
    return {"activities": sorted(activities), "templates": sorted(templates)}


def journeys_of(raws: Iterable[dict[str, str]]) -> dict[str, str]:
    """activity id -> the journey id its executions came with, in these days' hashes (oldest
    first: the latest day's wins)."""
    found: dict[str, str] = {}
    for raw in raws:
        for name, value in raw.items():
            if name.startswith(JOURNEY_OF):
                found[name[len(JOURNEY_OF) :]] = value
    return found


def clean_name(value: Any) -> str:
    """A name as we keep it: one line, trimmed, capped (cell-safe only where written to SFMC)."""
    return " ".join(str(value or "").split())[:NAME_LENGTH]


def save_names(r: redis.Redis, tenant: str, activity_id: str, journey: str, activity: str) -> None:
    """Keep what Journey Builder calls the activity and its journey ('' when it did not say)."""
    record = {"journey": clean_name(journey), "activity": clean_name(activity), "at": round(time.time())}
    r.set(keys.activity_names(tenant, activity_id), json.dumps(record), ex=ACTIVITY_NAMES_DAYS * 86400)


def names_of(r: redis.Redis, tenant: str, activity_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """activity id -> {"journey", "activity", "at"} of those whose names were looked up."""
    ids = list(activity_ids)
    if not ids:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for activity_id, raw in zip(ids, r.mget([keys.activity_names(tenant, a) for a in ids]), strict=True):
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            record = None
        if isinstance(record, dict):
            found[activity_id] = record
    return found


def display_names(
    r: redis.Redis, tenant: str, activity_ids: Iterable[str], journeys: dict[str, str]
) -> dict[str, dict[str, str]]:
    """activity id -> {"journey", "activity"}: Journey Builder's names, else the ids (the
    activity's, and its journey's from `journeys`, activity id -> journey id, when known)."""
    ids = list(activity_ids)
    known = names_of(r, tenant, ids)
    answer = {}
    for activity_id in ids:
        record = known.get(activity_id) or {}
        answer[activity_id] = {
            "journey": clean_name(record.get("journey") or journeys.get(activity_id) or ""),
            "activity": clean_name(record.get("activity") or activity_id),
        }
    return answer


def totals(rows: list[DayFigures]) -> DayFigures:
    """The range's sums (figures and reasons)."""
    figures: dict[str, int] = {}
    not_sent: dict[str, int] = {}
    failed: dict[str, int] = {}
    for row in rows:
        for name, n in row.figures.items():
            figures[name] = figures.get(name, 0) + n
        for reason, n in row.not_sent_reasons.items():
            not_sent[reason] = not_sent.get(reason, 0) + n
        for reason, n in row.failed_reasons.items():
            failed[reason] = failed.get(reason, 0) + n
    return DayFigures("total", figures, not_sent, failed)


def _top(reasons: dict[str, int]) -> list[dict[str, Any]]:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    return [{"reason": reason, "count": n} for reason, n in ranked]


def report(
    r: redis.Redis,
    tenant: str,
    zone_name: str,
    first: date,
    last: date,
    activity: str | None = None,
    template: str | None = None,
) -> dict[str, Any]:
    """The report the API, the page and the CLI share: each day's row, the totals, the reasons
    for not sending and for failing (most frequent first), and what the filter can choose."""
    days = day_range(first, last)
    return _report_of(r, tenant, zone_name, days, read_raw(r, tenant, days), activity, template)


def report_all(
    r: redis.Redis,
    tenant: str,
    zone_name: str,
    first: date,
    last: date,
    activity: str | None = None,
    template: str | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """`report`, and each activity's totals over the range (activity id -> figures, for every
    activity the filter can choose): all from one read of each day's hash (the Performance page's
    funnels; a report per activity would read every day again for each)."""
    days = day_range(first, last)
    raws = read_raw(r, tenant, days)
    found = _report_of(r, tenant, zone_name, days, raws, activity, template)
    each = {
        a: totals(
            [figures_of(day, raw, activity_scope(a)) for day, raw in zip(days, raws, strict=True)]
        ).figures
        for a in found["scopes"]["activities"]
    }
    return found, each


def _report_of(
    r: redis.Redis,
    tenant: str,
    zone_name: str,
    days: list[str],
    raws: list[dict[str, str]],
    activity: str | None,
    template: str | None,
) -> dict[str, Any]:
    scope = _scope_of(activity, template)
    rows = [figures_of(day, raw, scope) for day, raw in zip(days, raws, strict=True)]
    total = totals(rows)
    scopes = scopes_of(raws)
    journeys = journeys_of(raws) if scopes["activities"] else {}
    return {
        "tenant": tenant,
        "timeZone": zone_name or "UTC",
        **({"activity": activity} if activity else {}),
        **({"template": template} if template else {}),
        "from": days[0],
        "to": days[-1],
        "days": [row.row() for row in rows],
        "totals": total.figures,
        "notSentReasons": _top(total.not_sent_reasons),
        "failedReasons": _top(total.failed_reasons),
        # the filter's choices, with each activity's names: Journey Builder's, else the ids
        "scopes": {**scopes, "activityNames": display_names(r, tenant, scopes["activities"], journeys)},
    }


def csv_text(found: dict[str, Any]) -> str:
    """One row a day (every figure), then the range's totals; spreadsheet-safe text cells (a
    number stays a number: a negative net change is -3, not '-3)."""
    out = io.StringIO()
    rows = found["days"]
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    for row in [*rows, {"date": "total", **found["totals"]}]:
        writer.writerow({name: neutralise(value) for name, value in row.items()})
    return out.getvalue()
