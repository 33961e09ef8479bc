"""The dead-letter store: what failed for good, with enough to understand and replay it.

A letter waiting for its replay is in flight, so it lives in Redis: a failing task writes it
there (`record_dead_letter`, one durable Redis write, AOF), whether or not the SQL history store
answers at that moment. Once replayed it is done: `move_to_replayed` takes it out of Redis and
appends it, `replayedAt` added, to the tenant's history outbox in the same script, and
`flush_history` writes it to the history store's `dead_letters` table (docs/history.md).
Replayed letters left in the `dlq-replayed` hash by an older version are read, trimmed and erased
there as before until retention empties it.

A dead letter leaves the store here only (`remove_dead_letters`, `move_to_replayed`), with its
time-index entry and its auto-retry marker: retention, erasure, a replay and the CLI's purge alike.

The purge an operator runs (`rokt-sfmc dlq purge`) selects what failed before a cut-off
(`failed_before`, each letter as read) and removes it (`purge_dead_letters`): a letter that
failed again in between is a new failure, and stays.

Retention: each dead letter is also indexed by its failure time (`dlq-by-time`), so the
reconciler removes the ones older than DEAD_LETTER_RETENTION_DAYS in bounded steps
(`trim_dead_letters`); replayed letters (the history store, and the older `dlq-replayed` hash)
go after the same time from their replay (pipeline.upkeep.privacy, `trim_replayed`).
Retention and the purge delete: a letter they take is not moved to the store, since keeping it
there would outlive the retention the operator set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from pipeline.infra import keys
from pipeline.stores.ledger import now_iso
from pipeline.stores.outbox import Outbox
from pipeline.vocabulary import OutboxKind, Stage

REMOVE_BATCH = 500  # letters per script call
# KEYS: the store, its time index, the auto-retry markers. ARGV: pairs of item id and the record
# as read ('' for any). A letter goes with its index entry and marker, but one given as read only
# while it is still that record: a newer failure of the same item stays, indexed.
_REMOVE = """
local removed = 0
for i = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 1] == '' or stored == ARGV[i + 1] then
    if stored then
      redis.call('HDEL', KEYS[1], ARGV[i])
      removed = removed + 1
    end
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('SREM', KEYS[3], ARGV[i])
  end
end
return removed
"""

# KEYS: the store, its time index, the history outbox. ARGV: item id, failedAt as read, the
# replayed record (JSON). The letter leaves Redis only while it is still the failure replayed (a
# newer failure of the item stays, indexed); the replay is recorded for the store either way.
_MOVE_TO_REPLAYED = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local moved = 0
if stored then
  local ok, letter = pcall(cjson.decode, stored)
  if not ok or letter['failedAt'] == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    moved = 1
  end
end
redis.call('XADD', KEYS[3], '*', 'p', ARGV[3])
return moved
"""


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return 0.0  # unreadable: the oldest, so retention takes it first


def count_dead_letters(r: redis.Redis, tenant: str) -> int:
    return int(r.hlen(keys.dead_letters(tenant)))


def error_class_of(exc: BaseException) -> str:
    """Our clients' error class (`permanent`, `throttled`, ...), else the exception's name."""
    return str(getattr(exc, "error_class", None) or type(exc).__name__)


def reason_of(exc: BaseException) -> str:
    """Our clients' `reason` (safe to store: never a secret), else the exception's text."""
    return getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"


def record_dead_letter(
    r: redis.Redis,
    tenant: str,
    item_id: str,
    *,
    stage: Stage,
    error_class: str,
    reason: str,
    attempts: int,
    payload: dict[str, Any],
) -> None:
    """Keep the latest failure per item (payload holds no secrets: ids and inArguments)."""
    record = {
        "id": item_id,
        "tenant": tenant,
        "stage": stage,
        "errorClass": error_class,
        "reason": reason[:1000],
        "attempts": attempts,
        "payload": payload,
        "failedAt": now_iso(),
    }
    pipe = r.pipeline()
    pipe.hset(keys.dead_letters(tenant), item_id, json.dumps(record, sort_keys=True))
    pipe.zadd(keys.dead_letters_by_time(tenant), {item_id: time.time()})
    pipe.execute()


def remove_dead_letters(
    r: redis.Redis, tenant: str, item_ids: Iterable[str], *, as_read: Mapping[str, str] | None = None
) -> int:
    """Remove dead letters with their time-index entry and auto-retry marker; returns how many
    were stored. With `as_read` (item id -> the record's text as read), a letter goes only while
    it is still that record (the CLI's purge: a newer failure of the same item stays)."""
    names = [
        keys.dead_letters(tenant),
        keys.dead_letters_by_time(tenant),
        keys.dead_letters_auto_retried(tenant),
    ]
    expected = as_read or {}
    script = r.register_script(_REMOVE)
    ids = list(item_ids)
    removed = 0
    for start in range(0, len(ids), REMOVE_BATCH):
        pairs = [
            v for item_id in ids[start : start + REMOVE_BATCH] for v in (item_id, expected.get(item_id, ""))
        ]
        removed += int(script(keys=names, args=pairs))
    return removed


def cutoff_iso(older_than: timedelta) -> str:
    """The `failedAt` of a letter that failed `older_than` ago, in `now_iso`'s form (ISO 8601,
    UTC, milliseconds): what `failed_before` compares with."""
    return (datetime.now(UTC) - older_than).isoformat(timespec="milliseconds")


