"""Finished executions and replayed dead letters kept in a SQL store (HISTORY_URL), out of Redis's memory.

PostgreSQL in production, SQLite as the embedded default (`make demo` needs no server), both
through SQLAlchemy Core; the schema is Alembic's (`pipeline/stores/history_migrations/`,
applied by `HistoryStore.migrate`). docs/history.md says why these and what is kept where.

Rows arrive in batches from the history outbox (pipeline/delivery/flush.py), never on execute's
path, as upserts on the execution id: a batch written twice leaves the same rows, and a row
never goes back to an older version of its execution (`updated_at` only moves forward).

In PostgreSQL the executions table is partitioned by the day the execution was received, one
partition a day (created before the first row of its day is written), so retention drops a
partition instead of deleting rows; SQLite deletes the rows.

Dead letters arrive the same way once they are done (replayed): one row per failure of an item,
upserted on (tenant, item id, failedAt); a letter still waiting for its replay stays in Redis,
where a failing task writes it (pipeline/stores/deadletters.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("history_migrations")

metadata = sa.MetaData()

# One row per execution: the columns queries need, and the ledger's whole record (its arguments,
# template, content digest, eventId, subscription ids, outcome, reason, timestamps) as JSON.
executions = sa.Table(
    "executions",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("execution_id", sa.String(36), primary_key=True),
    sa.Column("received_on", sa.Date, primary_key=True),  # the partition key: never changes
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),  # TEXT: whatever execute accepted fits
    sa.Column("activity_id", sa.Text, nullable=False, server_default=""),
    sa.Column("template_id", sa.Text, nullable=False, server_default=""),
    sa.Column("contact_key", sa.Text, nullable=False, server_default=""),  # personal: forget erases it
    sa.Column("updated_at", sa.String(40), nullable=False),  # the ledger's ISO time, UTC
    sa.Column("record", sa.Text, nullable=False),
)

UPDATED = ("status", "event_id", "activity_id", "template_id", "contact_key", "updated_at", "record")

# One row per failure of an item that is done (replayed): the dead letter as JSON with `replayedAt`.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("item_id", sa.Text, primary_key=True),
    sa.Column("failed_at", sa.String(40), primary_key=True),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("error_class", sa.Text, nullable=False, server_default=""),
    sa.Column("replayed_at", sa.String(40)),
    sa.Column("record", sa.Text, nullable=False),
)


def partition_name(day: date) -> str:
    return f"executions_p{day:%Y%m%d}"


def received_on(record: Mapping[str, str]) -> date:
    """The day an execution was received (UTC), from its ledger record's `createdAt`."""
    created = record.get("createdAt") or record.get("updatedAt") or ""
    try:
        return datetime.fromisoformat(created).astimezone(UTC).date()
    except ValueError:
        return datetime.now(UTC).date()


def sql_text(value: str) -> str:
    """`value` as PostgreSQL's TEXT can hold it: without NUL (a JSON column escapes it instead)."""
    return value.replace("\x00", "")


def row_of(tenant: str, execution_id: str, record: Mapping[str, str]) -> dict[str, Any]:
    """The executions row of one ledger record (its Redis hash, as read)."""
    return {
        "tenant": tenant,
        "execution_id": execution_id,
        "received_on": received_on(record),
        "status": record.get("status", ""),
        "event_id": sql_text(record.get("eventId", "")),
        "activity_id": sql_text(record.get("activityId", "")),
        "template_id": sql_text(record.get("templateId", "")),
        "contact_key": sql_text(record.get("contactKey", "")),
        "updated_at": record.get("updatedAt", ""),
        "record": json.dumps(dict(record), sort_keys=True, separators=(",", ":")),
    }


def dead_letter_row(tenant: str, letter: Mapping[str, Any]) -> dict[str, Any]:
    """The dead_letters row of one replayed letter (its JSON record with `replayedAt`)."""
    return {
        "tenant": tenant,
        "item_id": sql_text(str(letter.get("id", ""))),
        "failed_at": str(letter.get("failedAt", "")),
        "stage": str(letter.get("stage", "")),
        "error_class": sql_text(str(letter.get("errorClass", ""))),
        "replayed_at": letter.get("replayedAt"),
        "record": json.dumps(dict(letter), sort_keys=True, separators=(",", ":")),
    }


