"""`rokt-sfmc`: serve, tenants, templates, api-keys, backfill, dlq, replay, reconcile, forget, report,
status, exporter and healthcheck (docs/operations.md); sandbox (`sandbox up`: the whole stack
to click through), jb-simulate and demo come from pipeline/sandbox/cli.py.

Exit codes: 0 done, 1 done only in part (or unhealthy, or a purge waiting for --yes), 2 bad input or
settings the service refuses, 3 Redis unreachable (each an error in one line on stderr, no traceback).

Each command imports what it needs inside its function: Flask, Celery and rich are heavy, and
`rokt-sfmc --help` or `templates list` should not pay for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

import redis
from marshmallow import ValidationError

from pipeline.cli import tenants as tenant_commands
from pipeline.infra import keys
from pipeline.vocabulary import Stage

# Installed packages add commands through this entry-point group (setup.cfg): the sandbox's
# sandbox, jb-simulate and demo come from pipeline/sandbox/cli.py, which the product never imports.
COMMANDS_GROUP = "rokt_sfmc.commands"
EXIT_PARTIAL = 1  # done only in part; unhealthy; a purge waiting for --yes
EXIT_BAD_INPUT = 2
EXIT_REDIS_UNREACHABLE = 3


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.web import create_app

    create_app().run(host=args.host, port=args.port, threaded=True)
    return 0


def _settings_tenant(name: str):
    """The settings and the tenant (pinned or from the registry), or exit saying which exist."""
    from pipeline.settings import get_settings
    from pipeline.tenancy.handles import Runtime

    settings = get_settings()
    registry = Runtime(settings).registry
    tenant = registry.get(name)
    if tenant is None:
        raise SystemExit(f"unknown tenant {name!r} (known: {', '.join(registry.names())})")
    return settings, tenant


def _read_template_file(path: str) -> dict | None:
    """The JSON document of `path` (- = stdin); None (after saying why on stderr) when unreadable."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
    except json.JSONDecodeError as exc:
        print(f"error: template file is not JSON: {exc}", file=sys.stderr)
    return None


