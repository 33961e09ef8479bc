"""The Performance page of the app (`/app/performance`), beside App Settings: the same sign-in,
session and CSP (`require_app_session`, `app_response_headers`); the tenant is the session's.

A date range (presets or from/to, days in the tenant's reporting time zone) and an activity
filter, as a GET form: charts of subscribers per day, events per day, each activity's funnel
(entered, sent, in calendars, clicked) and the top reasons for not sending, each with its table.
The figures are `pipeline.web.performance.report_all_for`'s: the API's very report, and each
activity's totals for the funnels, from one read of each day; the page's data
route (`/app/performance/data`, JSON or `format=csv`) answers it as the API does. Charts are SVG
drawn here (pipeline/web/charts.py says why); the one script (static/app/performance.js) fetches the
CSV with the session, as a framed download link would go without its partitioned cookie.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, render_template, request, session
from marshmallow import ValidationError

from pipeline.settings import Tenant
from pipeline.stores import performance
from pipeline.tenancy.handles import Runtime
from pipeline.web import charts
from pipeline.web.app_auth import require_app_session
from pipeline.web.errors import ApiError
from pipeline.web.performance import performance_answer, report_all_for
from schemas.api import PerformanceQuerySchema

app_performance = Blueprint("app_performance", __name__, url_prefix="/app")

QUERY_SCHEMA = PerformanceQuerySchema()
PRESETS = (7, 30, 90)
DEFAULT_DAYS = 7
MAX_FUNNELS = 12  # activities shown with a funnel each when no filter is chosen (most entered first)
# the query's fields as the page names them (errors say these)
FIELD_LABELS = {"from": "From", "to": "To", "activity": "Activity", "template": "Event", "format": "Format"}

SUBSCRIBERS = (
    charts.Series("subscribed", "Created", charts.BLUE),
    charts.Series("unsubscribed", "Ended", charts.ORANGE),
)
NET = charts.Series("net", "Net", charts.INK)
EVENTS = (
    charts.Series("in_calendars", "Added", charts.GREEN),
    charts.Series("updated", "Updated", charts.BLUE),
    charts.Series("removed", "Removed by subscribers", charts.ORANGE),
)
FUNNEL = (
    ("entered", "Entered"),
    ("created", "Sent"),
    ("in_calendars", "In calendars"),
    ("clickers", "Clicked"),
)
REASONS = {
    "no_subscription": "No calendar subscription",
    "missing_field": "A field was missing",
    "cancelled": "Cancelled before sending",
}
# a failure's `<stage>:<error class>` (pipeline/vocabulary.py Stage, ErrorClass) in the admin's
# words, short enough for the reasons' table beside its chart
REFUSED = ("client_error", "permanent")
FAILURE_STAGES = {
    "render": "Event could not be built",
    "confirm": "Rokt never confirmed",
    "pipeline": "Unexpected error",
}


def failure_label(kind: str) -> str:
    """`create_event:permanent` -> "Rokt refused the event"; an unknown kind as it is."""
    stage, _, error_class = kind.partition(":")
    if stage == "create_event":
        return "Rokt refused the event" if error_class in REFUSED else "Rokt: retries ran out"
    return FAILURE_STAGES.get(stage, kind)


def _runtime() -> Runtime:
    return current_app.extensions["rsf.runtime"]


def _today(tenant: Tenant) -> date:
    return date.fromisoformat(performance.local_day(tenant.reporting_time_zone or "UTC"))


def _query(tenant: Tenant, args: dict[str, str]) -> dict[str, Any]:
    """The page's query: the API's schema; no range given means the last DEFAULT_DAYS days."""
    loaded = QUERY_SCHEMA.load(args)
    if not loaded.get("start") and not loaded.get("end"):
        loaded["end"] = _today(tenant)
        loaded["start"] = loaded["end"] - timedelta(days=DEFAULT_DAYS - 1)
    return loaded


def _names(found: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Journey and activity names by activity id, when the report carries them (else none)."""
    names = found.get("scopes", {}).get("activityNames") or {}
    return names if isinstance(names, dict) else {}


def activity_label(activity_id: str, names: dict[str, dict[str, str]]) -> str:
    """`Journey > Activity` (a single angle quote) when Journey Builder named them, else the id."""
    known = names.get(activity_id) or {}
    parts = [str(known[k]) for k in ("journey", "activity") if known.get(k)]
    return " \u203a ".join(parts) if parts else activity_id


def funnel_rows(totals: dict[str, Any]) -> list[dict[str, Any]]:
    """entered -> sent -> in calendars -> clicked, each with its share of entered."""
    entered = int(totals.get("entered", 0))
    return [
        {
            "key": key,
            "label": label,
            "count": int(totals.get(key, 0)),
            "share": f"{int(totals.get(key, 0)) / entered:.0%}" if entered else "",
        }
        for key, label in FUNNEL
    ]


def reason_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """Why contacts were not sent: the not-sent reasons, then failures, most frequent first."""
    rows = [
        {"kind": "Not sent", "reason": REASONS.get(r["reason"], r["reason"]), "count": r["count"]}
        for r in found["notSentReasons"]
    ] + [
        {"kind": "Failed", "reason": failure_label(r["reason"]), "count": r["count"]}
        for r in found["failedReasons"]
    ]
    return sorted(rows, key=lambda row: -row["count"])[:10]


