"""What several commands share (the exit codes, the `--tenant` argument and its lookup, the
duration type of `--older-than`).

Exit codes: 0 done, `EXIT_PARTIAL` done only in part (or unhealthy, or a purge waiting for
--yes), `EXIT_BAD_INPUT` bad input or settings the service refuses, `EXIT_REDIS_UNREACHABLE`.
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

EXIT_PARTIAL = 1  # done only in part; unhealthy; a purge waiting for --yes
EXIT_BAD_INPUT = 2
EXIT_REDIS_UNREACHABLE = 3


def add_tenant_argument(p: argparse.ArgumentParser, **options: Any) -> None:
    """The required `--tenant NAME` of a command that works on one tenant."""
    p.add_argument(
        "--tenant", required=True, help="the tenant's name (see `rokt-sfmc tenants list`)", **options
    )


def settings_tenant(name: str):
    """The settings and the tenant (pinned or from the registry), or exit saying which exist."""
    from pipeline.settings import get_settings
    from pipeline.tenancy.handles import Runtime

    settings = get_settings()
    registry = Runtime(settings).registry
    tenant = registry.get(name)
    if tenant is None:
        raise SystemExit(f"unknown tenant {name!r} (known: {', '.join(registry.names())})")
    return settings, tenant


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` (an argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a number and one of s, m, h, d, w (e.g. 30d, 12h)")
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
