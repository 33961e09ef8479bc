"""`rokt-sfmc report`: a tenant's daily performance summary (JSON), the day's counts as the
pipeline kept them in Redis."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from pipeline.cli.common import add_tenant_argument, settings_tenant
from pipeline.infra import keys


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client

    settings, tenant = settings_tenant(args.tenant)
    day = args.date or datetime.now(UTC).date().isoformat()
    counts = redis_client(settings.redis_url).hgetall(keys.daily_counts(tenant.name, day))
    names = (
        "subscribed",
        "unsubscribed",
        "matched",
        "created",
        "accepted",
        "confirmed",
        "failed",
        "missing_field",
        "no_subscription",
        "removed",
    )
    print(
        json.dumps(
            {"tenant": tenant.name, "date": day, **{n: int(counts.get(n, 0)) for n in names}}, indent=2
        )
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="a tenant's daily performance summary (JSON)")
    add_tenant_argument(report)
    report.add_argument("--date", help="YYYY-MM-DD (UTC), default today")
    report.set_defaults(func=cmd_report)
