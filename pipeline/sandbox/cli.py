"""The sandbox's commands on `rokt-sfmc`: sandbox (and `sandbox up`), jb-simulate, demo.

`pipeline/cli/__init__.py` never imports this package: it finds `register` through the
`rokt_sfmc.commands` entry-point group (setup.cfg) and lets it add these subcommands. As in
the product's CLI, each command imports what it needs inside its function (heavy imports).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the sandbox's subcommands to the `rokt-sfmc` parser."""
    sandbox = sub.add_parser("sandbox", help="Rokt and SFMC simulators in the foreground")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--rokt-port", type=int, default=9101, help="Rokt simulator port (default 9101)")
    sandbox.add_argument("--sfmc-port", type=int, default=9102, help="SFMC simulator port (default 9102)")
    sandbox.add_argument(
        "--env-file", help="write the settings that point `serve`, workers and the CLI at them"
    )
    sandbox.set_defaults(func=cmd_sandbox)
    actions = sandbox.add_subparsers(dest="action", required=False)
    up = actions.add_parser(
        "up",
        help="the whole stack and the Marketing Cloud and Journey Builder pages, until Ctrl-C",
    )
    up.add_argument(
        "--state-dir",
        help="where the run's settings and the saved activity go "
        "(default: $ROKT_SFMC_SANDBOX_DIR or .sandbox)",
    )
    up.add_argument("--workers", type=int, default=2, help="worker-render concurrency (default 2)")
    up.add_argument("--rokt-threads", type=int, default=16, help="worker-rokt threads (default 16)")
    up.set_defaults(func=cmd_sandbox_up)

    jb = sub.add_parser("jb-simulate", help="drive executes the way Journey Builder does")
    jb.add_argument(
        "--tenant",
        help="the tenant (any of `rokt-sfmc tenants list`; default: the saved activity's)",
    )
    jb.add_argument(
        "--activity",
        help="a saved activity (JSON, as JB holds it); default: the last one `sandbox up` saved",
    )
    jb.add_argument(
        "--state-dir",
        help="the `sandbox up` state directory whose env and activity to use "
        "(default: $ROKT_SFMC_SANDBOX_DIR or .sandbox)",
    )
    jb.add_argument("--contacts", type=int, required=True, help="how many contacts to send through execute")
    jb.add_argument("--concurrency", type=int, default=50, help="executes in flight at once (JB: up to 50)")
    jb.add_argument(
        "--retries", type=int, default=2, help="retries of a failed execute, as Journey Builder does"
    )
    jb.add_argument("--timeout-ms", type=int, default=10000, help="execute timeout in milliseconds")
    jb.add_argument("--url", help="service base URL (default PUBLIC_BASE_URL)")
    jb.add_argument("--template-id", help="without an activity: this template (default: create the demo one)")
    jb.add_argument(
        "--activity-id", help="without an activity: its id (default: derived from the template id)"
    )
    jb.set_defaults(func=cmd_jb_simulate)

    demo = sub.add_parser("demo", help="the whole stack on embedded defaults, one journey, a report")
    demo.add_argument("--contacts", type=int, default=1000, help="contacts in the journey (default 1000)")
    demo.add_argument("--report", default="demo-report.json", help="where the JSON report goes")
    demo.add_argument("--workers", type=int, default=8, help="Celery worker concurrency")
    from pipeline.sandbox.chaos import SCENARIOS  # light: requests only

    scenarios = ",".join(SCENARIOS)
    demo.add_argument("--chaos", help=f"{scenarios} (any of them)")
    demo.set_defaults(func=cmd_demo)


