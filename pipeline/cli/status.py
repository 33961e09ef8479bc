"""What operators watch, at a terminal (`rokt-sfmc status`) and for Prometheus (`rokt-sfmc exporter`).

`exporter` serves the metrics, read from Redis at scrape time. `status` shows every leaf of
`pipeline.ops.figures.snapshot` (a figure added there shows here without a change), as a table
or JSON; `--watch` refreshes it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

SERVICE_ROW = "(service)"  # the tenant column of figures that belong to no tenant


def _flatten(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        if not value:
            yield path, None
        for key, inner in value.items():
            yield from _flatten(inner, (*path, str(key)))
    else:
        yield path, value


def status_rows(snapshot: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """(tenant, area, figure, value) for every leaf of `pipeline.ops.figures.snapshot`'s dicts, so a
    figure added there shows here without a change; an empty dict is one row valued None."""
    for tenant, figures in sorted((snapshot.get("tenants") or {}).items()):
        for area, value in figures.items():
            for path, leaf in _flatten(value):
                yield tenant, area, " ".join(path), leaf
    for area, value in snapshot.items():
        if area not in ("tenants", "generatedAt"):
            for path, leaf in _flatten(value):
                yield SERVICE_ROW, area, " ".join(path), leaf


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def status_table(snapshot: dict[str, Any]):
    from rich.table import Table

    generated = snapshot.get("generatedAt")
    when = datetime.fromtimestamp(generated, UTC).isoformat(timespec="seconds") if generated else "?"
    table = Table(title=f"rokt-sfmc status at {when}")
    for column in ("tenant", "area", "figure"):
        table.add_column(column)
    table.add_column("value", justify="right")
    previous = None
    for tenant, area, figure, value in status_rows(snapshot):
        table.add_row(tenant if tenant != previous else "", area, figure, _shown(value))
        previous = tenant
    return table


def _snapshot(rt: Any, tenants: list[str] | None) -> dict[str, Any]:
    from pipeline.ops import figures

    return figures.snapshot(rt, tenants)


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.settings import get_settings
    from pipeline.tenancy.handles import Runtime

    rt = Runtime(get_settings())
    tenants = args.tenant or None
    if tenants:
        known = rt.registry.names()
        unknown = [name for name in tenants if name not in known]
        if unknown:
            print(f"error: unknown tenant {unknown[0]!r} (known: {', '.join(known)})", file=sys.stderr)
            return 2
    if args.json:
        try:
            while True:
                snapshot = _snapshot(rt, tenants)
                if args.watch is None:
                    print(json.dumps(snapshot, indent=2, sort_keys=True))
                    return 0
                print(json.dumps(snapshot, sort_keys=True), flush=True)  # one line a refresh
                time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0
    from rich.console import Console
    from rich.live import Live

    console = Console()
    if args.watch is None:
        console.print(status_table(_snapshot(rt, tenants)))
        return 0
    try:
        with Live(status_table(_snapshot(rt, tenants)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(args.watch)
                live.update(status_table(_snapshot(rt, tenants)), refresh=True)
    except KeyboardInterrupt:
        return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    from pipeline.infra.logsetup import configure_logging
    from pipeline.ops import exporter
    from pipeline.settings import get_settings

    settings = get_settings()
    configure_logging(settings, "exporter")
    port = args.port if args.port is not None else settings.exporter_port
    try:
        exporter.serve(port, args.host)
    except OSError as exc:  # the port is taken, the address is not ours
        print(f"error: cannot listen on {args.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="every figure the exporter exports, as a table or JSON")
    status.add_argument(
        "--tenant", action="append", help="only this tenant (repeat for more; default: every tenant)"
    )
    status.add_argument(
        "--json", action="store_true", help="JSON instead of a table (one line a refresh with --watch)"
    )
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    status.set_defaults(func=cmd_status)

    exporter = sub.add_parser("exporter", help="Prometheus metrics, read from Redis at scrape time")
    exporter.add_argument("--port", type=int, help="port to listen on (default: EXPORTER_PORT, 9808)")
    exporter.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    exporter.set_defaults(func=cmd_exporter)
