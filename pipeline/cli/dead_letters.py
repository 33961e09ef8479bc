"""The dead-letter store for operators (`rokt-sfmc dlq list|show|stats|purge`) and its replay
(`rokt-sfmc replay`).

Letters waiting for a replay are read from Redis; `--replayed` reads those already replayed
from the history store (docs/history.md), and `show` looks there when no letter waits.

`dlq purge` lists what failed longer ago than `--older-than` and removes it only with --yes
(exit 1 while it waits for one); the selection and the removal are the store's
(`pipeline.stores.deadletters`). `replay` exits 1 unless every selected letter was replayed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from pipeline.cli.common import EXIT_PARTIAL, add_tenant_argument, duration, settings_tenant
from pipeline.vocabulary import OutboxKind, Stage


def _filter(args: argparse.Namespace):
    from pipeline.upkeep.replay import DeadLetterFilter

    return DeadLetterFilter(args.stage, args.error_class, args.journey, args.since, args.until)


def cmd_dlq(args: argparse.Namespace) -> int:
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.replay import list_dead_letters, list_replayed, show_dead_letter

    settings, tenant = settings_tenant(args.tenant)
    rt = Runtime(settings)
    listed = list_replayed if getattr(args, "replayed", False) else list_dead_letters
    if args.action == "show":
        letter = show_dead_letter(rt, tenant.name, args.id)
        if letter is None:  # replayed: the latest replay of the item, from the history store
            letter = next(reversed(rt.history.replayed_dead_letters(tenant.name, args.id)), None)
        if letter is None:
            print(f"error: no dead letter {args.id!r} for tenant {tenant.name!r}", file=sys.stderr)
            return 1
        print(json.dumps(letter, indent=2, sort_keys=True))
        return 0
    if args.action == "stats":
        stats = dead_letter_stats(listed(rt, tenant.name, _filter(args)))
        print(json.dumps({"tenant": tenant.name, **stats}, indent=2, sort_keys=True))
        return 0
    if args.action == "purge":
        return _purge(rt, tenant.name, args)
    for letter in listed(rt, tenant.name, _filter(args)):
        brief = {k: letter[k] for k in ("id", "stage", "errorClass", "attempts", "failedAt", "reason")}
        if "replayedAt" in letter:
            brief["replayedAt"] = letter["replayedAt"]
        print(json.dumps(brief, sort_keys=True))
    return 0


def dead_letter_stats(letters: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by stage (each by error class) and by error class, the oldest and newest failure."""
    by_stage: dict[str, Counter] = {}
    for letter in letters:
        by_stage.setdefault(letter["stage"], Counter())[letter["errorClass"]] += 1
    failed_at = sorted(letter["failedAt"] for letter in letters)
    return {
        "total": len(letters),
        "byStage": {
            stage: {"total": sum(classes.values()), "byErrorClass": dict(classes)}
            for stage, classes in sorted(by_stage.items())
        },
        "byErrorClass": dict(Counter(letter["errorClass"] for letter in letters)),
        "oldestFailedAt": failed_at[0] if failed_at else None,
        "newestFailedAt": failed_at[-1] if failed_at else None,
    }


