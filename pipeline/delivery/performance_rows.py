"""The "Rokt Calendar Performance" data extension: one row per tenant-local day and activity, and
the tenant's own row (ActivityId `*`), built from the exact day figures
(pipeline/stores/performance.py) so Marketing Cloud reports and SQL can join them with journey
analytics.

When: beat's hourly run (tasks/performance.py) writes each active tenant's today, and, in the
first run after the tenant's local midnight, the days that ended since the last one written after
its end (`keys.performance_exported`): yesterday, or more after beat was down, credentials were
refused or the tenant was disabled (CATCH_UP_DAYS a run, oldest first, until the gap is closed).
That marker moves only once those rows are in SFMC, and only to the last day written, so a missed
hour or a failed call means the next run writes the day again, and no day is ever skipped. Every
row is rebuilt whole from the figures and upserted (primary key Date + ActivityId): writing one
again is harmless.

Why a direct upsert, not an outbox and the flush: a few rows per tenant an hour, each the day's
current total, so nothing needs buffering or ordering; the call goes through the tenant's SFMC
client all the same (its token, its limiter gate, its call counters).

Names: the execute call names each activity's journey (the claim keeps `j:<activityId>` in the
day's hash); the run asks SFMC for that journey (`GET /interaction/v1/interactions/{id}`) for the
activities whose names it does not know or looked up more than a day ago, at most
NAME_LOOKUPS_PER_RUN journeys a run, and keeps what Journey Builder calls them. Where SFMC says
nothing (an unknown id, an activity not in the version it answers, an error), the row carries the
ids instead, and the names come a day later. A lookup never fails the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.clients.errors import ClientError
from pipeline.clients.sfmc import ROWSET_MAX_ROWS
from pipeline.infra import keys
from pipeline.infra.cellsafe import neutralise
from pipeline.stores import performance
from pipeline.stores.ledger import now_iso
from pipeline.stores.performance import ALL, Figure
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions import dataextensions
from pipeline.subscriptions.dataextensions import PERFORMANCE_DE
from pipeline.tenancy.handles import Runtime

log = logging.getLogger(__name__)

CATCH_UP_DAYS = 7  # ended days written per run after a gap (the next run writes the next ones)
NAME_LOOKUPS_PER_RUN = 20  # journeys asked about per tenant and run (SFMC calls)
NAMES_REFRESH_SECONDS = 86400  # a name is looked up again after a day (journeys get renamed)

# the data extension's count columns and the figures they hold (pipeline/subscriptions/dataextensions.py)
COLUMN_FIGURES: dict[str, str] = {
    "Entered": Figure.ENTERED,
    "Sent": Figure.CREATED,
    "InCalendars": Figure.IN_CALENDARS,
    "Updated": Figure.UPDATED,
    "RemovedBySubscribers": Figure.REMOVED,
    "Deleted": Figure.DELETED,
    "Withdrawn": Figure.WITHDRAWN,
    "NotSent": Figure.NOT_SENT,
    "Failed": Figure.FAILED,
    "Clicks": Figure.CLICKS,
    "Clickers": Figure.CLICKERS,
}
TENANT_COLUMN_FIGURES: dict[str, str] = {
    "Subscribed": Figure.SUBSCRIBED,
    "Unsubscribed": Figure.UNSUBSCRIBED,
    "NetSubscribers": "net",
}
ACTIVITY_ID_LENGTH = PERFORMANCE_DE.column("ActivityId").length or 0
# ActivityName of the tenant's own row
ALL_ACTIVITIES = "All activities"

# KEYS: the marker; ARGV: the day. Moves forward only (ISO dates compare as text).
_ADVANCE = """
local current = redis.call('GET', KEYS[1])
if not current or current < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return 0
"""


@dataclass
class ExportReport:
    days: list[str]
    rows: int = 0
    calls: int = 0
    finalised: str = ""  # the marker after this run ('' : unchanged)
    names_looked_up: int = 0
    skipped: str = ""  # why nothing was written ('' : it was)

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "rows": self.rows,
            "calls": self.calls,
            "finalised": self.finalised,
            "namesLookedUp": self.names_looked_up,
            **({"skipped": self.skipped} if self.skipped else {}),
        }


# tenants whose skipped export this process has logged (once each, not every hour)
_SKIP_LOGGED: set[str] = set()
NOT_INSTALLED = "the performance data extension is not installed (App Settings > Install data extensions)"


def days_to_write(rt: Runtime, tenant: str, now: datetime | None = None) -> tuple[list[str], str]:
    """(days to write, oldest first, today last; the ended day they finalise). Ended days are
    those after the marker up to yesterday, the oldest CATCH_UP_DAYS of them: a longer gap (beat
    down, credentials refused, the tenant disabled) is written a batch an hour, each run moving
    the marker to the last day it wrote, so no day is skipped. Days older than PERFORMANCE_DAYS
    have no figures left and are not written (zeros would say nothing happened). With no
    marker, yesterday."""
    zone_name = rt.tenant(tenant).reporting_time_zone or "UTC"
    today = date.fromisoformat(performance.local_day(zone_name, now))
    yesterday = today - timedelta(days=1)
    marker = rt.redis.get(keys.performance_exported(tenant))
    first = yesterday
    if marker:
        try:
            first = date.fromisoformat(marker) + timedelta(days=1)
        except ValueError:
            first = yesterday
    first = max(first, today - timedelta(days=rt.settings.performance_days - 1))
    ended = performance.day_range(first, yesterday)[:CATCH_UP_DAYS] if first <= yesterday else []
    return [*ended, today.isoformat()], (ended[-1] if ended else yesterday.isoformat())


def cell(column: str, value: str) -> str:
    """Free text for a Text column of the DE: neutralised first (which may add a `'`), then cut to
    the column's MaxLength, so no value can be one character too long: SFMC refuses a whole rowset
    for one such cell, and every hour would dead-letter the tenant's export again."""
    length = PERFORMANCE_DE.column(column).length or 0
    return str(neutralise(value))[:length]


