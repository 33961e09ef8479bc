"""`rokt-sfmc templates ...`: a tenant's event templates, created from a JSON file, listed, shown,
updated and deleted (one no unfinished execution uses)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from marshmallow import ValidationError

from pipeline.cli.common import add_tenant_argument, settings_tenant


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
    from pipeline.infra.redis_clients import redis_client
    from pipeline.journeys import templates
    from pipeline.stores.ledger import Ledger

    settings, tenant = settings_tenant(args.tenant)
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


def register(sub: argparse._SubParsersAction) -> None:
    templates = sub.add_parser("templates", help="manage event templates")
    actions = templates.add_subparsers(dest="action", required=True)
    template_id = "the template's id (tpl-...)"
    template_file = "template JSON file (- = stdin)"
    create = actions.add_parser("create", help="validate and store a template; prints its id")
    add_tenant_argument(create)
    create.add_argument("file", nargs="?", default="-", help=template_file)
    create.set_defaults(func=cmd_templates)
    listing = actions.add_parser("list", help="the tenant's templates, one JSON object a line")
    add_tenant_argument(listing)
    listing.set_defaults(func=cmd_templates)
    show = actions.add_parser("show", help="one template with its placeholders (JSON)")
    add_tenant_argument(show)
    show.add_argument("id", help=template_id)
    show.set_defaults(func=cmd_templates)
    update = actions.add_parser("update", help="replace a template's content (keeps its id)")
    add_tenant_argument(update)
    update.add_argument("id", help=template_id)
    update.add_argument("file", nargs="?", default="-", help=template_file)
    update.set_defaults(func=cmd_templates)
    delete = actions.add_parser("delete", help="delete a template no unfinished execution uses")
    add_tenant_argument(delete)
    delete.add_argument("id", help=template_id)
    delete.set_defaults(func=cmd_templates)