def _purge(rt: Any, tenant: str, args: argparse.Namespace) -> int:
    """Dead letters that failed before now - --older-than (and match the filters): listed, and
    removed with --yes (`deadletters.purge_dead_letters`: retention, not a replay)."""
    from pipeline.stores import deadletters
    from pipeline.upkeep.replay import DeadLetterFilter

    cutoff = deadletters.cutoff_iso(args.older_than)
    where = DeadLetterFilter(args.stage, args.error_class, args.journey, None, None)
    doomed = deadletters.failed_before(rt.redis, tenant, cutoff, where.matches)
    summary = {"tenant": tenant, "failedBefore": cutoff, "matching": len(doomed)}
    if not args.yes:
        print(json.dumps({**summary, "ids": sorted(doomed)}, indent=2))
        if doomed:
            print(
                f"would remove {len(doomed)} dead letters: run again with --yes to remove them",
                file=sys.stderr,
            )
            return EXIT_PARTIAL
        return 0
    removed = deadletters.purge_dead_letters(rt.redis, tenant, doomed)
    print(json.dumps({**summary, "removed": removed}, indent=2))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Each letter on its own, so one that fails (SFMC refuses a contact again, say) is counted and
    the others still go; exit 1 unless every selected letter was replayed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from pipeline.clients.errors import ClientError
    from pipeline.infra import dispatch
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.replay import list_dead_letters, replay

    settings, tenant = settings_tenant(args.tenant)
    rt = Runtime(settings)
    letters = list_dead_letters(rt, tenant.name, _filter(args))
    result: dict[str, Any] = {
        "selected": 0,
        "replayed": 0,
        "skipped": 0,
        "failed": 0,
        "ids": [],
        "errors": {},
    }
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay" + (" (dry run)" if args.dry_run else ""), total=len(letters))
        for letter in letters:
            try:
                report = replay(
                    rt,
                    tenant.name,
                    [letter],
                    dispatch.redrive_execution,
                    dispatch.redrive_webhook,
                    dry_run=args.dry_run,
                )
            except (ClientError, RateLimited, KeyError, ValueError) as exc:
                result["selected"] += 1
                result["ids"].append(letter["id"])
                result["failed"] += 1
                result["errors"][letter["id"]] = (
                    getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                )
            else:
                for name in ("selected", "replayed", "skipped"):
                    result[name] += getattr(report, name)
                result["ids"].extend(report.ids)
            progress.advance(task)
    if result["selected"] and not args.dry_run:  # the replayed letters, to the history store now
        dispatch.schedule_flush(tenant.name, OutboxKind.HISTORY)
    print(json.dumps({**result, "dry_run": args.dry_run}, indent=2))
    missed = result["skipped"] + result["failed"]
    if missed and not args.dry_run:
        print(
            f"error: {missed} of {result['selected']} dead letters not replayed "
            f"({result['skipped']} stale or of an unknown stage, {result['failed']} failed)",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0


def _add_filter_arguments(p: argparse.ArgumentParser) -> None:
    add_tenant_argument(p)
    p.add_argument("--stage", choices=[str(stage) for stage in Stage], help="where it failed")
    p.add_argument("--error-class", help="permanent, retryable, throttled, unknown_outcome, ...")
    p.add_argument("--journey", help="journeyId of the executions")
    p.add_argument("--since", help="failed at or after (ISO 8601, UTC)")
    p.add_argument("--until", help="failed at or before (ISO 8601, UTC)")


_REPLAYED_HELP = "the letters already replayed (from the history store) instead of those waiting"


def register(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="the dead-letter store")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_actions.add_parser("list", help="one JSON line per dead letter")
    _add_filter_arguments(dlq_list)
    dlq_list.add_argument("--replayed", action="store_true", help=_REPLAYED_HELP)
    dlq_list.set_defaults(func=cmd_dlq)
    dlq_show = dlq_actions.add_parser("show", help="one dead letter in full")
    add_tenant_argument(dlq_show)
    dlq_show.add_argument("id", help="the dead letter's id (from `dlq list`)")
    dlq_show.set_defaults(func=cmd_dlq)
    dlq_stats = dlq_actions.add_parser(
        "stats", help="counts by stage and error class, oldest and newest failure (JSON)"
    )
    _add_filter_arguments(dlq_stats)
    dlq_stats.add_argument("--replayed", action="store_true", help=_REPLAYED_HELP)
    dlq_stats.set_defaults(func=cmd_dlq)
    dlq_purge = dlq_actions.add_parser(
        "purge", help="remove dead letters older than a duration; lists them and exits 1 without --yes"
    )
    add_tenant_argument(dlq_purge)
    dlq_purge.add_argument(
        "--older-than", type=duration, required=True, help="failed longer ago than this: 30d, 12h, 90m, 2w"
    )
    dlq_purge.add_argument("--stage", choices=[str(stage) for stage in Stage], help="only this stage")
    dlq_purge.add_argument("--error-class", help="only this error class (permanent, retryable, ...)")
    dlq_purge.add_argument("--journey", help="only dead letters of this journeyId")
    dlq_purge.add_argument("--yes", action="store_true", help="remove them (default: only list them)")
    dlq_purge.set_defaults(func=cmd_dlq)

    replay = sub.add_parser(
        "replay", help="send dead letters through the pipeline again; exit 1 unless all were replayed"
    )
    _add_filter_arguments(replay)
    replay.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    replay.set_defaults(func=cmd_replay)