def identity(column: str, value: str) -> str:
    """An id for a Text column: as it is, or '' when longer than the column (a cut id would name
    something else; the row is worth more than the id)."""
    length = PERFORMANCE_DE.column(column).length or 0
    return value if len(value) <= length else ""


def _count_values(figures: dict[str, int], columns: dict[str, str]) -> dict[str, int]:
    return {column: int(figures.get(figure, 0)) for column, figure in columns.items()}


def rows_of_day(
    day: str,
    raw: dict[str, str],
    zone_name: str,
    names: dict[str, dict[str, str]],
    journeys: dict[str, str],
    updated_at: str,
) -> list[dict[str, Any]]:
    """The day's rows from its hash: the tenant's own (`*`, always: a day of zeros says nothing
    happened), then one per activity that counted anything that day, by activity id."""
    common = {"TimeZone": cell("TimeZone", zone_name), "UpdatedAt": updated_at}
    tenant = performance.figures_of(day, raw, ALL).figures
    rows = [
        {
            "keys": {"Date": day, "ActivityId": ALL},
            "values": {
                "ActivityName": ALL_ACTIVITIES,
                "JourneyId": "",
                "JourneyName": "",
                **common,
                **_count_values(tenant, COLUMN_FIGURES),
                **_count_values(tenant, TENANT_COLUMN_FIGURES),
            },
        }
    ]
    for activity_id in _activities(raw):
        figures = performance.figures_of(day, raw, performance.activity_scope(activity_id)).figures
        name = names.get(activity_id) or {"journey": "", "activity": activity_id}
        journey_id = journeys.get(activity_id, "")
        rows.append(
            {
                "keys": {"Date": day, "ActivityId": activity_id},
                "values": {
                    "ActivityName": cell("ActivityName", name["activity"] or activity_id),
                    "JourneyId": identity("JourneyId", journey_id),
                    "JourneyName": cell("JourneyName", name["journey"] or journey_id),
                    **common,
                    **_count_values(figures, COLUMN_FIGURES),
                },
            }
        )
    return rows


