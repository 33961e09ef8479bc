"""Upgrade in place: what an older version left in Redis moves where this one keeps it.

Records it kept whole move into the history store; contact indexes it named by the unkeyed digest
of a contact key move under the keyed name.

Before the history store, a finished execution stayed whole in Redis for `EXECUTION_TTL_DAYS`;
after the upgrade only executions whose terminal move happens later reach the store (the
ledger's transition script appends them to the history outbox). Each mover here walks one kind
of record the tenant holds in Redis (a SCAN of its keys' pattern, in bounded batches) and hands
every finished one to the path new records take, so flush_history writes and archives it like
any other. The `contact-*` movers rename the contact indexes (keys.personal_digest: a name an
older version made of the plain sha256 can be reversed with a dictionary of likely contact
keys); forget and render read the old names too, so nothing is missed before they are done.
The walk's cursor is saved in the same MULTI/EXEC as the batch's appends: a walk cut off
anywhere resumes after the last batch it finished, never reading one twice; once the SCAN is
back at cursor 0 the mover is marked `done` in Redis (`keys.store_moves`) and costs nothing more.

Beat runs a bounded step per tenant at each reconciliation until every mover is done;
`rokt-sfmc upkeep move-to-store --tenant T` runs them to the end by hand (docs/history.md).
Run them once no process of the older version is left (a record an older worker finishes after
the walk passed it is not appended): `--again` walks from the start again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import redis

from pipeline.infra import keys
from pipeline.vocabulary import TERMINAL_STATES

if TYPE_CHECKING:  # the CLI lists MOVERS for its --help: no SQL engine, Celery or Flask for that
    from pipeline.tenancy.handles import Runtime

log = logging.getLogger(__name__)

DONE = "done"  # a mover's field in keys.store_moves once its walk is over
SCAN_COUNT = 1000  # keys SCAN looks at per call (per batch)
STEP_SECONDS = 2.0  # a beat step's time budget per tenant (every mover together)


@dataclass
class MoveReport:
    scanned: int = 0  # keys of the kind the walk read
    moved: int = 0  # records handed to the store's path
    done: bool = False

    def add(self, other: MoveReport) -> None:
        self.scanned += other.scanned
        self.moved += other.moved
        self.done = other.done

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class Mover(Protocol):
    """One kind of record: walk it from its checkpoint for at most `budget_seconds` (at least one
    batch), moving what is finished; `walk` below does the checkpointing."""

    def __call__(self, rt: Runtime, tenant: str, *, budget_seconds: float) -> MoveReport: ...


# Queues, in the walk's transaction, one command per record to move whose answer is 1 when it
# moved; gets the keys one SCAN call found (each at most once).
MoveBatch = Callable[[list[str], redis.client.Pipeline], None]


# One bounded step of a mover from a cursor: (the next cursor, 0 when the walk is over; keys read;
# records moved); it saves the next cursor as the mover's checkpoint itself.
Step = Callable[[int], tuple[int, int, int]]


def _steps(rt: Runtime, tenant: str, name: str, step: Step, budget_seconds: float) -> MoveReport:
    """Mover `name`'s steps from its checkpoint until the budget is spent (at least one step) or
    the walk is over; `done` once the walk is over, and then nothing more."""
    report = MoveReport()
    state = rt.redis.hget(keys.store_moves(tenant), name)
    if state == DONE:
        report.done = True
        return report
    cursor = int(state or 0)
    deadline = time.monotonic() + budget_seconds
    while True:
        cursor, scanned, moved = step(cursor)
        report.scanned += scanned
        report.moved += moved
        if cursor == 0:
            report.done = True
            log.info("store moves: %s of %s done", name, tenant)
            return report
        if time.monotonic() >= deadline:
            return report


def walk(
    rt: Runtime, tenant: str, name: str, pattern: str, move_batch: MoveBatch, budget_seconds: float
) -> MoveReport:
    """SCAN the tenant's keys matching `pattern` from mover `name`'s checkpoint, one batch after
    another until the budget is spent (at least one) or the walk is over; each batch's moves and
    the new checkpoint are one MULTI/EXEC, so a batch counts either whole or not at all."""
    r, progress = rt.redis, keys.store_moves(tenant)

    def step(cursor: int) -> tuple[int, int, int]:
        cursor, found = r.scan(cursor, match=pattern, count=SCAN_COUNT)
        pipe = r.pipeline(transaction=True)
        move_batch(sorted(set(found)), pipe)
        pipe.hset(progress, name, cursor or DONE)
        answers = pipe.execute()
        return cursor, len(set(found)), sum(int(answer) for answer in answers[:-1])

    return _steps(rt, tenant, name, step, budget_seconds)


def move_executions_to_store(rt: Runtime, tenant: str, *, budget_seconds: float = STEP_SECONDS) -> MoveReport:
    """Every execution record in a terminal state, whole (not a tombstone) and not already in the
    store as it is now, joins the history outbox through the ledger (`Ledger.to_history`, which
    checks the state again inside Redis); a `queued` one is in flight and left alone: its
    terminal move appends it."""
    prefix = keys.execution(tenant, "")

    def move_batch(found: list[str], pipe: redis.client.Pipeline) -> None:
        read = rt.redis.pipeline(transaction=False)
        for key in found:
            read.hmget(key, "status", "archived", "updatedAt")
        finished = {
            key[len(prefix) :]: updated_at or ""
            for key, (status, archived, updated_at) in zip(found, read.execute(), strict=True)
            if status in TERMINAL_STATES and archived != "1"
        }
        # written to the store after its move (accepted, failed: kept whole in Redis too)
        stored = rt.history.records(tenant, list(finished)) if finished else {}
        for execution, updated_at in finished.items():
            if stored.get(execution, {}).get("updatedAt") != updated_at:
                rt.ledger.to_history(tenant, execution, pipe)

    return walk(rt, tenant, "executions", keys.executions_match(tenant), move_batch, budget_seconds)


def move_old_subscriptions_to_store(
    rt: Runtime, tenant: str, *, budget_seconds: float = STEP_SECONDS
) -> MoveReport:
    """Every subscription hash an older version kept whole in Redis (and its plain-keyed index
    entry) into the store, in the steps of subscriptions/upgrade.py; its SCAN cursor is this
    mover's checkpoint. A step is idempotent (a hash moved is gone), so the checkpoint is saved
    after it: a walk cut off between the two reads that step's keys again and moves nothing twice."""
    from pipeline.subscriptions.upgrade import move_subscriptions_to_store  # the SQL store: not for --help

    r, progress, name = rt.redis, keys.store_moves(tenant), "subscriptions"

    def step(cursor: int) -> tuple[int, int, int]:
        moved = move_subscriptions_to_store(rt, tenant, cursor, batch=SCAN_COUNT)
        r.hset(progress, name, moved.cursor or DONE)
        return moved.cursor, moved.moved + moved.skipped, moved.moved

    return _steps(rt, tenant, name, step, budget_seconds)


