"""The dead-letter store: what failed for good, with enough to understand and replay it.

Retention: each dead letter is also indexed by its failure time (`dlq-by-time`), so the
reconciler removes the ones older than DEAD_LETTER_RETENTION_DAYS in bounded steps
(`trim_dead_letters`); replayed letters (`dlq-replayed`, kept for audit) go after the same
time from their replay (`trim_replayed`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import redis

from pipeline.ledger import now_iso
from pipeline.store import tenant_key
from pipeline.vocabulary import Stage


def dead_letter_key(tenant: str) -> str:
    """The tenant's dead-letter store: a hash, item id -> JSON record."""
    return tenant_key(tenant, "dlq")


def dead_letter_index_key(tenant: str) -> str:
    """Sorted set item id -> failedAt (epoch seconds): what retention trims by."""
    return tenant_key(tenant, "dlq-by-time")


def replayed_key(tenant: str) -> str:
    """Replayed dead letters, kept for audit: a hash, item id -> JSON record with `replayedAt`."""
    return tenant_key(tenant, "dlq-replayed")


def auto_retried_key(tenant: str) -> str:
    """Ids of the dead letters the reconciler retried once automatically (a set)."""
    return tenant_key(tenant, "dlq-auto-retried")


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return 0.0  # unreadable: the oldest, so retention takes it first


def count_dead_letters(r: redis.Redis, tenant: str) -> int:
    return int(r.hlen(dead_letter_key(tenant)))


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
    pipe.hset(dead_letter_key(tenant), item_id, json.dumps(record, sort_keys=True))
    pipe.zadd(dead_letter_index_key(tenant), {item_id: time.time()})
    pipe.execute()


def remove_dead_letters(r: redis.Redis, tenant: str, item_ids: list[str]) -> int:
    """Remove dead letters (and their index entry and auto-retry marker); returns how many were stored."""
    if not item_ids:
        return 0
    pipe = r.pipeline()
    pipe.hdel(dead_letter_key(tenant), *item_ids)
    pipe.zrem(dead_letter_index_key(tenant), *item_ids)
    pipe.srem(auto_retried_key(tenant), *item_ids)
    removed, _, _ = pipe.execute()
    return int(removed)


def index_unindexed(r: redis.Redis, tenant: str, batch: int = 500) -> int:
    """Dead letters written before the time index existed get their entry (bounded: `batch` per
    call, while the hash holds more items than the index)."""
    key, index = dead_letter_key(tenant), dead_letter_index_key(tenant)
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
    doomed = r.zrangebyscore(dead_letter_index_key(tenant), "-inf", older_than, start=0, num=batch)
    if not doomed:
        return 0
    removed = remove_dead_letters(r, tenant, doomed)
    # index entries whose letter went another way (replayed, purged) go too
    r.zrem(dead_letter_index_key(tenant), *doomed)
    return removed


def trim_replayed(r: redis.Redis, tenant: str, older_than: float, batch: int = 500) -> int:
    """Remove replayed letters whose replay is older than `older_than` (epoch): one bounded step of
    a sweep through the hash that resumes where the previous call stopped."""
    key, cursor_key = replayed_key(tenant), tenant_key(tenant, "dlq-replayed-cursor")
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
        pipe.srem(auto_retried_key(tenant), *doomed)
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
