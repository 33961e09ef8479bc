"""The sandbox's commands on `rokt-sfmc`: sandbox, jb-simulate, demo.

`pipeline/cli.py` never imports this package: it finds `register` through the
`rokt_sfmc.commands` entry-point group (setup.cfg) and lets it add these subcommands. As in
the product's CLI, each command imports what it needs inside its function (heavy imports).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the sandbox's subcommands to the `rokt-sfmc` parser."""
    sandbox = sub.add_parser("sandbox", help="Rokt and SFMC simulators in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--rokt-port", type=int, default=9101, help="Rokt simulator port (default 9101)")
    sandbox.add_argument("--sfmc-port", type=int, default=9102, help="SFMC simulator port (default 9102)")
    sandbox.add_argument("--env-file", help="write the settings that point the service at them")
    sandbox.set_defaults(func=cmd_sandbox)

    jb = sub.add_parser("jb-simulate", help="drive executes the way Journey Builder does")
    jb.add_argument("--tenant", required=True, help="the tenant whose activity is executed")
    jb.add_argument("--contacts", type=int, required=True, help="how many contacts to send through execute")
    jb.add_argument("--concurrency", type=int, default=50, help="executes in flight at once (JB: up to 50)")
    jb.add_argument(
        "--retries", type=int, default=2, help="retries of a failed execute, as Journey Builder does"
    )
    jb.add_argument("--timeout-ms", type=int, default=10000, help="execute timeout in milliseconds")
    jb.add_argument("--url", help="service base URL (default PUBLIC_BASE_URL)")
    jb.add_argument("--template-id", help="default: create the demo template")
    jb.add_argument("--activity-id", help="default: derived from the template id")
    jb.set_defaults(func=cmd_jb_simulate)

    demo = sub.add_parser("demo", help="the whole stack on embedded defaults, one journey, a report")
    demo.add_argument("--contacts", type=int, default=1000, help="contacts in the journey (default 1000)")
    demo.add_argument("--report", default="demo-report.json", help="where the JSON report goes")
    demo.add_argument("--workers", type=int, default=8, help="Celery worker concurrency")
    scenarios = "kill-workers,restart-redis,crash-redis,rokt-faults,sfmc-faults"
    demo.add_argument("--chaos", help=f"{scenarios} (any of them)")
    demo.set_defaults(func=cmd_demo)


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


def cmd_jb_simulate(args: argparse.Namespace) -> int:
    import requests

    from pipeline.sandbox import jbsim
    from pipeline.settings import get_settings
    from pipeline.store import redis_client
    from pipeline.templates import TemplateNotFound, create_template, get_template

    settings = get_settings()
    tenant = settings.tenant(args.tenant)
    if tenant is None:
        raise SystemExit(f"unknown tenant {args.tenant!r} (known: {', '.join(settings.tenants)})")
    r = redis_client(settings.redis_url)
    if args.template_id:
        try:
            template = get_template(r, tenant.name, args.template_id)
        except TemplateNotFound as exc:
            raise SystemExit(f"error: {exc}") from exc
    else:
        template = create_template(r, tenant.name, jbsim.DEMO_TEMPLATE)
    base = (args.url or settings.public_base_url).rstrip("/")
    # as Journey Builder does: read the service's config.json, then the activity our UI saves
    # (placeholders auto-matched to the demo entry fields, City to "Home City")
    config = requests.get(f"{base}/t/{tenant.name}/activity/config.json", timeout=10)
    config.raise_for_status()
    try:
        activity = jbsim.demo_activity(
            template["id"],
            jbsim.DEMO_EVENT_KEY,
            "",
            config=config.json(),
            activity_id=args.activity_id or f"activity-{template['id']}",
            template=template,
            release_on="accepted",
        )
    except ValueError as exc:
        raise SystemExit(
            f"error: template {template['id']} cannot be mapped to the demo entry source: {exc}"
        ) from exc
    contacts = jbsim.make_contacts(args.contacts)
    jbsim.seed_subscriptions(tenant.rokt_api_base_url, tenant.rokt_account_code, contacts)
    journey = f"jb-simulate-{args.tenant}"
    payloads = [jbsim.execute_payload(c, activity, journey, jbsim.DEMO_EVENT_KEY) for c in contacts]
    result = jbsim.drive(
        f"{base}/t/{tenant.name}/activity/execute",
        tenant.jb_jwt_secret,
        payloads,
        concurrency=args.concurrency,
        retries=args.retries,
        timeout_ms=args.timeout_ms,
    )
    print(json.dumps(result.summary(), indent=2))
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
        raise SystemExit(143)  # unwinds run_demo's `with Stack`: every child process is stopped

    signal.signal(signal.SIGTERM, stop)
    report = run_demo(args.contacts, Path(args.report), workers=args.workers, chaos=chaos)
    healthy = report["lost"] == 0 and report["rokt"]["duplicate_calendar_entries"] == 0
    return 0 if healthy else 1