# An old contact index of executions (named by the unkeyed digest) is merged into the index under
# the keyed name and goes; an old one none of whose executions holds its contact key any more
# (all archived or gone: the store finds those by the contact key) just goes.
# KEYS: the old set, the new set (the old one itself when unknown). ARGV: none.
_RENAME_EXECUTIONS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if KEYS[2] ~= KEYS[1] then
  local ttl = math.max(redis.call('TTL', KEYS[1]), redis.call('TTL', KEYS[2]))
  redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])  -- a new set: the longer TTL of the two
  if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
end
redis.call('DEL', KEYS[1])
return 1
"""


def rename_contact_executions(
    rt: Runtime, tenant: str, *, budget_seconds: float = STEP_SECONDS
) -> MoveReport:
    """Every contact index of executions an older version named by the unkeyed digest of the
    contact key moves under the keyed name. The digest cannot be read back, so the contact key
    comes from one of the index's executions (the one whose key has that digest)."""
    prefix, rename = keys.unkeyed_contact_executions(tenant, ""), rt.redis.register_script(_RENAME_EXECUTIONS)

    def move_batch(found: list[str], pipe: redis.client.Pipeline) -> None:
        read = rt.redis.pipeline(transaction=False)
        for name in found:
            read.smembers(name)
        members = [sorted(executions) for executions in read.execute()]
        read = rt.redis.pipeline(transaction=False)
        for executions in members:
            for execution in executions:
                read.hget(keys.execution(tenant, execution), "contactKey")
        contact_keys = iter(read.execute())
        for name, executions in zip(found, members, strict=True):
            held = [next(contact_keys) for _ in executions]
            digest = name[len(prefix) :]
            owner = next((key for key in held if key and keys.unkeyed_contact_digest(key) == digest), None)
            rename(keys=[name, rt.ledger.contact_index(tenant, owner) if owner else name], client=pipe)

    pattern = keys.unkeyed_contact_executions(tenant, "*")
    return walk(rt, tenant, "contact-executions", pattern, move_batch, budget_seconds)


def rename_contact_subscriptions(
    rt: Runtime, tenant: str, *, budget_seconds: float = STEP_SECONDS
) -> MoveReport:
    """Every entry of the render index of subscriptions an older version named by the unkeyed
    digest of the contact key moves under the keyed name (subscriptions/upgrade.py)."""
    from pipeline.subscriptions.upgrade import rename_index_batch  # the SQL store: not for --help

    def move_batch(found: list[str], pipe: redis.client.Pipeline) -> None:
        rename_index_batch(rt, tenant, found, pipe)

    pattern = keys.unkeyed_contact_subscriptions_match(tenant)
    return walk(rt, tenant, "contact-subscriptions", pattern, move_batch, budget_seconds)


# One mover per kind of record an older version kept whole in Redis, or named by personal data's
# unkeyed digest, in the order they run.
MOVERS: dict[str, Mover] = {
    "executions": move_executions_to_store,
    "subscriptions": move_old_subscriptions_to_store,
    "contact-executions": rename_contact_executions,
    "contact-subscriptions": rename_contact_subscriptions,
}


def pending(rt: Runtime, tenant: str) -> list[str]:
    """The movers not done for the tenant (one round trip)."""
    states = rt.redis.hgetall(keys.store_moves(tenant))
    return [name for name in MOVERS if states.get(name) != DONE]


def step(rt: Runtime, tenant: str, budget_seconds: float = STEP_SECONDS) -> dict[str, MoveReport]:
    """A bounded step of every mover not done yet (beat's, at each reconciliation); the budget is
    shared, each pending mover getting at least one batch."""
    deadline = time.monotonic() + budget_seconds
    reports = {}
    for name in pending(rt, tenant):
        reports[name] = MOVERS[name](rt, tenant, budget_seconds=max(0.0, deadline - time.monotonic()))
    return reports


def run_to_end(rt: Runtime, tenant: str, names: list[str] | None = None) -> dict[str, MoveReport]:
    """Every mover (or those named) walked to its end (`rokt-sfmc upkeep move-to-store`)."""
    reports = {}
    for name in names or list(MOVERS):
        total = MoveReport()
        while not total.done:
            total.add(MOVERS[name](rt, tenant, budget_seconds=STEP_SECONDS))
        reports[name] = total
    return reports


def start_again(rt: Runtime, tenant: str, names: list[str] | None = None) -> None:
    """Forget the movers' checkpoints (all, or those named): their next walk starts from the top."""
    rt.redis.hdel(keys.store_moves(tenant), *(names or list(MOVERS)))
