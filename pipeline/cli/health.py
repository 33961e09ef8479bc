"""`rokt-sfmc healthcheck`: exit 0 when a service is healthy, 1 when not, with one line why.

Docker's HEALTHCHECK contract, so Redis unreachable is unhealthy too (1, not 3). The checks
themselves are `pipeline.ops.heartbeats`' (`http_check`, `worker_check`, `beat_check`); this
module picks one, prints its line and sets the exit code.
"""

from __future__ import annotations

import argparse
import sys

import redis

from pipeline.cli.common import EXIT_PARTIAL


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """One line, exit 0 healthy or 1 not (Docker's contract: Redis unreachable is unhealthy too)."""
    import socket

    from pipeline.infra.redis_clients import redis_client
    from pipeline.ops import heartbeats
    from pipeline.settings import get_settings

    settings = get_settings()
    if args.service == "web":
        healthy, why = heartbeats.http_check(
            f"{(args.url or settings.public_base_url).rstrip('/')}/healthz", "web"
        )
    elif args.service == "exporter":
        port = args.port if args.port is not None else settings.exporter_port
        base = (args.url or f"http://127.0.0.1:{port}").rstrip("/")
        healthy, why = heartbeats.http_check(f"{base}/healthz", "exporter")
    else:
        r = redis_client(settings.redis_url)
        try:
            if args.service == "worker":
                healthy, why = heartbeats.worker_check(r, args.hostname or socket.gethostname())
            else:
                healthy, why = heartbeats.beat_check(r)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            healthy, why = False, f"Redis unreachable: {exc}"
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else EXIT_PARTIAL


def register(sub: argparse._SubParsersAction) -> None:
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
