"""`rokt-sfmc serve`: the web app on Flask's own server (production runs gunicorn)."""

from __future__ import annotations

import argparse


def cmd_serve(args: argparse.Namespace) -> int:
    from pipeline.web import create_app

    create_app().run(host=args.host, port=args.port, threaded=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="the web app (production: gunicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    serve.set_defaults(func=cmd_serve)
