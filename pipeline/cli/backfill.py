"""`rokt-sfmc backfill`: a tenant's existing subscriptions loaded into SFMC before go-live, with a
progress bar; run it again after an interruption and it resumes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cli.common import add_tenant_argument, settings_tenant


def cmd_backfill(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.clients.errors import ClientError
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.subscriptions.backfill import BackfillInputError, run_backfill
    from pipeline.tenancy.handles import Runtime

    settings, tenant = settings_tenant(args.tenant)
    path = Path(args.source)
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"backfill {path.name}", total=None)
        try:
            summary = run_backfill(
                Runtime(settings),
                tenant.name,
                path,
                async_threshold=args.async_threshold,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except BackfillInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ClientError, RateLimited) as exc:
            print(f"error: backfill interrupted ({exc}); run it again to resume", file=sys.stderr)
            return 1
    print(json.dumps(asdict(summary), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    backfill = sub.add_parser("backfill", help="load existing subscriptions into SFMC before go-live")
    add_tenant_argument(backfill)
    backfill.add_argument("--from", dest="source", required=True, help="subscriptions.csv or .jsonl")
    backfill.add_argument(
        "--async-threshold",
        type=int,
        default=5000,
        help="records from which the async rows API is used (default: %(default)s)",
    )
    backfill.set_defaults(func=cmd_backfill)
