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


def _after_update(settings, tenant: str, template_id: str, apply_to_sent: bool) -> None:
    """The events already sent of the template: corrected with --apply-to-sent (a job, printed on
    stderr), else counted, so the edit never silently leaves them behind."""
    from pipeline.infra import dispatch
    from pipeline.journeys import event_jobs
    from pipeline.tenancy.handles import Runtime
    from pipeline.vocabulary import JobKind

    rt = Runtime(settings)
    if apply_to_sent:
        job = event_jobs.start_job(
            rt, tenant, JobKind.CORRECT, started_by="CLI", template_id=template_id, reason="template edited"
        )
        dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
        print(
            f"correcting the events already sent: job {job.job_id} (rokt-sfmc events jobs --watch)",
            file=sys.stderr,
        )
        return
    held = event_jobs.sent_count(rt, tenant, template_id)["held"]
    if held:
        print(
            f"{held} event(s) already sent with this template keep their content: correct them with "
            f"`rokt-sfmc events correct --tenant {tenant} --template {template_id}` "
            "(or update with --apply-to-sent)",
            file=sys.stderr,
        )


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
            from pipeline.journeys import event_jobs

            try:  # the template may not change under a running correction or cancel of it
                event_jobs.ensure_no_job_on(r, tenant.name, args.id)
            except event_jobs.TemplateJobRunning as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            stored = templates.update_template(r, tenant.name, args.id, document)
            print(json.dumps(stored, indent=2, sort_keys=True))
            _after_update(settings, tenant.name, args.id, args.apply_to_sent)
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
    update.add_argument(
        "--apply-to-sent",
        action="store_true",
        help="also correct the events already sent with this template (a correction job: only "
        "events whose content changes are updated at Rokt); without it, says how many keep the old content",
    )
    update.set_defaults(func=cmd_templates)
    delete = actions.add_parser("delete", help="delete a template no unfinished execution uses")
    add_tenant_argument(delete)
    delete.add_argument("id", help=template_id)
    delete.set_defaults(func=cmd_templates)
