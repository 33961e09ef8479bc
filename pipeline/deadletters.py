"""The dead-letter store: what failed for good, with enough to understand and replay it."""

from __future__ import annotations

import json
from typing import Any

import redis

from pipeline.ledger import now_iso
from pipeline.store import tenant_key
from pipeline.vocabulary import Stage


def dead_letter_key(tenant: str) -> str:
    """The tenant's dead-letter store: a hash, item id -> JSON record."""
    return tenant_key(tenant, "dlq")


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
    r.hset(dead_letter_key(tenant), item_id, json.dumps(record, sort_keys=True))


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
