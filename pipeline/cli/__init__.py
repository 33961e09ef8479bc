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
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

import redis

from pipeline.cli import (
    api_keys,
    backfill,
    dead_letters,
    events,
    health,
    report,
    serve,
    status,
    templates,
    tenants,
    upkeep,
)
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_REDIS_UNREACHABLE

# Installed packages add commands through this entry-point group (setup.cfg): the sandbox's
# sandbox, jb-simulate and demo come from pipeline/sandbox/cli.py, which the product never imports.
COMMANDS_GROUP = "rokt_sfmc.commands"
# One module of this package per command group, each adding its subparsers with `register(sub)`,
# in the order `rokt-sfmc --help` lists them.
GROUPS = (serve, backfill, dead_letters, upkeep, report, templates, events, api_keys, status, health, tenants)


def _version() -> str:
    try:
        return version("rokt-sfmc")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser(installed: bool = True) -> argparse.ArgumentParser:
    """`installed`: also the commands of other installed packages (the sandbox's)."""
    parser = argparse.ArgumentParser(
        prog="rokt-sfmc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
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
    module = getattr(args.func, "__module__", "")
    if module != __name__ and not module.startswith(f"{__name__}."):
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
