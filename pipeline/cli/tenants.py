"""`rokt-sfmc tenants ...`: the tenant registry for operators (App Settings is the admins' way).

Secrets never travel in argv (a process list shows it): `--set` refuses them, `--secrets-file`
(JSON object, `-` for stdin) carries them. Output is JSON, one object a line; `check` exits 1
when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from pipeline.settings import SECRET_TENANT_FIELDS, TENANT_KEYS, Tenant
from pipeline.vocabulary import TenantStatus


def describe(tenant: Tenant, missing: list[str]) -> dict[str, Any]:
    """What an operator may see of a tenant: every setting, each secret only as set or not."""
    shown: dict[str, Any] = {}
    for name, value in asdict(tenant).items():
        if name in SECRET_TENANT_FIELDS:
            shown[name] = "set" if value else ""
        else:
            shown[name] = str(value) if hasattr(value, "value") else value
    shown["missing"] = missing
    return shown


def _values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in TENANT_KEYS:
            raise SystemExit(
                f"error: --set {item!r}: expected KEY=VALUE with KEY one of {', '.join(TENANT_KEYS)}"
            )
        if key in SECRET_TENANT_FIELDS:
            raise SystemExit(
                f"error: --set {key}: secrets go in --secrets-file (argv is visible to every user)"
            )
        values[key] = value
    if args.secrets_file:
        try:
            text = (
                sys.stdin.read() if args.secrets_file == "-" else Path(args.secrets_file).read_text("utf-8")
            )
            secrets = json.loads(text)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: --secrets-file: {exc}") from exc
        if not isinstance(secrets, dict) or set(secrets) - SECRET_TENANT_FIELDS:
            raise SystemExit(
                f"error: --secrets-file: a JSON object of {', '.join(sorted(SECRET_TENANT_FIELDS))}"
            )
        values.update(secrets)
    return values


def _check(rt: Any, name: str) -> dict[str, Any]:
    """Both vendors' tokens (fetched fresh) and the data extensions, each with why it failed."""
    from pipeline.clients import tokens
    from pipeline.clients.errors import ClientError
    from pipeline.subscriptions import dataextensions

    tenant = rt.tenant(name)
    result: dict[str, Any] = {"tenant": name, "status": str(tenant.status)}
    for vendor, client in (("rokt", rt.rokt), ("sfmc", rt.sfmc)):
        try:
            client(name).check_credentials()
            result[vendor] = {"ok": True}
        except ClientError as exc:
            result[vendor] = {"ok": False, "reason": exc.reason}
    try:
        missing = dataextensions.missing_at_sfmc(rt, name)
        result["data_extensions"] = {"ok": not missing, "missing": missing}
    except ClientError as exc:
        result["data_extensions"] = {"ok": False, "reason": exc.reason}
    rejected = tokens.rejection(rt.redis, name, "sfmc")  # read after the check, which may clear it
    if rejected:
        result["reconnect_needed"] = rejected["reason"]
    missing_settings = rt.registry.missing(name)
    if missing_settings:
        result["missing_settings"] = missing_settings
    checks = [result["rokt"], result["sfmc"], result["data_extensions"]]
    result["ok"] = all(c["ok"] for c in checks) and not rejected and not missing_settings
    return result


def cmd_tenants(args: argparse.Namespace) -> int:
    from pipeline.settings import get_settings
    from pipeline.tenancy.handles import Runtime, UnknownTenant
    from pipeline.tenancy.tenants import TenantPinned

    rt = Runtime(get_settings())
    registry = rt.registry
    action = args.action
    try:
        if action == "list":
            names = registry.names()
            for name in names:
                print(json.dumps(describe(registry.get(name), registry.missing(name)), sort_keys=True))
            if not names:  # stdout stays empty for scripts; a person is told why
                print(
                    "no tenants (App Settings' sign-in or `rokt-sfmc tenants add` adds one)", file=sys.stderr
                )
            return 0
        if action == "reseal":
            print(json.dumps({"resealed": registry.reseal()}))
            return 0
        name = args.tenant
        if action == "add":
            tenant = registry.add(name, _values(args))
        elif action == "update":
            tenant = registry.update(name, _values(args))
        elif action in ("disable", "enable"):
            status = TenantStatus.DISABLED if action == "disable" else TenantStatus.ACTIVE
            tenant = registry.set_status(name, status)
        elif action == "check":
            names = [name] if name else registry.names()
            results = [_check(rt, each) for each in names]
            for result in results:
                print(json.dumps(result, sort_keys=True))
            return 0 if results and all(r["ok"] for r in results) else 1
        elif action == "erase":
            from pipeline.upkeep.tenant_erasure import erase_tenant

            if args.confirm != name:
                print(
                    "error: --confirm must repeat the tenant's name: nothing of it can be restored",
                    file=sys.stderr,
                )
                return 2
            print(json.dumps(erase_tenant(rt, name), sort_keys=True))
            return 0
        elif action == "install-data-extensions":
            from pipeline.subscriptions import dataextensions

            rt.tenant(name)
            progress = dataextensions.install(rt, name)
            print(json.dumps(progress, sort_keys=True))
            return 0 if progress.get("state") == "done" else 1
        else:  # show
            tenant = rt.tenant(name)
        print(json.dumps(describe(tenant, registry.missing(name)), sort_keys=True))
        return 0
    except UnknownTenant as exc:
        print(
            f"error: unknown tenant {exc.args[0]!r} (known: {', '.join(registry.names())})", file=sys.stderr
        )
    except TenantPinned as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ValidationError as exc:
        print(f"error: invalid settings: {json.dumps(exc.messages, sort_keys=True)}", file=sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 2


TENANT_HELP = "the tenant's name"


def register(sub: argparse._SubParsersAction) -> None:
    tenants = sub.add_parser("tenants", help="the brands this deployment serves (registry in Redis)")
    actions = tenants.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every tenant, one JSON object a line (secrets only as set)")
    show = actions.add_parser("show", help="one tenant (JSON)")
    for verb, text in (
        ("add", "a new tenant (pending until complete)"),
        ("update", "change a stored tenant"),
    ):
        command = actions.add_parser(verb, help=text)
        command.add_argument("--tenant", required=True, help=TENANT_HELP)
        command.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="a non-secret setting (repeat for more)"
        )
        command.add_argument("--secrets-file", help="JSON object of secret settings (- = stdin)")
    show.add_argument("--tenant", required=True, help=TENANT_HELP)
    for verb, text in (
        ("disable", "executes answer 503, queued work waits"),
        ("enable", "back to active (pending while settings are missing)"),
        ("install-data-extensions", "create the folder and data extensions in SFMC now"),
    ):
        actions.add_parser(verb, help=text).add_argument("--tenant", required=True, help=TENANT_HELP)
    erase = actions.add_parser(
        "erase",
        help="a disabled tenant's Redis keys, history-store rows and registry record (a brand that leaves)",
    )
    erase.add_argument("--tenant", required=True, help=TENANT_HELP)
    erase.add_argument("--confirm", required=True, help="the tenant's name again")
    check = actions.add_parser(
        "check", help="tokens of both vendors and the data extensions; exit 1 on a failure"
    )
    check.add_argument("--tenant", help="default: every tenant")
    actions.add_parser("reseal", help="seal every stored secret under the first SECRET_KEY (key rotation)")
    tenants.set_defaults(func=cmd_tenants)