class HistoryStore:
    """The store behind HISTORY_URL: one engine per process (pooled connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        options: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            # several worker processes write one file: wait for the lock rather than fail at once
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if url in ("sqlite://", "sqlite:///:memory:"):  # one database for every thread (tests)
                options["poolclass"] = sa.pool.StaticPool
        else:
            # one connection per process is what a flush uses: 16 prefork children stay far
            # below PostgreSQL's default max_connections (100)
            options.update(pool_pre_ping=True, pool_size=1, max_overflow=2)
        self.engine: Engine = sa.create_engine(url, **options)
        if self.sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._partitions: set[date] = set()
        self._lock = threading.Lock()

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent; safe from every process)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    if not self.sqlite:  # one migrating process at a time
                        connection.execute(sa.text("SELECT pg_advisory_xact_lock(720511)"))
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except sa.exc.OperationalError:  # SQLite: another process migrated meanwhile
                if not self.sqlite or attempt == 2:
                    raise

    # -- writes ------------------------------------------------------------------------------

    def upsert_executions(self, rows: list[dict[str, Any]]) -> int:
        """Insert or update rows by (tenant, execution_id, received_on); an update applies only
        when it is not older than the stored row. Returns the rows given."""
        if not rows:
            return 0
        self._ensure_partitions({row["received_on"] for row in rows})
        insert = self.insert(executions)
        statement = insert.on_conflict_do_update(
            index_elements=["tenant", "execution_id", "received_on"],
            set_={name: getattr(insert.excluded, name) for name in UPDATED},
            where=insert.excluded.updated_at >= executions.c.updated_at,
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(statement, rows)
        except sa.exc.SQLAlchemyError:
            with self._lock:  # a partition dropped meanwhile (retention elsewhere): made again next time
                self._partitions.clear()
            raise
        return len(rows)

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT for `table` (its ON CONFLICT clauses differ in name only)."""
        if self.sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    def upsert_dead_letters(self, rows: list[dict[str, Any]]) -> int:
        """Insert or update replayed letters by (tenant, item_id, failed_at): a letter written
        twice is one row, and the latest replay of one failure wins. Returns the rows given."""
        if not rows:
            return 0
        insert = self.insert(dead_letters)
        statement = insert.on_conflict_do_update(
            index_elements=["tenant", "item_id", "failed_at"],
            set_={
                name: getattr(insert.excluded, name)
                for name in ("stage", "error_class", "replayed_at", "record")
            },
            where=sa.or_(
                dead_letters.c.replayed_at.is_(None),
                insert.excluded.replayed_at >= dead_letters.c.replayed_at,
            ),
        )
        with self.engine.begin() as connection:
            connection.execute(statement, rows)
        return len(rows)

    def drop_replayed_before(self, tenant: str, cutoff: str, batch: int = 500) -> list[str]:
        """Retention: up to `batch` letters replayed before `cutoff` (ISO 8601, UTC) go; returns
        their item ids (their auto-retry markers in Redis go too)."""
        c = dead_letters.c
        with self.engine.begin() as connection:
            doomed = connection.execute(
                sa.select(c.item_id, c.failed_at)
                .where(c.tenant == tenant, c.replayed_at < cutoff)
                .order_by(c.replayed_at)
                .limit(batch)
            ).all()
            for item_id, failed_at in doomed:
                connection.execute(
                    dead_letters.delete().where(
                        c.tenant == tenant, c.item_id == item_id, c.failed_at == failed_at
                    )
                )
        return [item_id for item_id, _ in doomed]

    def forget_dead_letters(self, tenant: str, matches: Callable[[str], bool], page: int = 1000) -> list[str]:
        """Erasure: every stored letter whose record `matches` goes; returns their item ids."""
        c = dead_letters.c
        doomed: list[tuple[str, str]] = []
        with self.engine.connect() as connection:
            after: tuple[str, str] = ("", "")
            while True:
                found = connection.execute(
                    sa.select(c.item_id, c.failed_at, c.record)
                    .where(c.tenant == tenant, sa.tuple_(c.item_id, c.failed_at) > sa.tuple_(*after))
                    .order_by(c.item_id, c.failed_at)
                    .limit(page)
                ).all()
                doomed.extend((item_id, failed_at) for item_id, failed_at, record in found if matches(record))
                if len(found) < page:
                    break
                after = (found[-1][0], found[-1][1])
        if doomed:
            with self.engine.begin() as connection:
                for item_id, failed_at in doomed:
                    connection.execute(
                        dead_letters.delete().where(
                            c.tenant == tenant, c.item_id == item_id, c.failed_at == failed_at
                        )
                    )
        return [item_id for item_id, _ in doomed]

    def _ensure_partitions(self, days: Iterable[date]) -> None:
        """Each day's partition, committed on its own before rows are written to it; remembered
        only once committed."""
        if self.sqlite:
            return
        missing = sorted(set(days) - self._partitions)
        if not missing:
            return
        with self.engine.begin() as connection:
            for day in missing:
                following = day + timedelta(days=1)
                connection.execute(
                    sa.text(
                        f'CREATE TABLE IF NOT EXISTS "{partition_name(day)}" PARTITION OF executions '
                        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{following.isoformat()}')"
                    )
                )
        with self._lock:
            self._partitions.update(missing)

    def forget_executions(self, tenant: str, execution_ids: list[str]) -> int:
        """Erase these executions (found by contact key, email or a scan of their arguments)."""
        if not execution_ids:
            return 0
        with self.engine.begin() as connection:
            done = connection.execute(
                executions.delete().where(
                    executions.c.tenant == tenant, executions.c.execution_id.in_(execution_ids)
                )
            )
        return int(done.rowcount or 0)

    def forget_contact(self, tenant: str, contact_key: str) -> int:
        """Erase every execution of one contact key; returns how many rows went."""
        if not contact_key:
            return 0
        with self.engine.begin() as connection:
            done = connection.execute(
                executions.delete().where(
                    executions.c.tenant == tenant, executions.c.contact_key == contact_key
                )
            )
        return int(done.rowcount or 0)

    def drop_before(self, day: date) -> int:
        """Retention: every execution received before `day` goes (PostgreSQL: whole partitions,
        SQLite: rows). Returns the partitions dropped or the rows deleted."""
        with self.engine.begin() as connection:
            if self.sqlite:
                done = connection.execute(executions.delete().where(executions.c.received_on < day))
                return int(done.rowcount or 0)
            names = connection.execute(
                sa.text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'executions'"
                )
            ).scalars()
            old = [name for name in names if name.startswith("executions_p") and name[12:] < f"{day:%Y%m%d}"]
            for name in old:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        with self._lock:
            self._partitions = {d for d in self._partitions if d >= day}
        return len(old)

    # -- reads -------------------------------------------------------------------------------

    def record(self, tenant: str, execution_id: str) -> dict[str, str] | None:
        """The ledger record of an execution as last archived, or None."""
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(executions.c.record).where(
                    executions.c.tenant == tenant, executions.c.execution_id == execution_id
                )
            ).scalar()
        return json.loads(found) if found else None

    def records(self, tenant: str, execution_ids: list[str]) -> dict[str, dict[str, str]]:
        """The archived records of these executions (those the store has), in one query."""
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(executions.c.execution_id, executions.c.record).where(
                    executions.c.tenant == tenant, executions.c.execution_id.in_(execution_ids)
                )
            ).all()
        return {execution_id: json.loads(record) for execution_id, record in found}

    def execution_for_event(self, tenant: str, event_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(executions.c.execution_id)
                .where(executions.c.tenant == tenant, executions.c.event_id == event_id)
                .limit(1)
            ).scalar()

    def executions_of_contact(self, tenant: str, contact_key: str) -> list[str]:
        if not contact_key:
            return []
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(executions.c.execution_id).where(
                    executions.c.tenant == tenant, executions.c.contact_key == contact_key
                )
            ).scalars()
            return sorted(found)

    def executions_in_scope(
        self,
        tenant: str,
        *,
        template_id: str | None = None,
        activity_id: str | None = None,
        statuses: Iterable[str] = (),
        after: str = "",
        page: int = 1000,
    ) -> list[str]:
        """One page of the execution ids of a template or an activity (in id order, after
        `after`), in these statuses: what an event job works through."""
        c = executions.c
        query = sa.select(c.execution_id).where(c.tenant == tenant, c.execution_id > after)
        if template_id is not None:
            query = query.where(c.template_id == template_id)
        if activity_id is not None:
            query = query.where(c.activity_id == activity_id)
        wanted = list(statuses)
        if wanted:
            query = query.where(c.status.in_(wanted))
        with self.engine.connect() as connection:
            return list(connection.execute(query.order_by(c.execution_id).limit(page)).scalars())

    def sent_in_scope(self, tenant: str, *, template_id: str) -> int:
        """Executions of the template whose event Rokt accepted, whatever became of it since
        (their record holds `acceptedAt`): against the template's sent count, what the store no
        longer holds (past its retention)."""
        c = executions.c
        query = sa.select(sa.func.count()).where(
            c.tenant == tenant, c.template_id == template_id, c.record.contains('"acceptedAt"')
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    def counts(self, tenant: str) -> dict[str, int]:
        """Archived executions per status."""
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(executions.c.status, sa.func.count())
                .where(executions.c.tenant == tenant)
                .group_by(executions.c.status)
            ).all()
        return {status: int(count) for status, count in found}

    def replayed_dead_letters(self, tenant: str, item_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's replayed letters (of one item, when given), oldest failure first."""
        c = dead_letters.c
        query = sa.select(c.record).where(c.tenant == tenant)
        if item_id is not None:
            query = query.where(c.item_id == item_id)
        with self.engine.connect() as connection:
            found = connection.execute(query.order_by(c.failed_at, c.item_id)).scalars()
            return [json.loads(record) for record in found]

    def size_bytes(self) -> int | None:
        """The store's size on disk (the bench's figure), when the dialect can say it."""
        with self.engine.connect() as connection:
            if self.sqlite:
                pages = connection.execute(sa.text("PRAGMA page_count")).scalar() or 0
                size = connection.execute(sa.text("PRAGMA page_size")).scalar() or 0
                return int(pages) * int(size)
            return int(connection.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL: readers never block the writer; NORMAL sync is durable across a process crash."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