def _funnel(chart_id: str, name: str, totals: dict[str, Any]) -> dict[str, Any]:
    rows = funnel_rows(totals)
    title = f"Funnel: {name}"
    entered = rows[0]["count"]
    bars = [(row["label"], row["count"]) for row in rows]
    return {
        "id": chart_id,
        "name": name,
        "title": title,
        "rows": rows,
        "empty": not any(row["count"] for row in rows),
        "svg": charts.horizontal_bars(chart_id, title, bars, colour=charts.GREEN, of=entered or None),
    }


def _funnels(
    query: dict[str, Any], found: dict[str, Any], each: dict[str, dict[str, int]]
) -> tuple[list[dict], int]:
    """The filtered activity's funnel; without a filter, all activities' and each one's (the
    MAX_FUNNELS with most entered; the count of the others is returned). `each`: every
    activity's totals (performance.report_all, read with the report)."""
    names = _names(found)
    if query.get("activity"):
        label = activity_label(query["activity"], names)
        return [_funnel("funnel-0", label, found["totals"])], 0
    funnels = [_funnel("funnel-all", "all activities", found["totals"])]
    ranked = sorted(each.items(), key=lambda item: (-int(item[1].get("entered", 0)), item[0]))
    for i, (activity, one) in enumerate(ranked[:MAX_FUNNELS]):
        funnels.append(_funnel(f"funnel-{i}", activity_label(activity, names), one))
    return funnels, max(0, len(ranked) - MAX_FUNNELS)


def _filter_args(query: dict[str, Any]) -> dict[str, str]:
    """The query's filter (activity, template), for the links that keep it."""
    return {name: query[name] for name in ("activity", "template") if query.get(name)}


def _csv_args(query: dict[str, Any], found: dict[str, Any]) -> dict[str, str]:
    """The CSV of what is shown: the report's range (a query may give one end only) and filter."""
    args = {"from": found["from"], "to": found["to"], "format": "csv"}
    return {**args, **_filter_args(query)}


def _presets(today: date, query: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for days in PRESETS:
        start = today - timedelta(days=days - 1)
        args = {"from": start.isoformat(), "to": today.isoformat(), **_filter_args(query)}
        out.append(
            {
                "label": f"Last {days} days",
                "args": args,
                "current": query.get("start") == start and query.get("end") == today,
            }
        )
    return out


def _errors_of(messages: Any) -> dict[str, list[str]]:
    if not isinstance(messages, dict):
        return {"from": [str(messages)]}
    return {name: found if isinstance(found, list) else [str(found)] for name, found in messages.items()}


@app_performance.get("/performance")
@require_app_session
def page() -> Response:
    tenant: Tenant = g.app_tenant
    args = {k: v for k, v in request.args.items() if v != ""}  # an emptied input means "not given"
    today = _today(tenant)
    context: dict[str, Any] = {
        "tenant": tenant,
        "user": session.get("user", ""),
        "today": today.isoformat(),
        "labels": FIELD_LABELS,
        "values": args,
        "errors": {},
        "found": None,
        "presets": _presets(today, {}),
    }
    try:
        query = _query(tenant, args)
        found, each = report_all_for(_runtime(), tenant.name, query)
    except ValidationError as exc:
        return _render(context | {"errors": _errors_of(exc.messages)}, 400)
    except ApiError as exc:  # a range longer or older than the figures are kept
        return _render(
            context | {"errors": _errors_of(exc.extra.get("fields", {"from": [exc.message]}))}, 400
        )
    days = found["days"]
    names = _names(found)
    funnels, more = _funnels(query, found, each)
    context.update(
        found=found,
        values={
            "from": found["from"],
            "to": found["to"],
            "activity": query.get("activity") or "",
            "template": query.get("template") or "",
        },
        presets=_presets(today, query),
        activities=[
            {"id": a, "label": activity_label(a, names)}
            for a in sorted(
                set(found["scopes"]["activities"]) | ({query["activity"]} if query.get("activity") else set())
            )
        ],
        activity_label=activity_label(query["activity"], names) if query.get("activity") else "",
        csv_args=_csv_args(query, found),
        subscribers={
            "svg": charts.daily_bars("chart-subscribers", "Subscribers per day", days, SUBSCRIBERS, NET),
            "empty": not any(d.get(s.key) for d in days for s in SUBSCRIBERS),
            "series": [*SUBSCRIBERS, NET],
        },
        events={
            "svg": charts.daily_bars("chart-events", "Events per day", days, EVENTS),
            "empty": not any(d.get(s.key) for d in days for s in EVENTS),
            "series": list(EVENTS),
        },
        funnels=funnels,
        more_funnels=more,
        reasons=(reasons := reason_rows(found)),
        reasons_svg=charts.horizontal_bars(
            "chart-reasons",
            "Top reasons for not sending (orange: not sent, purple: failed)",
            [(r["reason"], r["count"]) for r in reasons],
            colours=[charts.ORANGE if r["kind"] == "Not sent" else charts.PURPLE for r in reasons],
            label_w=230,
        ),
    )
    return _render(context, 200)


def _render(context: dict[str, Any], status: int) -> Response:
    response = Response(render_template("app/performance.html", **context))
    response.status_code = status
    return response


@app_performance.get("/performance/data")
@require_app_session
def data() -> Response:
    """The page's figures as the API answers them (`/t/<tenant>/api/performance`): JSON, or CSV
    with `format=csv`; a bad query is a 400 naming the field."""
    tenant: Tenant = g.app_tenant
    try:
        query = _query(tenant, request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, "invalid_payload", "query rejected", fields=exc.messages) from exc
    return performance_answer(_runtime(), tenant.name, query)
