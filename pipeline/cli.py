"""`rokt-sfmc`: serve, tenants, templates, api-keys, backfill, dlq, replay, reconcile, report (DESIGN.md §9);
sandbox, jb-simulate and demo come from pipeline/sandbox/cli.py.

Each command imports what it needs inside its function: Flask, Celery and rich are heavy, and
`rokt-sfmc --help` or `templates list` should not pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

from marshmallow import ValidationError

from pipeline import cli_tenants
from pipeline.vocabulary import Stage

# Installed packages add commands through this entry-point group (setup.cfg): the sandbox's
# sandbox, jb-simulate and demo come from pipeline/sandbox/cli.py, which the product never imports.
COMMANDS_GROUP = "rokt_sfmc.commands"


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.web import create_app

    create_app().run(host=args.host, port=args.port, threaded=True)
    return 0


def _settings_tenant(name: str):
    """The settings and the tenant (pinned or from the registry), or exit saying which exist."""
    from pipeline.runtime import Runtime
    from pipeline.settings import get_settings

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
    from pipeline import templates
    from pipeline.ledger import Ledger
    from pipeline.store import redis_client

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
    from pipeline import apikeys
    from pipeline.store import redis_client

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

    from pipeline.backfill import BackfillInputError, run_backfill
    from pipeline.clients.errors import ClientError
    from pipeline.ratelimit import RateLimited
    from pipeline.runtime import Runtime

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
    from pipeline.replay import DeadLetterFilter

    return DeadLetterFilter(args.stage, args.error_class, args.journey, args.since, args.until)


def cmd_dlq(args: argparse.Namespace) -> int:
    from pipeline.replay import list_dead_letters, show_dead_letter
    from pipeline.runtime import Runtime

    settings, tenant = _settings_tenant(args.tenant)
    rt = Runtime(settings)
    if args.action == "show":
        letter = show_dead_letter(rt, tenant.name, args.id)
        if letter is None:
            print(f"error: no dead letter {args.id!r} for tenant {tenant.name!r}", file=sys.stderr)
            return 1
        print(json.dumps(letter, indent=2, sort_keys=True))
        return 0
    for letter in list_dead_letters(rt, tenant.name, _filter(args)):
        brief = {k: letter[k] for k in ("id", "stage", "errorClass", "attempts", "failedAt", "reason")}
        print(json.dumps(brief, sort_keys=True))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline import dispatch
    from pipeline.replay import list_dead_letters, replay
    from pipeline.runtime import Runtime

    settings, tenant = _settings_tenant(args.tenant)
    rt = Runtime(settings)
    letters = list_dead_letters(rt, tenant.name, _filter(args))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay" + (" (dry run)" if args.dry_run else ""), total=len(letters))
        report = replay(
            rt,
            tenant.name,
            letters,
            dispatch.redrive_execution,
            dispatch.redrive_webhook,
            dry_run=args.dry_run,
            on_progress=lambda: progress.advance(task),
        )
    print(json.dumps({**asdict(report), "dry_run": args.dry_run}, indent=2))
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from pipeline import dispatch
    from pipeline.reconcile import reconcile
    from pipeline.runtime import Runtime

    settings, tenant = _settings_tenant(args.tenant)
    report = reconcile(Runtime(settings), tenant.name, dispatch.redrive_execution, dispatch.redrive_webhook)
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.ledger import daily_counts_key
    from pipeline.store import redis_client

    settings, tenant = _settings_tenant(args.tenant)
    day = args.date or datetime.now(UTC).date().isoformat()
    counts = redis_client(settings.redis_url).hgetall(daily_counts_key(tenant.name, day))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rokt-sfmc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the web app (production: gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    backfill = sub.add_parser("backfill", help="load existing subscriptions into SFMC before go-live")
    backfill.add_argument("--tenant", required=True)
    backfill.add_argument("--from", dest="source", required=True, help="subscriptions.csv or .jsonl")
    backfill.add_argument(
        "--async-threshold", type=int, default=5000, help="records from which the async rows API is used"
    )
    backfill.set_defaults(func=cmd_backfill)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", required=True)
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
    dlq_show.add_argument("--tenant", required=True)
    dlq_show.add_argument("id")
    dlq_show.set_defaults(func=cmd_dlq)

    replay = sub.add_parser("replay", help="send dead letters through the pipeline again")
    filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    replay.set_defaults(func=cmd_replay)

    reconcile = sub.add_parser("reconcile", help="run the reconciliation once by hand")
    reconcile.add_argument("--tenant", required=True)
    reconcile.set_defaults(func=cmd_reconcile)

    report = sub.add_parser("report", help="a tenant's daily performance summary (JSON)")
    report.add_argument("--tenant", required=True)
    report.add_argument("--date", help="YYYY-MM-DD (UTC), default today")
    report.set_defaults(func=cmd_report)

    templates = sub.add_parser("templates", help="manage event templates")
    actions = templates.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="validate and store a template; prints its id")
    create.add_argument("--tenant", required=True)
    create.add_argument("file", nargs="?", default="-", help="template JSON file (- = stdin)")
    create.set_defaults(func=cmd_templates)
    listing = actions.add_parser("list", help="the tenant's templates, one JSON object a line")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(func=cmd_templates)
    show = actions.add_parser("show", help="one template with its placeholders (JSON)")
    show.add_argument("--tenant", required=True)
    show.add_argument("id")
    show.set_defaults(func=cmd_templates)
    update = actions.add_parser("update", help="replace a template's content (keeps its id)")
    update.add_argument("--tenant", required=True)
    update.add_argument("id")
    update.add_argument("file", nargs="?", default="-", help="template JSON file (- = stdin)")
    update.set_defaults(func=cmd_templates)
    delete = actions.add_parser("delete", help="delete a template no unfinished execution uses")
    delete.add_argument("--tenant", required=True)
    delete.add_argument("id")
    delete.set_defaults(func=cmd_templates)

    keys = sub.add_parser("api-keys", help="per-tenant API keys for /t/<tenant>/api/")
    key_actions = keys.add_subparsers(dest="action", required=True)
    key_create = key_actions.add_parser("create", help="create a key; prints it once")
    key_create.add_argument("--tenant", required=True)
    key_create.add_argument("--label", default="", help="what the key is for")
    key_create.set_defaults(func=cmd_api_keys)
    key_list = key_actions.add_parser(
        "list", help="the tenant's keys, one JSON object a line (never the key)"
    )
    key_list.add_argument("--tenant", required=True)
    key_list.set_defaults(func=cmd_api_keys)
    key_revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    key_revoke.add_argument("--tenant", required=True)
    key_revoke.add_argument("id")
    key_revoke.set_defaults(func=cmd_api_keys)

    cli_tenants.register(sub)
    _add_installed_commands(sub)
    return parser


def _add_installed_commands(sub: argparse._SubParsersAction) -> None:
    """Commands of other installed packages (the sandbox's), one `register` each."""
    seen = set()
    for entry_point in entry_points(group=COMMANDS_GROUP):
        if entry_point.name not in seen:  # a package found twice on sys.path registers once
            seen.add(entry_point.name)
            entry_point.load()(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
