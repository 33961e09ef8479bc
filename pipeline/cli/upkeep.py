"""Upkeep by hand (`rokt-sfmc reconcile`: the reconciliation once, now; `rokt-sfmc upkeep
move-to-store`: what an older version left whole in Redis, moved into the history store) and a
person's erasure on request (`rokt-sfmc forget`).

`reconcile` exits 1 when it could not finish everything; `forget` prints the counts it removed
(JSON) and records the erasure, without the data, in the audit; `forget --from FILE` does so for
every person of a file, in batches that each walk the keyspace once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_PARTIAL, add_tenant_argument, settings_tenant


class _Warnings(logging.Handler):
    """What reconcile logged at WARNING or above: work it had to leave for a later run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


FORGET_BATCH = 10_000  # people per batch of `forget --from`: each batch walks the keyspace once
SHOWN_PROBLEMS = 20  # bad lines of a --from file named on stderr (the rest counted)
PEOPLE_FIELDS = ("contact", "email")


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one contact (or each person of a file, in batches) from everything the tenant's keys
    hold; prints the counts per kind (JSON) and records each erasure, without the data, in the
    audit (pipeline.upkeep.privacy)."""
    from pipeline.clients.errors import ClientError
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.privacy import forget_contact

    if args.source is not None:
        return _forget_file(args)
    settings, tenant = settings_tenant(args.tenant)
    if not args.contact.strip():
        print("error: --contact must not be empty", file=sys.stderr)
        return EXIT_BAD_INPUT
    rt = Runtime(settings)
    try:
        record = forget_contact(
            rt,
            tenant.name,
            args.contact,
            args.email,
            scan=not args.index_only,
            remove_events=not args.keep_events,
        )
    except (ClientError, RateLimited) as exc:
        print(
            f"error: Rokt did not take the removal of the contact's events ({exc}); nothing was erased: "
            "run again later, or with --keep-events to erase without removing them",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0


def read_people(path: Path) -> Iterator[tuple[int, tuple[str, str | None] | None, str]]:
    """(line number, (contact key, email or None) or None, problem) for each person of a .csv
    (header `contact,email`) or .jsonl file, one line at a time (the backfill's reader: a line
    too long, not UTF-8, not CSV or not a JSON object is a problem naming its line)."""
    from pipeline.subscriptions.backfill import read_records

    for number, record, problem in read_records(path):
        if record is None:
            yield number, None, problem
            continue
        unknown = sorted(set(record) - set(PEOPLE_FIELDS))
        contact, email = record.get("contact"), record.get("email")
        if unknown:
            problem = f"unknown field {', '.join(map(repr, unknown))} (a person has contact and email)"
        elif contact is not None and not isinstance(contact, str):
            problem = "contact must be a text"
        elif not (contact or "").strip():
            problem = "contact is required"
        elif email is not None and not isinstance(email, str):
            problem = "email must be a text"
        yield (
            (number, None, f"line {number}: {problem}") if problem else (number, (contact, email or None), "")
        )


def _forget_file(args: argparse.Namespace) -> int:
    """`forget --from FILE`: the file is read twice, one line at a time: first whole, so that a bad
    line erases no one (exit 2, naming the lines); then in batches of FORGET_BATCH people, one
    JSON line per person as each batch ends (the single forget's record with its `line`)."""
    from pipeline.clients.errors import ClientError
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.subscriptions.backfill import BackfillInputError
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.privacy import forget_contacts

    if args.email is not None:
        print("error: --email goes with --contact; in a --from file each line has its email", file=sys.stderr)
        return EXIT_BAD_INPUT
    path = Path(args.source)
    if not path.is_file():
        print(f"error: --from: {path} is not a file", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings, tenant = settings_tenant(args.tenant)
    people, bad, shown = 0, 0, []
    try:
        for _number, person, problem in read_people(path):
            people += person is not None
            bad += bool(problem)
            if problem and len(shown) < SHOWN_PROBLEMS:
                shown.append(problem)
    except (BackfillInputError, OSError) as exc:  # not .csv/.jsonl, no CSV header, unreadable
        print(f"error: --from: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if bad:
        print(
            f"error: --from {path}: {bad} bad line{'s' if bad > 1 else ''}; no one was erased",
            file=sys.stderr,
        )
        for problem in shown:
            print(f"  {problem}", file=sys.stderr)
        if bad > len(shown):
            print(f"  ... and {bad - len(shown)} more", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not people:
        print(
            f"error: --from {path}: no one to erase (a header `contact,email`, then a person a line)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    rt = Runtime(settings)
    totals: Counter[str] = Counter()
    erased, changed = 0, 0
    batch: list[tuple[int, tuple[str, str | None]]] = []

    def forget(batch: list[tuple[int, tuple[str, str | None]]]) -> None:
        records = forget_contacts(
            rt,
            tenant.name,
            [person for _line, person in batch],
            scan=not args.index_only,
            remove_events=not args.keep_events,
        )
        for (line, _person), record in zip(batch, records, strict=True):
            print(json.dumps({**record, "line": line}, sort_keys=True), flush=True)
            totals.update(record["counts"])

    try:
        for number, person, _problem in read_people(path):
            if person is None:  # the file changed since it was checked
                changed += 1
                continue
            batch.append((number, person))
            if len(batch) == FORGET_BATCH:
                forget(batch)
                erased, batch = erased + len(batch), []
        if batch:
            forget(batch)
            erased += len(batch)
    except (ClientError, RateLimited) as exc:
        print(
            f"error: Rokt did not take the removal of events ({exc}); the {len(batch)} people of the "
            f"batch from line {batch[0][0]} on were not erased ({erased} were): run again later, or "
            "with --keep-events",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    print(f"forgot {erased} people: {json.dumps(dict(sorted(totals.items())))}", file=sys.stderr)
    if changed:
        print(
            f"error: --from {path}: {changed} lines went bad while it was read; run it again", file=sys.stderr
        )
        return EXIT_PARTIAL
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Exit 1 when an execution ended failed (never confirmed), reconcile had to stop early
    (it logs a warning: Rokt unavailable, say) or a step raised."""
    from pipeline.clients.errors import ClientError
    from pipeline.infra import dispatch
    from pipeline.stores.ratelimit import RateLimited
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.reconcile import reconcile

    settings, tenant = settings_tenant(args.tenant)
    warnings = _Warnings()
    logger = logging.getLogger("pipeline.upkeep.reconcile")
    logger.addHandler(warnings)
    try:
        report = reconcile(
            Runtime(settings), tenant.name, dispatch.redrive_execution, dispatch.redrive_webhook
        )
    except (ClientError, RateLimited) as exc:
        print(f"error: reconcile stopped: {getattr(exc, 'reason', None) or exc}", file=sys.stderr)
        return EXIT_PARTIAL
    finally:
        logger.removeHandler(warnings)
    print(json.dumps({**report.as_dict(), "warnings": warnings.messages}, indent=2))
    if report.timed_out or warnings.messages:
        print(
            f"error: reconcile incomplete: {report.timed_out} executions failed unconfirmed, "
            f"{len(warnings.messages)} warnings",
            file=sys.stderr,
        )
        return EXIT_PARTIAL
    return 0


def cmd_move_to_store(args: argparse.Namespace) -> int:
    """Walk every mover (or `--only` one) to its end; prints what each read and moved (JSON) and
    asks the workers to flush the history outbox (beat's safety-net flush does it otherwise)."""
    from pipeline.infra import dispatch
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep import store_moves
    from pipeline.vocabulary import OutboxKind

    settings, tenant = settings_tenant(args.tenant)
    rt = Runtime(settings)
    names = [args.only] if args.only else None
    if args.again:
        store_moves.start_again(rt, tenant.name, names)
    reports = store_moves.run_to_end(rt, tenant.name, names)
    print(json.dumps({name: report.as_dict() for name, report in reports.items()}, indent=2))
    if any(report.moved for report in reports.values()):
        dispatch.schedule_flush(tenant.name, OutboxKind.HISTORY)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    reconcile = sub.add_parser(
        "reconcile", help="run the reconciliation once by hand; exit 1 when it could not finish everything"
    )
    add_tenant_argument(reconcile)
    reconcile.set_defaults(func=cmd_reconcile)

    forget = sub.add_parser(
        "forget",
        help="erase a contact (or a file of them) from everything we hold for the tenant; prints "
        "the counts removed (JSON)",
    )
    add_tenant_argument(forget)
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--contact", help="the contact key (SubscriberKey) to erase")
    who.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="a file of people to erase: .csv with the header contact,email (email may be empty) "
        'or .jsonl of {"contact": ..., "email": ...}; checked whole first (a bad line erases no '
        f"one: exit 2 naming it), then erased in batches of {FORGET_BATCH:,} people, each walking "
        "the keyspace once; prints one JSON line per person (the record --contact prints, with "
        "the file's `line`) and the totals on stderr",
    )
    forget.add_argument(
        "--email",
        help="with --contact: the contact's email too (email-capture subscriptions, rows naming it)",
    )
    forget.add_argument(
        "--keep-events",
        action="store_true",
        help="leave the person's events in their calendars at Rokt (by default each event Rokt "
        "holds is removed from their subscriptions before the records that name it are erased: "
        "the output's eventsRemovedAtRokt)",
    )
    forget.add_argument(
        "--index-only",
        action="store_true",
        help="skip the SCANs of the keyspace for executions, subscriptions and webhook receipts "
        "(its time does not grow with the keyspace; misses records written before the contact "
        "index existed, ended subscriptions, and webhook envelopes an older version kept after "
        "processing)",
    )
    forget.set_defaults(func=cmd_forget)

    from pipeline.upkeep.store_moves import MOVERS  # light: no Flask, Celery or SQL engine

    upkeep = sub.add_parser("upkeep", help="one-off upkeep after an upgrade")
    upkeep_sub = upkeep.add_subparsers(dest="upkeep_command", required=True)
    move = upkeep_sub.add_parser(
        "move-to-store",
        help="move what an older version left whole in Redis (finished executions) into the history "
        "store; resumes where it stopped, prints what it read and moved (JSON)",
    )
    add_tenant_argument(move)
    move.add_argument("--only", choices=sorted(MOVERS), help="one kind of record only")
    move.add_argument("--again", action="store_true", help="walk from the start again, even when done")
    move.set_defaults(func=cmd_move_to_store)
