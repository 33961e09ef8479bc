"""The performance report as an HTTP answer, for the API (`/t/<tenant>/api/performance`) and the
app's Performance page: the same figures as `rokt-sfmc report` (pipeline/stores/performance.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import Response, jsonify

from pipeline.stores import performance
from pipeline.tenancy.handles import Runtime
from pipeline.web.errors import ApiError


def report_for(rt: Runtime, tenant: str, query: dict[str, Any]) -> dict[str, Any]:
    """The report of a loaded PerformanceQuerySchema query; a range past what the figures keep
    is a 400 naming `from`."""
    zone_name, first, last = _range(rt, tenant, query)
    return performance.report(
        rt.redis, tenant, zone_name, first, last, query.get("activity"), query.get("template")
    )


def report_all_for(
    rt: Runtime, tenant: str, query: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """`report_for`, and each activity's totals (performance.report_all: one read of each day)."""
    zone_name, first, last = _range(rt, tenant, query)
    return performance.report_all(
        rt.redis, tenant, zone_name, first, last, query.get("activity"), query.get("template")
    )


def _range(rt: Runtime, tenant: str, query: dict[str, Any]) -> tuple[str, date, date]:
    """(zone, first, last) of the query; ApiError 400 naming `from` past what the figures keep."""
    zone_name = rt.tenant(tenant).reporting_time_zone or "UTC"
    today = date.fromisoformat(performance.local_day(zone_name))
    first = query.get("start") or query.get("end") or today
    last = query.get("end") or max(first, today)
    kept = rt.settings.performance_days
    if (last - first).days >= kept:
        raise ApiError(
            400,
            "invalid_payload",
            "query rejected",
            fields={"from": [f"at most {kept} days before to (PERFORMANCE_DAYS)"]},
        )
    if first < today - timedelta(days=kept):
        raise ApiError(
            400, "invalid_payload", "query rejected", fields={"from": [f"figures are kept {kept} days"]}
        )
    return zone_name, first, last


def performance_answer(rt: Runtime, tenant: str, query: dict[str, Any]) -> Response:
    found = report_for(rt, tenant, query)
    if query.get("format") != "csv":
        return jsonify(found)
    name = f"rokt-calendar-performance-{found['from']}-{found['to']}.csv"
    answer = Response(performance.csv_text(found), mimetype="text/csv")
    answer.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return answer