def _activities(raw: dict[str, str]) -> list[str]:
    """The activities that counted on the day. An id longer than the ActivityId column (execute
    accepts 200 characters, Journey Builder's are UUIDs) has no row: a key cannot be cut, and one
    such row would make SFMC refuse the whole rowset; its figures are in the tenant's row."""
    found = {name.partition("|")[0][2:] for name in raw if name.startswith("a:") and "|" in name}
    return sorted(a for a in found if 0 < len(a) <= ACTIVITY_ID_LENGTH)


def _journeys(raws: Iterable[dict[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in raws:
        for name, value in raw.items():
            if name.startswith(performance.JOURNEY_OF):
                found[name[len(performance.JOURNEY_OF) :]] = value
    return found


def refresh_names(rt: Runtime, tenant: str, activities: Iterable[str], journeys: dict[str, str]) -> int:
    """Ask SFMC for the names of the activities not known, or known for more than a day (their
    journey's once for all of them); returns the journeys asked about. Best effort: an error
    stops the lookups of this run and is logged, never raised."""
    activities = [a for a in activities if journeys.get(a)]
    known = performance.names_of(rt.redis, tenant, activities)
    now = time.time()
    stale: dict[str, list[str]] = {}
    for activity_id in activities:
        at = float((known.get(activity_id) or {}).get("at") or 0)
        if now - at >= NAMES_REFRESH_SECONDS:
            stale.setdefault(journeys[activity_id], []).append(activity_id)
    asked = 0
    for journey_id, members in list(stale.items())[:NAME_LOOKUPS_PER_RUN]:
        try:
            found = rt.sfmc(tenant).journey_names(journey_id)
        except (ClientError, RateLimited) as exc:
            log.warning("performance rows of %s: journey names not read (%s); ids meanwhile", tenant, exc)
            break
        asked += 1
        journey_name, activity_names = found if found is not None else ("", {})
        for activity_id in members:
            performance.save_names(
                rt.redis, tenant, activity_id, journey_name, activity_names.get(activity_id, "")
            )
    return asked


def export(
    rt: Runtime, tenant: str, days: list[str] | None = None, now: datetime | None = None
) -> ExportReport:
    """Upsert the performance rows of `days` (default: what `days_to_write` says, and then move
    the marker; nothing while the tenant's install is known not to include the performance DE).
    Raises what the SFMC client raises (the task retries, then dead-letters)."""
    config = rt.tenant(tenant)
    zone_name = config.reporting_time_zone or "UTC"
    finalise = ""
    if days is None:
        if PERFORMANCE_DE.name in dataextensions.not_installed(rt.redis, tenant):
            # installed before the performance DE existed: every upsert would be refused and
            # dead-lettered each hour. Wait, marker unmoved: the install's next run closes the gap.
            if tenant not in _SKIP_LOGGED:
                _SKIP_LOGGED.add(tenant)
                log.warning("performance rows of %s wait: %s", tenant, NOT_INSTALLED)
            return ExportReport(days=[], skipped=NOT_INSTALLED)
        _SKIP_LOGGED.discard(tenant)
        days, finalise = days_to_write(rt, tenant, now)
    report = ExportReport(days=list(days))
    pipe = rt.redis.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(keys.performance_day(tenant, day))
    raws = pipe.execute()
    journeys = _journeys(raws)
    activities = sorted({a for raw in raws for a in _activities(raw)})
    report.names_looked_up = refresh_names(rt, tenant, activities, journeys)
    names = performance.display_names(rt.redis, tenant, activities, journeys)
    updated_at = now_iso() if now is None else now.astimezone(UTC).isoformat(timespec="milliseconds")
    rows = [
        row
        for day, raw in zip(days, raws, strict=True)
        for row in rows_of_day(day, raw, zone_name, names, journeys, updated_at)
    ]
    client = rt.sfmc(tenant)
    for start in range(0, len(rows), ROWSET_MAX_ROWS):
        client.upsert_rows(config.sfmc_performance_de_key, rows[start : start + ROWSET_MAX_ROWS])
        report.calls += 1
    report.rows = len(rows)
    if finalise:
        rt.redis.register_script(_ADVANCE)(keys=[keys.performance_exported(tenant)], args=[finalise])
        report.finalised = finalise
    return report