def cmd_templates(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client
    from pipeline.journeys import templates
    from pipeline.stores.ledger import Ledger

    settings, tenant = _settings_tenant(args.tenant)
    r = redis_client(settings.redis_url)
    if args.action == "list":
        for template in templates.list_templates(r, tenant.name):
            print(json.dumps(template, sort_keys=True))
        return 0
    try:
        if args.action == "show":
            template = templates.get_template(r, tenant.name, args.id)
            print(
                json.dumps(
                    {**template, "placeholders": templates.placeholders(template)}, indent=2, sort_keys=True
                )
            )
            return 0
        if args.action == "delete":
            templates.delete_template(r, tenant.name, args.id, Ledger(r, settings.execution_ttl_days))
            print(f"deleted {args.id}")
            return 0
        document = _read_template_file(args.file)
        if document is None:
            return 2
        if args.action == "update":
            print(
                json.dumps(
                    templates.update_template(r, tenant.name, args.id, document), indent=2, sort_keys=True
                )
            )
            return 0
        stored = templates.create_template(r, tenant.name, document)
    except templates.TemplateNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except templates.TemplateInUse as exc:
        print(f"error: {exc}; delete it once they have finished", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(json.dumps({"error": "invalid_template", "fields": exc.messages}), file=sys.stderr)
        return 2
    print(stored["id"])
    return 0


def cmd_api_keys(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client
    from pipeline.tenancy import apikeys

    settings, tenant = _settings_tenant(args.tenant)
    r = redis_client(settings.redis_url)
    if args.action == "create":
        try:
            key = apikeys.create_key(r, tenant.name, args.label)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(key)  # the only time the key is shown: it is stored hashed
        print("store this key now: it cannot be shown again", file=sys.stderr)
        return 0
    if args.action == "list":
        for item in apikeys.list_keys(r, tenant.name):
            print(json.dumps(item, sort_keys=True))
        return 0
    if not apikeys.revoke_key(r, tenant.name, args.id):
        print(f"error: no API key {args.id!r} for tenant {tenant.name!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.clients.errors import ClientError
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.subscriptions.backfill import BackfillInputError, run_backfill
    from pipeline.tenancy.handles import Runtime

    settings, tenant = _settings_tenant(args.tenant)
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


def _filter(args: argparse.Namespace):
    from pipeline.upkeep.replay import DeadLetterFilter

    return DeadLetterFilter(args.stage, args.error_class, args.journey, args.since, args.until)


def cmd_dlq(args: argparse.Namespace) -> int:
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.replay import list_dead_letters, show_dead_letter

    settings, tenant = _settings_tenant(args.tenant)
    rt = Runtime(settings)
    if args.action == "show":
        letter = show_dead_letter(rt, tenant.name, args.id)
        if letter is None:
            print(f"error: no dead letter {args.id!r} for tenant {tenant.name!r}", file=sys.stderr)
            return 1
        print(json.dumps(letter, indent=2, sort_keys=True))
        return 0
    if args.action == "stats":
        stats = dead_letter_stats(list_dead_letters(rt, tenant.name, _filter(args)))
        print(json.dumps({"tenant": tenant.name, **stats}, indent=2, sort_keys=True))
        return 0
    if args.action == "purge":
        return _purge(rt, tenant.name, args)
    for letter in list_dead_letters(rt, tenant.name, _filter(args)):
        brief = {k: letter[k] for k in ("id", "stage", "errorClass", "attempts", "failedAt", "reason")}
        print(json.dumps(brief, sort_keys=True))
    return 0


def dead_letter_stats(letters: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by stage (each by error class) and by error class, the oldest and newest failure."""
    by_stage: dict[str, Counter] = {}
    for letter in letters:
        by_stage.setdefault(letter["stage"], Counter())[letter["errorClass"]] += 1
    failed_at = sorted(letter["failedAt"] for letter in letters)
    return {
        "total": len(letters),
        "byStage": {
            stage: {"total": sum(classes.values()), "byErrorClass": dict(classes)}
            for stage, classes in sorted(by_stage.items())
        },
        "byErrorClass": dict(Counter(letter["errorClass"] for letter in letters)),
        "oldestFailedAt": failed_at[0] if failed_at else None,
        "newestFailedAt": failed_at[-1] if failed_at else None,
    }


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` (an argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a number and one of s, m, h, d, w (e.g. 30d, 12h)")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def _purge(rt: Any, tenant: str, args: argparse.Namespace) -> int:
    """Dead letters that failed before now - --older-than (and match the filters): listed, and
    removed with --yes through `deadletters` (their time-index entry and auto-retry marker too:
    retention, not a replay)."""
    from pipeline.stores.deadletters import remove_dead_letters
    from pipeline.upkeep.replay import DeadLetterFilter

    cutoff = (datetime.now(UTC) - args.older_than).isoformat(timespec="milliseconds")
    where = DeadLetterFilter(args.stage, args.error_class, args.journey, None, None)
    raw = rt.redis.hgetall(keys.dead_letters(tenant))
    doomed = {}
    for item_id, text in raw.items():
        letter = json.loads(text)
        if letter["failedAt"] < cutoff and where.matches(letter):
            doomed[item_id] = text
    summary = {"tenant": tenant, "failedBefore": cutoff, "matching": len(doomed)}
    if not args.yes:
        print(json.dumps({**summary, "ids": sorted(doomed)}, indent=2))
        if doomed:
            print(
                f"would remove {len(doomed)} dead letters: run again with --yes to remove them",
                file=sys.stderr,
            )
            return EXIT_PARTIAL
        return 0
    removed = remove_dead_letters(rt.redis, tenant, sorted(doomed), as_read=doomed)
    print(json.dumps({**summary, "removed": removed}, indent=2))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Each letter on its own, so one that fails (SFMC refuses a contact again, say) is counted and
    the others still go; exit 1 unless every selected letter was replayed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.clients.errors import ClientError
    from pipeline.infra import dispatch
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.replay import list_dead_letters, replay

    settings, tenant = _settings_tenant(args.tenant)
    rt = Runtime(settings)
    letters = list_dead_letters(rt, tenant.name, _filter(args))
    result: dict[str, Any] = {
        "selected": 0,
        "replayed": 0,
        "skipped": 0,
        "failed": 0,
        "ids": [],
        "errors": {},
    }
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay" + (" (dry run)" if args.dry_run else ""), total=len(letters))
        for letter in letters:
            try:
                report = replay(
                    rt,
                    tenant.name,
                    [letter],
                    dispatch.redrive_execution,
                    dispatch.redrive_webhook,
                    dry_run=args.dry_run,
                )
            except (ClientError, RateLimited, KeyError, ValueError) as exc:
                result["selected"] += 1
                result["ids"].append(letter["id"])
                result["failed"] += 1
                result["errors"][letter["id"]] = (
                    getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                )
            else:
                for name in ("selected", "replayed", "skipped"):
                    result[name] += getattr(report, name)
                result["ids"].extend(report.ids)
            progress.advance(task)
    print(json.dumps({**result, "dry_run": args.dry_run}, indent=2))
    missed = result["skipped"] + result["failed"]
    if missed and not args.dry_run:
        print(
            f"error: {missed} of {result['selected']} dead letters not replayed "
            f"({result['skipped']} stale or of an unknown stage, {result['failed']} failed)",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0


class _Warnings(logging.Handler):
    """What reconcile logged at WARNING or above: work it had to leave for a later run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one contact from everything the tenant's keys hold; prints the counts per kind (JSON)
    and records the erasure, without the data, in the audit (pipeline.upkeep.privacy)."""
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.privacy import forget_contact

    settings, tenant = _settings_tenant(args.tenant)
    if not args.contact.strip():
        print("error: --contact must not be empty", file=sys.stderr)
        return 2
    rt = Runtime(settings)
    record = forget_contact(rt, tenant.name, args.contact, args.email, scan=not args.index_only)
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Exit 1 when an execution ended failed (never confirmed), reconcile had to stop early
    (it logs a warning: Rokt unavailable, say) or a step raised."""
    from pipeline.clients.errors import ClientError
    from pipeline.infra import dispatch
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.reconcile import reconcile

    settings, tenant = _settings_tenant(args.tenant)
    warnings = _Warnings()
    logger = logging.getLogger("pipeline.upkeep.reconcile")
    logger.addHandler(warnings)
    try:
        report = reconcile(
            Runtime(settings), tenant.name, dispatch.redrive_execution, dispatch.redrive_webhook
        )
    except (ClientError, RateLimited) as exc:
        print(f"error: reconcile stopped: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        logger.removeHandler(warnings)
    print(json.dumps({**report.as_dict(), "warnings": warnings.messages}, indent=2))
    if report.timed_out or warnings.messages:
        print(
            f"error: reconcile incomplete: {report.timed_out} executions failed unconfirmed, "
            f"{len(warnings.messages)} warnings",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client

    settings, tenant = _settings_tenant(args.tenant)
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


# -- operations: status, exporter, healthcheck ------------------------------------------------
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


def _http_check(url: str, what: str) -> tuple[bool, str]:
    import requests

    try:
        answer = requests.get(url, timeout=(2, 5))
    except requests.RequestException as exc:
        return False, f"{what} unreachable at {url}: {type(exc).__name__}"
    if answer.status_code != 200:
        return False, f"{what} answered {answer.status_code} at {url}"
    return True, f"{what} answered 200 at {url}"


def _worker_check(r: redis.Redis, hostname: str) -> tuple[bool, str]:
    """A worker named `hostname` (`worker-1@host`) or any worker on host `hostname` (its name
    ends with `@hostname`, as `--hostname worker-<n>@%h` names them) beat recently."""
    from pipeline.ops import heartbeats

    seen = heartbeats.seen(r, "worker")
    mine = {name: age for name, age in seen.items() if name == hostname or name.endswith(f"@{hostname}")}
    if not mine:
        return False, f"no worker heartbeat for {hostname!r} (seen: {', '.join(sorted(seen)) or 'none'})"
    name, age = min(mine.items(), key=lambda item: item[1])
    if age >= heartbeats.STALE_AFTER_SECONDS:
        return (
            False,
            f"worker {name}: last heartbeat {age:.0f} s ago (stale after {heartbeats.STALE_AFTER_SECONDS} s)",
        )
    return True, f"worker {name}: heartbeat {age:.0f} s ago"


def _beat_check(r: redis.Redis) -> tuple[bool, str]:
    from pipeline.ops import heartbeats

    age = heartbeats.age(r, "beat", "beat")
    if age is None:
        return False, "no beat heartbeat"
    if age >= heartbeats.STALE_AFTER_SECONDS:
        return False, f"beat: last tick {age:.0f} s ago (stale after {heartbeats.STALE_AFTER_SECONDS} s)"
    return True, f"beat: last tick {age:.0f} s ago"


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """One line, exit 0 healthy or 1 not (Docker's contract: Redis unreachable is unhealthy too)."""
    import socket

    from pipeline.infra.redis_clients import redis_client
    from pipeline.settings import get_settings

    settings = get_settings()
    if args.service == "web":
        healthy, why = _http_check(f"{(args.url or settings.public_base_url).rstrip('/')}/healthz", "web")
    elif args.service == "exporter":
        port = args.port if args.port is not None else settings.exporter_port
        base = (args.url or f"http://127.0.0.1:{port}").rstrip("/")
        healthy, why = _http_check(f"{base}/healthz", "exporter")
    else:
        r = redis_client(settings.redis_url)
        try:
            if args.service == "worker":
                healthy, why = _worker_check(r, args.hostname or socket.gethostname())
            else:
                healthy, why = _beat_check(r)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            healthy, why = False, f"Redis unreachable: {exc}"
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else EXIT_PARTIAL


def _version() -> str:
    try:
        return version("rokt-sfmc")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _tenant(p: argparse.ArgumentParser, **options: Any) -> None:
    p.add_argument(
        "--tenant", required=True, help="the tenant's name (see `rokt-sfmc tenants list`)", **options
    )


def build_parser(installed: bool = True) -> argparse.ArgumentParser:
    """`installed`: also the commands of other installed packages (the sandbox's)."""
    parser = argparse.ArgumentParser(
        prog="rokt-sfmc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the web app (production: gunicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.set_defaults(func=cmd_serve)

    backfill = sub.add_parser("backfill", help="load existing subscriptions into SFMC before go-live")
    _tenant(backfill)
    backfill.add_argument("--from", dest="source", required=True, help="subscriptions.csv or .jsonl")
    backfill.add_argument(
        "--async-threshold",
        type=int,
        default=5000,
        help="records from which the async rows API is used (default: %(default)s)",
    )
    backfill.set_defaults(func=cmd_backfill)

    def filters(p: argparse.ArgumentParser) -> None:
        _tenant(p)
        p.add_argument("--stage", choices=[str(stage) for stage in Stage], help="where it failed")
        p.add_argument("--error-class", help="permanent, retryable, throttled, unknown_outcome, ...")
        p.add_argument("--journey", help="journeyId of the executions")
        p.add_argument("--since", help="failed at or after (ISO 8601, UTC)")
        p.add_argument("--until", help="failed at or before (ISO 8601, UTC)")

    dlq = sub.add_parser("dlq", help="the dead-letter store")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_actions.add_parser("list", help="one JSON line per dead letter")
    filters(dlq_list)
    dlq_list.set_defaults(func=cmd_dlq)
    dlq_show = dlq_actions.add_parser("show", help="one dead letter in full")
    _tenant(dlq_show)
    dlq_show.add_argument("id", help="the dead letter's id (from `dlq list`)")
    dlq_show.set_defaults(func=cmd_dlq)
    dlq_stats = dlq_actions.add_parser(
        "stats", help="counts by stage and error class, oldest and newest failure (JSON)"
    )
    filters(dlq_stats)
    dlq_stats.set_defaults(func=cmd_dlq)
    dlq_purge = dlq_actions.add_parser(
        "purge", help="remove dead letters older than a duration; lists them and exits 1 without --yes"
    )
    _tenant(dlq_purge)
    dlq_purge.add_argument(
        "--older-than", type=duration, required=True, help="failed longer ago than this: 30d, 12h, 90m, 2w"
    )
    dlq_purge.add_argument("--stage", choices=[str(stage) for stage in Stage], help="only this stage")
    dlq_purge.add_argument("--error-class", help="only this error class (permanent, retryable, ...)")
    dlq_purge.add_argument("--journey", help="only dead letters of this journeyId")
    dlq_purge.add_argument("--yes", action="store_true", help="remove them (default: only list them)")
    dlq_purge.set_defaults(func=cmd_dlq)

    replay = sub.add_parser(
        "replay", help="send dead letters through the pipeline again; exit 1 unless all were replayed"
    )
    filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    replay.set_defaults(func=cmd_replay)

    reconcile = sub.add_parser(
        "reconcile", help="run the reconciliation once by hand; exit 1 when it could not finish everything"
    )
    _tenant(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)

    forget = sub.add_parser(
        "forget",
        help="erase a contact from everything we hold for the tenant; prints the counts removed (JSON)",
    )
    _tenant(forget)
    forget.add_argument("--contact", required=True, help="the contact key (SubscriberKey) to erase")
    forget.add_argument(
        "--email", help="the contact's email too (email-capture subscriptions, rows naming it)"
    )
    forget.add_argument(
        "--index-only",
        action="store_true",
        help="skip the SCAN of the tenant's executions and subscriptions (faster; misses records "
        "written before the contact index existed and ended subscriptions)",
    )
    forget.set_defaults(func=cmd_forget)

    report = sub.add_parser("report", help="a tenant's daily performance summary (JSON)")
    _tenant(report)
    report.add_argument("--date", help="YYYY-MM-DD (UTC), default today")
    report.set_defaults(func=cmd_report)

    templates = sub.add_parser("templates", help="manage event templates")
    actions = templates.add_subparsers(dest="action", required=True)
    template_id = "the template's id (tpl-...)"
    template_file = "template JSON file (- = stdin)"
    create = actions.add_parser("create", help="validate and store a template; prints its id")
    _tenant(create)
    create.add_argument("file", nargs="?", default="-", help=template_file)
    create.set_defaults(func=cmd_templates)
    listing = actions.add_parser("list", help="the tenant's templates, one JSON object a line")
    _tenant(listing)
    listing.set_defaults(func=cmd_templates)
    show = actions.add_parser("show", help="one template with its placeholders (JSON)")
    _tenant(show)
    show.add_argument("id", help=template_id)
    show.set_defaults(func=cmd_templates)
    update = actions.add_parser("update", help="replace a template's content (keeps its id)")
    _tenant(update)
    update.add_argument("id", help=template_id)
    update.add_argument("file", nargs="?", default="-", help=template_file)
    update.set_defaults(func=cmd_templates)
    delete = actions.add_parser("delete", help="delete a template no unfinished execution uses")
    _tenant(delete)
    delete.add_argument("id", help=template_id)
    delete.set_defaults(func=cmd_templates)

    api_keys = sub.add_parser("api-keys", help="per-tenant API keys for /t/<tenant>/api/")
    key_actions = api_keys.add_subparsers(dest="action", required=True)
    key_create = key_actions.add_parser("create", help="create a key; prints it once")
    _tenant(key_create)
    key_create.add_argument("--label", default="", help="what the key is for")
    key_create.set_defaults(func=cmd_api_keys)
    key_list = key_actions.add_parser(
        "list", help="the tenant's keys, one JSON object a line (never the key)"
    )
    _tenant(key_list)
    key_list.set_defaults(func=cmd_api_keys)
    key_revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    _tenant(key_revoke)
    key_revoke.add_argument("id", help="the key's id (from `api-keys list`)")
    key_revoke.set_defaults(func=cmd_api_keys)

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

    health = sub.add_parser(
        "healthcheck", help="exit 0 when the service is healthy, 1 when not (one line why)"
    )
    health.add_argument(
        "service",
        choices=("web", "worker", "beat", "exporter"),
        help=(
            "web: GET /healthz; worker, beat: a recent heartbeat in Redis; "
            "exporter: GET /healthz (Redis answers)"
        ),
    )
    health.add_argument(
        "--url", help="base URL of web (default PUBLIC_BASE_URL) or exporter (default http://127.0.0.1:PORT)"
    )
    health.add_argument("--port", type=int, help="exporter: its port (default: EXPORTER_PORT, 9808)")
    health.add_argument(
        "--hostname",
        help="worker: a worker name (worker-1@host) or a host whose workers count (default: this host)",
    )
    health.set_defaults(func=cmd_healthcheck)

    tenant_commands.register(sub)
    if installed:
        _add_installed_commands(sub)
    return parser


def _add_installed_commands(sub: argparse._SubParsersAction) -> None:
    """Commands of other installed packages (the sandbox's), one `register` each."""
    seen = set()
    for entry_point in entry_points(group=COMMANDS_GROUP):
        if entry_point.name not in seen:  # a package found twice on sys.path registers once
            seen.add(entry_point.name)
            entry_point.load()(sub)


def redis_unreachable(exc: BaseException) -> bool:
    """Redis (or the broker on it) cannot be reached: redis-py's errors, kombu's wrapping of them."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    kombu = sys.modules.get("kombu.exceptions")
    return kombu is not None and isinstance(exc, kombu.OperationalError)


def _unreachable_name(exc: BaseException) -> str:
    """Which store to name as unreachable: "RabbitMQ (BROKER_URL)" when the broker is RabbitMQ and
    the error is not redis-py's, else "Redis"."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return "Redis"
    try:
        from pipeline.settings import get_settings, is_amqp

        return "RabbitMQ (BROKER_URL)" if is_amqp(get_settings().broker) else "Redis"
    except ValueError:
        return "Redis"


def _configure_logging(args: argparse.Namespace) -> None:
    """Every command's log lines as every process's: the format of LOG_FORMAT, emails masked,
    secrets removed (the exporter configures its own, as process "exporter")."""
    if getattr(args, "command", "") == "exporter":
        return
    from pipeline.infra.logsetup import configure_logging
    from pipeline.settings import get_settings

    try:
        configure_logging(get_settings(), "cli")
    except ValueError:
        return  # settings the command itself reports (a clear one-line error)


def _settings_problem(args: argparse.Namespace) -> str | None:
    """Why the settings cannot be read (a published secret without SANDBOX=1, a bad TENANTS_FILE,
    ...), for the product's commands; the sandbox's set up their own environment."""
    if getattr(args.func, "__module__", "") not in (__name__, tenant_commands.__name__):
        return None
    from pipeline.settings import get_settings

    try:
        get_settings()
    except (ValueError, OSError) as exc:
        return " ".join(str(exc).split())
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    problem = _settings_problem(args)
    if problem:
        print(f"error: settings: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if not redis_unreachable(exc):
            raise
        # the exception's text names host and port, never the URL's password
        print(f"error: {_unreachable_name(exc)} unreachable: {exc}", file=sys.stderr)
        return EXIT_REDIS_UNREACHABLE