def failed_before(
    r: redis.Redis,
    tenant: str,
    cutoff: str,
    matches: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, str]:
    """The dead letters that failed before `cutoff` (ISO 8601, as `cutoff_iso` gives it) and that
    `matches` accepts (default: every one): item id -> the record's text as read."""
    selected = {}
    for item_id, text in r.hgetall(keys.dead_letters(tenant)).items():
        letter = json.loads(text)
        if letter["failedAt"] < cutoff and (matches is None or matches(letter)):
            selected[item_id] = text
    return selected


def purge_dead_letters(r: redis.Redis, tenant: str, as_read: Mapping[str, str]) -> int:
    """Remove what `failed_before` selected, through `remove_dead_letters` (time-index entry and
    auto-retry marker too: retention, not a replay), each letter only while it is still the
    record read; returns how many were removed."""
    return remove_dead_letters(r, tenant, sorted(as_read), as_read=as_read)


def move_to_replayed(history: Outbox, letter: dict[str, Any]) -> bool:
    """A replayed dead letter leaves Redis (with its time-index entry) for the history store,
    kept there for audit with `replayedAt`: appended to the tenant's history outbox in the same
    script, so it is never in neither. True when the letter was still in Redis as read."""
    if history.kind != OutboxKind.HISTORY:
        raise ValueError(f"replayed letters go to the history outbox, not {history.kind}")
    history.ensure_group()
    tenant = history.tenant
    names = [keys.dead_letters(tenant), keys.dead_letters_by_time(tenant), history.key]
    entry = history.encode({"deadLetter": {**letter, "replayedAt": now_iso()}})
    script = history.r.register_script(_MOVE_TO_REPLAYED)
    return bool(script(keys=names, args=[letter["id"], letter.get("failedAt", ""), entry]))


def remove_replayed(r: redis.Redis, tenant: str, item_ids: list[str]) -> int:
    """Remove replayed letters an older version kept in Redis (and their auto-retry marker);
    returns how many were stored."""
    if not item_ids:
        return 0
    pipe = r.pipeline()
    pipe.hdel(keys.dead_letters_replayed(tenant), *item_ids)
    pipe.srem(keys.dead_letters_auto_retried(tenant), *item_ids)
    removed, _ = pipe.execute()
    return int(removed)


def index_unindexed(r: redis.Redis, tenant: str, batch: int = 500) -> int:
    """Dead letters written before the time index existed get their entry (bounded: `batch` per
    call, while the hash holds more items than the index)."""
    key, index = keys.dead_letters(tenant), keys.dead_letters_by_time(tenant)
    if r.hlen(key) <= r.zcard(index):
        return 0
    added = 0
    cursor = 0
    while True:
        cursor, items = r.hscan(key, cursor, count=batch)
        for item_id, raw in items.items():
            if r.zscore(index, item_id) is None:
                try:
                    failed_at = _epoch(json.loads(raw).get("failedAt", ""))
                except ValueError:
                    failed_at = 0.0
                r.zadd(index, {item_id: failed_at}, nx=True)
                added += 1
        if cursor == 0 or added >= batch:
            return added


def trim_dead_letters(r: redis.Redis, tenant: str, older_than: float, batch: int = 500) -> int:
    """Remove up to `batch` dead letters that failed before `older_than` (epoch); returns how many."""
    index_unindexed(r, tenant, batch)
    doomed = r.zrangebyscore(keys.dead_letters_by_time(tenant), "-inf", older_than, start=0, num=batch)
    if not doomed:
        return 0
    return remove_dead_letters(r, tenant, doomed)  # entries without a letter (older versions) go too


def trim_replayed(r: redis.Redis, tenant: str, older_than: float, batch: int = 500) -> int:
    """Remove replayed letters an older version kept in Redis whose replay is older than
    `older_than` (epoch): one bounded step of a sweep through the hash that resumes where the
    previous call stopped."""
    key, cursor_key = keys.dead_letters_replayed(tenant), keys.dead_letters_replayed_cursor(tenant)
    cursor = int(r.get(cursor_key) or 0)
    cursor, items = r.hscan(key, cursor, count=batch)
    doomed = []
    for item_id, raw in items.items():
        try:
            replayed_at = _epoch(json.loads(raw).get("replayedAt", ""))
        except ValueError:
            replayed_at = 0.0
        if replayed_at < older_than:
            doomed.append(item_id)
    pipe = r.pipeline()
    if doomed:
        pipe.hdel(key, *doomed)
        pipe.srem(keys.dead_letters_auto_retried(tenant), *doomed)
    if cursor:
        pipe.set(cursor_key, cursor, ex=86400)
    else:
        pipe.delete(cursor_key)
    pipe.execute()
    return len(doomed)


def record_exception(
    r: redis.Redis,
    tenant: str,
    item_id: str,
    stage: Stage,
    exc: BaseException,
    payload: dict[str, Any],
    attempts: int = 1,
) -> None:
    """Dead-letter one item that failed with `exc` (a vendor refused it for good, say)."""
    record_dead_letter(
        r,
        tenant,
        item_id,
        stage=stage,
        error_class=error_class_of(exc),
        reason=reason_of(exc),
        attempts=attempts,
        payload=payload,
    )
