"""`rokt-sfmc report`: what the calendar channel did, day by day in the tenant's reporting time
zone, as the pipeline counted it where each thing happened (pipeline/stores/performance.py): the
whole tenant, one activity (`--activity`) or one template (`--template`), for one day or a range,
as JSON (`--json`, the default) or CSV (`--csv`, one row a day)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from pipeline.cli.common import EXIT_BAD_INPUT, add_tenant_argument, settings_tenant
from pipeline.stores import performance


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client

    settings, tenant = settings_tenant(args.tenant)
    zone_name = tenant.reporting_time_zone or "UTC"
    today = date.fromisoformat(performance.local_day(zone_name))
    first = args.start or args.date or today
    last = args.end or args.date or (today if args.start else first)
    if last < first or (last - first).days >= settings.performance_days:
        print(
            f"error: --from must not be after --to, and at most {settings.performance_days} days apart "
            "(PERFORMANCE_DAYS: what the figures keep)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    r = redis_client(settings.redis_url)
    found = performance.report(r, tenant.name, zone_name, first, last, args.activity, args.template)
    if args.csv:
        sys.stdout.write(performance.csv_text(found))
        return 0
    print(json.dumps(found, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="what the calendar channel did, by day in the tenant's reporting time zone: JSON, or CSV",
    )
    add_tenant_argument(report)
    when = report.add_mutually_exclusive_group()
    when.add_argument("--date", type=_day, help="one day, YYYY-MM-DD (the tenant's time zone), default today")
    when.add_argument("--from", dest="start", type=_day, help="the first day of a range")
    report.add_argument("--to", dest="end", type=_day, help="the range's last day, default today")
    scope = report.add_mutually_exclusive_group()
    scope.add_argument("--activity", help="one Journey Builder activity (journey step)")
    scope.add_argument("--template", help="one event template")
    shape = report.add_mutually_exclusive_group()
    shape.add_argument("--csv", action="store_true", help="one CSV row a day")
    shape.add_argument("--json", action="store_true", help="JSON: the days, totals and reasons (the default)")
    report.set_defaults(func=cmd_report)
