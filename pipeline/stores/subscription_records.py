"""Calendar subscriptions and webhook receipts kept in the history store, out of Redis's memory.

The store is the record of every subscription (its merged state with each field's event rank,
its contact match, whether it is live) and of every webhook eventId processed. Rows arrive in
batches from the `subscription-history` outbox (pipeline/delivery/flush.py), never on a
webhook's path, as upserts: a batch written twice leaves the same rows, and a row never goes
back to an older version of its subscription (`version` only moves forward: a counter Redis
increments at each merge, so clocks of different workers cannot reorder two merges).
Receipts hold no contact data: the eventId, its type and when it was recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from pipeline.stores.history import HistoryStore, metadata, sql_text

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("subscription_id", sa.Text, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("live", sa.Boolean, nullable=False),
    sa.Column("contact_key", sa.Text, nullable=False, server_default=""),  # personal: forget erases it
    sa.Column("email", sa.Text, nullable=False, server_default=""),  # lower case, for forget --email
    sa.Column("contact_match", sa.String(16), nullable=False, server_default=""),
    sa.Column("updated_at", sa.String(40), nullable=False),  # ISO, UTC: retention counts from it
    sa.Column("state", sa.Text, nullable=False),  # {attribute: [value, rank]} as JSON
)

webhook_receipts = sa.Table(
    "webhook_receipts",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False, server_default=""),
    sa.Column("recorded_at", sa.String(40), nullable=False),
)

UPDATED = ("version", "live", "contact_key", "email", "contact_match", "updated_at", "state")


def upsert_subscriptions(store: HistoryStore, rows: list[dict[str, Any]]) -> int:
    """Insert or update rows by (tenant, subscription_id); an update applies only when its
    version is not older than the stored one. Returns the rows given."""
    if not rows:
        return 0
    rows = [
        {**row, "contact_key": sql_text(row["contact_key"]), "email": sql_text(row["email"])} for row in rows
    ]
    insert = store.insert(subscriptions)
    statement = insert.on_conflict_do_update(
        index_elements=["tenant", "subscription_id"],
        set_={name: getattr(insert.excluded, name) for name in UPDATED},
        where=insert.excluded.version >= subscriptions.c.version,
    )
    with store.engine.begin() as connection:
        connection.execute(statement, rows)
    return len(rows)


def load(store: HistoryStore, tenant: str, subscription_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored rows of these subscriptions (those the store has), state decoded, in one query."""
    wanted = sorted(set(subscription_ids))
    if not wanted:
        return {}
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.select(subscriptions).where(
                subscriptions.c.tenant == tenant, subscriptions.c.subscription_id.in_(wanted)
            )
        ).mappings()
        return {row["subscription_id"]: {**row, "state": json.loads(row["state"])} for row in found}


def of_contact(store: HistoryStore, tenant: str, identifiers: Iterable[str]) -> list[str]:
    """Subscription ids whose contact key or email is one of these (live or ended)."""
    names = sorted({i for i in identifiers if i})
    if not names:
        return []
    emails = sorted({i.lower() for i in names})
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.select(subscriptions.c.subscription_id).where(
                subscriptions.c.tenant == tenant,
                sa.or_(subscriptions.c.contact_key.in_(names), subscriptions.c.email.in_(emails)),
            )
        ).scalars()
        return sorted(found)


def forget(store: HistoryStore, tenant: str, subscription_ids: Iterable[str]) -> int:
    """Erase these subscriptions; returns how many rows went."""
    wanted = sorted(set(subscription_ids))
    if not wanted:
        return 0
    with store.engine.begin() as connection:
        done = connection.execute(
            subscriptions.delete().where(
                subscriptions.c.tenant == tenant, subscriptions.c.subscription_id.in_(wanted)
            )
        )
    return int(done.rowcount or 0)


def expire(
    store: HistoryStore,
    tenant: str,
    *,
    live: bool,
    before: str,
    limit: int,
    on_found: Callable[[list[tuple[str, str]]], None] | None = None,
) -> list[tuple[str, str]]:
    """Retention: up to `limit` subscriptions (live or ended) last changed before `before` (ISO)
    are deleted; returns their (subscription id, contact key). `on_found` hears of them before the
    delete commits (the render index's entries go first): if it fails, nothing is deleted, and
    the next pass finds them again."""
    where = (
        subscriptions.c.tenant == tenant,
        subscriptions.c.live == live,
        subscriptions.c.updated_at < before,
    )
    with store.engine.begin() as connection:
        found = connection.execute(
            sa.select(subscriptions.c.subscription_id, subscriptions.c.contact_key).where(*where).limit(limit)
        ).all()
        ids = [sub_id for sub_id, _key in found]
        if ids and on_found is not None:
            on_found([(sub_id, key) for sub_id, key in found])
        if ids:
            connection.execute(subscriptions.delete().where(*where, subscriptions.c.subscription_id.in_(ids)))
    return [(sub_id, key) for sub_id, key in found]


def count(store: HistoryStore, tenant: str) -> dict[str, int]:
    """Stored subscriptions, live and ended."""
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.select(subscriptions.c.live, sa.func.count())
            .where(subscriptions.c.tenant == tenant)
            .group_by(subscriptions.c.live)
        ).all()
    return {("live" if live else "ended"): int(n) for live, n in found}


# -- webhook receipts --------------------------------------------------------------------------


def record_receipts(store: HistoryStore, rows: list[dict[str, str]]) -> int:
    """Insert receipts (tenant, event_id, event_type, recorded_at); one already there stays."""
    if not rows:
        return 0
    # PostgreSQL's TEXT holds no NUL: a refused receipt would hold its whole outbox back
    rows = [{k: sql_text(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
    insert = store.insert(webhook_receipts).on_conflict_do_nothing(index_elements=["tenant", "event_id"])
    with store.engine.begin() as connection:
        connection.execute(insert, rows)
    return len(rows)


def receipt_seen(store: HistoryStore, tenant: str, event_id: str) -> bool:
    """True when this webhook was processed before (a re-send after Redis's dedupe window)."""
    with store.engine.connect() as connection:
        found = connection.execute(
            sa.select(webhook_receipts.c.event_id).where(
                webhook_receipts.c.tenant == tenant, webhook_receipts.c.event_id == event_id
            )
        ).first()
    return found is not None


def drop_receipts_before(store: HistoryStore, tenant: str, before: str) -> int:
    """Retention: the tenant's receipts recorded before `before` (ISO) go."""
    with store.engine.begin() as connection:
        done = connection.execute(
            webhook_receipts.delete().where(
                webhook_receipts.c.tenant == tenant, webhook_receipts.c.recorded_at < before
            )
        )
    return int(done.rowcount or 0)
