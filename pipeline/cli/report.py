"""`rokt-sfmc report`: a tenant's performance by UTC day, as the pipeline counted it in Redis where
each state changed (exact under concurrency and redelivery): the whole tenant's day, or one
activity's (`--activity`), for one day or a range (`--from`/`--to`), as JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.cli.common import EXIT_BAD_INPUT, add_tenant_argument, settings_tenant
from pipeline.infra import keys
from pipeline.vocabulary import State

# the tenant's day: its subscriptions and contact matches (pipeline/subscriptions/subscription_rows.py)
# and every move of its executions, by the state moved to (the ledger's transition script)
TENANT_FIGURES = (
    "subscribed",
    "unsubscribed",
    "matched",
    "created",
    *(s.value for s in State if s != State.QUEUED),
)
# an activity's day: the moves of its executions (keys.activity_daily)
ACTIVITY_FIGURES = tuple(s.value for s in State if s != State.QUEUED)
MAX_DAYS = 400  # what the counters keep


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client

    settings, tenant = settings_tenant(args.tenant)
    today = datetime.now(UTC).date()
    first = args.start or args.date or today
    last = args.end or args.date or (today if args.start else first)
    if last < first or (last - first).days >= MAX_DAYS:
        print(f"error: --from must not be after --to, and at most {MAX_DAYS} days apart", file=sys.stderr)
        return EXIT_BAD_INPUT
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    r = redis_client(settings.redis_url)
    pipe = r.pipeline(transaction=False)
    for day in days:
        if args.activity:
            pipe.hgetall(keys.activity_daily(tenant.name, args.activity, day.isoformat()))
        else:
            pipe.hgetall(keys.daily_counts(tenant.name, day.isoformat()))
    names = ACTIVITY_FIGURES if args.activity else TENANT_FIGURES
    rows = [
        {"date": day.isoformat(), **{n: int(counts.get(n, 0)) for n in names}}
        for day, counts in zip(days, pipe.execute(), strict=True)
    ]
    scope: dict[str, Any] = {"tenant": tenant.name, **({"activity": args.activity} if args.activity else {})}
    if args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=["date", *names], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if len(rows) == 1 and not (args.start or args.end):  # one day: the day's object, as before
        print(json.dumps({**scope, **rows[0]}, indent=2))
        return 0
    totals = {n: sum(row[n] for row in rows) for n in names}
    print(
        json.dumps(
            {
                **scope,
                "from": days[0].isoformat(),
                "to": days[-1].isoformat(),
                "days": rows,
                "totals": totals,
            },
            indent=2,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="a tenant's (or one activity's) performance by UTC day: JSON, or CSV with --csv"
    )
    add_tenant_argument(report)
    when = report.add_mutually_exclusive_group()
    when.add_argument("--date", type=_day, help="one day, YYYY-MM-DD (UTC), default today")
    when.add_argument("--from", dest="start", type=_day, help="the first day of a range (UTC)")
    report.add_argument("--to", dest="end", type=_day, help="the range's last day (UTC), default today")
    report.add_argument("--activity", help="one Journey Builder activity's days (its executions' moves)")
    report.add_argument("--csv", action="store_true", help="one CSV row a day instead of JSON")
    report.set_defaults(func=cmd_report)
