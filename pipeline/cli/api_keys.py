"""`rokt-sfmc api-keys ...`: a tenant's API keys for `/t/<tenant>/api/`, created (the key shown
once: it is stored hashed), listed and revoked."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.cli.common import add_tenant_argument, settings_tenant


def cmd_api_keys(args: argparse.Namespace) -> int:
    from pipeline.infra.redis_clients import redis_client
    from pipeline.tenancy import apikeys

    settings, tenant = settings_tenant(args.tenant)
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


def register(sub: argparse._SubParsersAction) -> None:
    api_keys = sub.add_parser("api-keys", help="per-tenant API keys for /t/<tenant>/api/")
    key_actions = api_keys.add_subparsers(dest="action", required=True)
    key_create = key_actions.add_parser("create", help="create a key; prints it once")
    add_tenant_argument(key_create)
    key_create.add_argument("--label", default="", help="what the key is for")
    key_create.set_defaults(func=cmd_api_keys)
    key_list = key_actions.add_parser(
        "list", help="the tenant's keys, one JSON object a line (never the key)"
    )
    add_tenant_argument(key_list)
    key_list.set_defaults(func=cmd_api_keys)
    key_revoke = key_actions.add_parser("revoke", help="revoke a key by its id")
    add_tenant_argument(key_revoke)
    key_revoke.add_argument("id", help="the key's id (from `api-keys list`)")
    key_revoke.set_defaults(func=cmd_api_keys)
