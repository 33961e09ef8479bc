"""Upkeep by hand (`rokt-sfmc reconcile`: the reconciliation once, now; `rokt-sfmc upkeep
move-to-store`: what an older version left whole in Redis, moved into the history store) and a
person's erasure on request (`rokt-sfmc forget`).

`reconcile` exits 1 when it could not finish everything; `forget` prints the counts it removed
(JSON) and records the erasure, without the data, in the audit.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipeline.cli.common import EXIT_PARTIAL, add_tenant_argument, settings_tenant


class _Warnings(logging.Handler):
    """What reconcile logged at WARNING or above: work it had to leave for a later run."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase one contact from everything the tenant's keys hold; prints the counts per kind (JSON)
    and records the erasure, without the data, in the audit (pipeline.upkeep.privacy)."""
    from pipeline.tenancy.handles import Runtime
    from pipeline.upkeep.privacy import forget_contact

    settings, tenant = settings_tenant(args.tenant)
    if not args.contact.strip():
        print("error: --contact must not be empty", file=sys.stderr)
        return 2
    rt = Runtime(settings)
    record = forget_contact(rt, tenant.name, args.contact, args.email, scan=not args.index_only)
    print(json.dumps(record, indent=2, sort_keys=True))
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
        help="erase a contact from everything we hold for the tenant; prints the counts removed (JSON)",
    )
    add_tenant_argument(forget)
    forget.add_argument("--contact", required=True, help="the contact key (SubscriberKey) to erase")
    forget.add_argument(
        "--email", help="the contact's email too (email-capture subscriptions, rows naming it)"
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
