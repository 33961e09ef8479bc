"""`rokt-sfmc events ...`: events already sent, corrected (`correct`), cancelled (`cancel`, with
`restore` for future contacts) or withdrawn from one contact's calendar (`remove`); the jobs
doing it watched (`jobs --watch`) and their record (`history`, `show`)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_PARTIAL, add_tenant_argument, settings_tenant

WATCH_SECONDS = 1.0


def _who() -> str:
    try:
        return f"CLI ({getpass.getuser()})"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "CLI"


def _start(rt: Any, tenant: str, kind: Any, **scope: Any) -> Any:
    from pipeline.infra import dispatch
    from pipeline.journeys import event_jobs

    job = event_jobs.start_job(rt, tenant, kind, started_by=_who(), **scope)
    dispatch.enqueue_event_job_step(tenant, job.job_id, event_jobs.PLAN)
    return job


def cmd_events(args: argparse.Namespace) -> int:
    from pipeline.journeys import event_jobs, templates
    from pipeline.tenancy.handles import Runtime
    from pipeline.vocabulary import JobKind

    settings, tenant = settings_tenant(args.tenant)
    rt = Runtime(settings)
    name = tenant.name
    try:
        if args.action in ("sent", "cancel"):  # a count of 0 for a mistyped id would mislead
            templates.get_template(rt.redis, name, args.template)
        if args.action == "sent":
            print(json.dumps({"templateId": args.template, **event_jobs.sent_count(rt, name, args.template)}))
            return 0
        if args.action == "correct":
            job = _start(rt, name, JobKind.CORRECT, template_id=args.template, reason="correction (CLI)")
        elif args.action == "cancel":
            held = event_jobs.sent_count(rt, name, args.template)["held"]
            if not args.yes:
                print(
                    f"{held} event(s) of {args.template} are in calendars: this deletes them all and "
                    "archives the template. Run again with --yes to do it.",
                    file=sys.stderr,
                )
                return EXIT_PARTIAL
            job = _start(rt, name, JobKind.CANCEL, template_id=args.template, reason=args.reason)
        elif args.action == "restore":
            event_jobs.restore(rt.redis, name, args.template)
            print(f"restored {args.template}: contacts who reach its step from now on are sent its event")
            return 0
        elif args.action == "remove":
            job = _start(
                rt,
                name,
                JobKind.WITHDRAW,
                contact_key=args.contact,
                template_id=args.template,
                reason=args.reason,
            )
        elif args.action == "show":
            found = event_jobs.get_job(rt.redis, name, args.job)
            if found is None:
                print(f"error: no event job {args.job!r}", file=sys.stderr)
                return EXIT_PARTIAL
            notes = event_jobs.notes(rt.redis, name, args.job)
            print(json.dumps({**found.as_dict(), "notes": notes}, indent=2, sort_keys=True))
            return 0
        elif args.action == "history":
            for item in event_jobs.list_jobs(rt.redis, name, limit=args.limit):
                print(json.dumps(item.as_dict(), sort_keys=True))
            return 0
        else:  # jobs
            return _jobs(rt, name, args.watch)
    except (templates.TemplateNotFound, event_jobs.CancelRunning, event_jobs.TemplateJobRunning) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except event_jobs.ScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(job.as_dict(), sort_keys=True))
    return 0


def _jobs(rt: Any, tenant: str, watch: bool) -> int:
    """The running jobs (and those ended in the last watch) with a progress bar each."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.journeys import event_jobs

    running = event_jobs.list_jobs(rt.redis, tenant, running_only=True)
    if not watch:
        for job in running:
            print(json.dumps(job.as_dict(), sort_keys=True))
        if not running:
            print("no event job running", file=sys.stderr)
        return 0
    console = Console(stderr=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars: dict[str, Any] = {}
        ids = [job.job_id for job in running]
        while ids:
            still = []
            for job_id in ids:
                job = event_jobs.get_job(rt.redis, tenant, job_id)
                if job is None:
                    continue
                shown = job.as_dict()
                detail = ", ".join(f"{k} {v}" for k, v in shown["outcomes"].items() if v) or shown["state"]
                label = f"{shown['kind']} {job_id}"
                if job_id not in bars:
                    bars[job_id] = progress.add_task(label, total=max(shown["total"], 1), detail=detail)
                progress.update(
                    bars[job_id], total=max(shown["total"], 1), completed=shown["done"], detail=detail
                )
                if shown["state"] != "done":
                    still.append(job_id)
            ids = still
            if ids:
                time.sleep(WATCH_SECONDS)
    if not bars:
        print("no event job running", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    events = sub.add_parser("events", help="events already sent: correct, cancel, remove; their jobs")
    actions = events.add_subparsers(dest="action", required=True)
    template_help = "the template's id (tpl-...)"

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text)
        add_tenant_argument(parser)
        parser.set_defaults(func=cmd_events)
        return parser

    action("sent", "how many events of a template Rokt holds (JSON)").add_argument(
        "--template", required=True, help=template_help
    )
    action("correct", "update the template's sent events to its current content (starts a job)").add_argument(
        "--template", required=True, help=template_help
    )
    cancel = action("cancel", "delete every event of the template Rokt holds and archive it (starts a job)")
    cancel.add_argument("--template", required=True, help=template_help)
    cancel.add_argument("--reason", default="", help="why: shown in each cancelled contact's status row")
    cancel.add_argument("--yes", action="store_true", help="do it (without: say how many and stop)")
    action("restore", "an archived template serves future contacts again").add_argument(
        "--template", required=True, help=template_help
    )
    remove = action("remove", "remove one contact's events from their subscriptions (starts a job)")
    remove.add_argument("--contact", required=True, help="the contact key")
    remove.add_argument("--template", default=None, help="only this template's events")
    remove.add_argument("--reason", default="", help="why (kept with the job)")
    jobs = action("jobs", "the running event jobs (JSON lines), or with --watch a progress bar each")
    jobs.add_argument("--watch", action="store_true", help="follow them until they end")
    history = action("history", "every event job, newest first: what, who, when, outcomes (JSON lines)")
    history.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    action("show", "one event job with why it kept or failed executions (JSON)").add_argument(
        "job", help="the job's id (job-...)"
    )
