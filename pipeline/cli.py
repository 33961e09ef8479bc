"""`rokt-sfmc`: serve, sandbox, jb-simulate, demo, templates (DESIGN.md §9)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from marshmallow import ValidationError


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.web import create_app

    create_app().run(host=args.host, port=args.port, threaded=True)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox import start_sandbox
    from pipeline.web.logs import install_log_redaction

    install_log_redaction()  # its request log prints contact keys (emails) in URL paths
    sandbox = start_sandbox(args.host, args.rokt_port, args.sfmc_port)
    env = sandbox.env()
    if args.env_file:
        Path(args.env_file).write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        print(f"settings written to {args.env_file}")
    print(f"Rokt simulator: {sandbox.rokt_server.url}")
    print(f"SFMC simulator: {sandbox.sfmc_server.url}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    sandbox.stop()
    return 0


def _settings_tenant(name: str):
    from pipeline.settings import get_settings

    settings = get_settings()
    tenant = settings.tenant(name)
    if tenant is None:
        raise SystemExit(f"unknown tenant {name!r} (known: {', '.join(settings.tenants)})")
    return settings, tenant


def cmd_jb_simulate(args: argparse.Namespace) -> int:
    from pipeline.sandbox import jbsim
    from pipeline.store import redis_client
    from pipeline.templates import create_template

    settings, tenant = _settings_tenant(args.tenant)
    template_id = args.template_id
    if not template_id:
        template_id = create_template(redis_client(settings.redis_url), tenant.name, jbsim.DEMO_TEMPLATE)[
            "id"
        ]
    contacts = jbsim.make_contacts(args.contacts)
    jbsim.seed_subscriptions(tenant.rokt_api_base_url, tenant.rokt_account_code, contacts)
    journey = f"jb-simulate-{args.tenant}"
    activity = args.activity_id or f"activity-{template_id}"
    payloads = [jbsim.execute_payload(c, template_id, journey, activity) for c in contacts]
    base = (args.url or settings.public_base_url).rstrip("/")
    result = jbsim.drive(
        f"{base}/t/{tenant.name}/activity/execute",
        tenant.jb_jwt_secret,
        payloads,
        concurrency=args.concurrency,
        retries=args.retries,
        timeout_ms=args.timeout_ms,
    )
    print(
        json.dumps(
            {
                "sent": result.sent,
                "ok": result.ok,
                "non_200": result.non_200,
                "duplicates_sent": result.duplicates_sent,
                "retries": result.retries,
                "statuses": result.statuses,
                "p50_ms": round(result.percentile(50), 1),
                "p99_ms": round(result.percentile(99), 1),
            },
            indent=2,
        )
    )
    return 0 if result.non_200 == 0 else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.sandbox.chaos import parse_scenarios
    from pipeline.sandbox.demo import run_demo

    try:
        chaos = parse_scenarios(args.chaos)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(143)  # unwinds run_demo's finally: every child process is stopped

    signal.signal(signal.SIGTERM, stop)
    report = run_demo(args.contacts, Path(args.report), workers=args.workers, chaos=chaos)
    healthy = report["lost"] == 0 and report["rokt"]["duplicate_calendar_entries"] == 0
    return 0 if healthy else 1


def cmd_templates(args: argparse.Namespace) -> int:
    from pipeline.store import redis_client
    from pipeline.templates import create_template, list_templates

    settings, tenant = _settings_tenant(args.tenant)
    r = redis_client(settings.redis_url)
    if args.action == "list":
        for template in list_templates(r, tenant.name):
            print(json.dumps(template, sort_keys=True))
        return 0
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        document = json.loads(text)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: template file is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        stored = create_template(r, tenant.name, document)
    except ValidationError as exc:
        print(json.dumps({"error": "invalid_template", "fields": exc.messages}), file=sys.stderr)
        return 2
    print(stored["id"])
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
            dispatch.enqueue_execution,
            dispatch.enqueue_webhook,
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
    report = reconcile(Runtime(settings), tenant.name, dispatch.enqueue_execution, dispatch.enqueue_webhook)
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

    sandbox = sub.add_parser("sandbox", help="Rokt and SFMC simulators in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--rokt-port", type=int, default=9101)
    sandbox.add_argument("--sfmc-port", type=int, default=9102)
    sandbox.add_argument("--env-file", help="write the settings that point the service at them")
    sandbox.set_defaults(func=cmd_sandbox)

    jb = sub.add_parser("jb-simulate", help="drive executes the way Journey Builder does")
    jb.add_argument("--tenant", required=True)
    jb.add_argument("--contacts", type=int, required=True)
    jb.add_argument("--concurrency", type=int, default=50)
    jb.add_argument("--retries", type=int, default=2)
    jb.add_argument("--timeout-ms", type=int, default=10000)
    jb.add_argument("--url", help="service base URL (default PUBLIC_BASE_URL)")
    jb.add_argument("--template-id", help="default: create the demo template")
    jb.add_argument("--activity-id", help="default: derived from the template id")
    jb.set_defaults(func=cmd_jb_simulate)

    demo = sub.add_parser("demo", help="the whole stack on embedded defaults, one journey, a report")
    demo.add_argument("--contacts", type=int, default=1000)
    demo.add_argument("--report", default="demo-report.json")
    demo.add_argument("--workers", type=int, default=8, help="Celery worker concurrency")
    demo.add_argument("--chaos", help="kill-workers,restart-redis,rokt-faults,sfmc-faults (any of them)")
    demo.set_defaults(func=cmd_demo)

    backfill = sub.add_parser("backfill", help="load existing subscriptions into SFMC before go-live")
    backfill.add_argument("--tenant", required=True)
    backfill.add_argument("--from", dest="source", required=True, help="subscriptions.csv or .jsonl")
    backfill.add_argument(
        "--async-threshold", type=int, default=5000, help="records from which the async rows API is used"
    )
    backfill.set_defaults(func=cmd_backfill)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tenant", required=True)
        p.add_argument("--stage", help="render, create_event, confirm, record_status, release, webhook, ...")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