def env_file_values(rokt_url: str, sfmc_url: str) -> dict[str, str]:
    """What `sandbox --env-file` writes: the tenant `default` pointed at the simulators, SANDBOX=1
    (their published secrets are accepted only then) and the app's sign-in against the SFMC one;
    `serve`, `templates create` and the workers start with these (and a REDIS_URL)."""
    from pipeline.sandbox import sandbox_app_env, sandbox_env

    return {**sandbox_env(rokt_url, sfmc_url), **sandbox_app_env(rokt_url, sfmc_url)}


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox import start_sandbox
    from pipeline.sandbox.live import env_text, write_private
    from pipeline.web.logs import install_log_redaction

    install_log_redaction()  # its request log prints contact keys (emails) in URL paths
    sandbox = start_sandbox(args.host, args.rokt_port, args.sfmc_port)
    if args.env_file:
        write_private(
            Path(args.env_file), env_text(env_file_values(sandbox.rokt_server.url, sandbox.sfmc_server.url))
        )
        print(f"settings written to {args.env_file}")
    print(f"Rokt simulator: {sandbox.rokt_server.url}")
    print(f"SFMC simulator: {sandbox.sfmc_server.url}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    sandbox.stop()
    return 0


def cmd_sandbox_up(args: argparse.Namespace) -> int:
    from pipeline.sandbox.live import run_up, state_dir

    return run_up(state_dir(args.state_dir), render_concurrency=args.workers, rokt_threads=args.rokt_threads)


def _use_sandbox_env(state: Path) -> None:
    """The settings of a running `sandbox up` (its state dir's env file) where this shell sets
    none, so jb-simulate in another shell reaches the same Redis, tenants and web app."""
    from pipeline.sandbox.live import ENV_FILE, read_env_file
    from pipeline.settings import get_settings

    path = state / ENV_FILE
    if path.exists():
        for key, value in read_env_file(path).items():
            os.environ.setdefault(key, value)
        get_settings.cache_clear()  # read before the command ran (logging): read them again


def _saved_activity(args: argparse.Namespace, state: Path) -> dict | None:
    """--activity, else the last activity `sandbox up` saved (unless --template-id or another
    --tenant asks for the demo activity); None for the demo activity."""
    from pipeline.sandbox.live import ACTIVITY_FILE, activity_tenant

    path = Path(args.activity) if args.activity else state / ACTIVITY_FILE
    if not args.activity and (args.template_id or not path.exists()):
        return None
    try:
        activity = json.loads(path.read_text(encoding="utf-8"))
        tenant, _url = activity_tenant(activity)
    except OSError as exc:
        raise SystemExit(f"error: cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, AttributeError, ValueError) as exc:
        raise SystemExit(f"error: {path} is not a saved activity: {exc}") from exc
    if args.tenant and args.tenant != tenant:
        if args.activity:
            raise SystemExit(f"error: {path} is tenant {tenant!r}'s activity, not {args.tenant!r}'s")
        return None
    return activity


def cmd_jb_simulate(args: argparse.Namespace) -> int:
    import requests

    from pipeline.infra.redis_clients import redis_client
    from pipeline.sandbox import jbsim
    from pipeline.sandbox.live import activity_tenant, state_dir
    from pipeline.settings import get_settings
    from pipeline.tenancy.handles import Runtime

    state = state_dir(args.state_dir)
    _use_sandbox_env(state)
    activity = _saved_activity(args, state)
    name = activity_tenant(activity)[0] if activity is not None else args.tenant
    if not name:
        raise SystemExit("error: --tenant, or --activity (or a saved one: `rokt-sfmc sandbox up`)")
    settings = get_settings()
    registry = Runtime(settings).registry
    tenant = registry.get(name)
    if tenant is None:
        raise SystemExit(f"error: unknown tenant {name!r} (known: {', '.join(registry.names())})")
    if not (tenant.jb_jwt_secret and tenant.rokt_account_code):
        raise SystemExit(f"error: tenant {name!r} has no JWT signing secret or Rokt account code yet")
    base = (args.url or settings.public_base_url).rstrip("/")
    if activity is not None:
        execute_url = f"{base}/t/{tenant.name}/activity/execute" if args.url else activity_tenant(activity)[1]
        journey = f"jb-simulate-{activity['id']}-{int(time.time())}"  # new contacts each run
    else:
        activity = _demo_activity(args, tenant.name, base, redis_client(settings.redis_url))
        execute_url = f"{base}/t/{tenant.name}/activity/execute"
        journey = f"jb-simulate-{tenant.name}"
    contacts = jbsim.make_contacts(args.contacts)
    try:
        jbsim.seed_subscriptions(tenant.rokt_api_base_url, tenant.rokt_account_code, contacts)
    except requests.RequestException as exc:
        raise SystemExit(f"error: the Rokt simulator at {tenant.rokt_api_base_url}: {exc}") from exc
    payloads = [
        jbsim.execute_payload(c, activity, journey, fields=jbsim.activity_fields(c, activity))
        for c in contacts
    ]
    result = jbsim.drive(
        execute_url,
        tenant.jb_jwt_secret,
        payloads,
        concurrency=args.concurrency,
        retries=args.retries,
        timeout_ms=args.timeout_ms,
    )
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.non_200 == 0 else 1


def _demo_activity(args: argparse.Namespace, tenant: str, base: str, r) -> dict:
    """The demo template (or --template-id) mapped as the UI maps it to the demo entry source,
    on the service's own config.json, as JB would read it."""
    import requests

    from pipeline.journeys.templates import TemplateNotFound, create_template, get_template
    from pipeline.sandbox import jbsim

    if args.template_id:
        try:
            template = get_template(r, tenant, args.template_id)
        except TemplateNotFound as exc:
            raise SystemExit(f"error: {exc}") from exc
    else:
        template = create_template(r, tenant, jbsim.DEMO_TEMPLATE)
    config = requests.get(f"{base}/t/{tenant}/activity/config.json", timeout=10)
    config.raise_for_status()
    try:
        return jbsim.demo_activity(
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
    from pipeline.sandbox.postgres import PostgresUnavailable

    try:
        report = run_demo(args.contacts, Path(args.report), workers=args.workers, chaos=chaos)
    except PostgresUnavailable as exc:  # kill-postgres on a machine without PostgreSQL
        print(f"error: --chaos kill-postgres: {exc}", file=sys.stderr)
        return 2
    healthy = report["lost"] == 0 and report["rokt"]["duplicate_calendar_entries"] == 0
    return 0 if healthy else 1
