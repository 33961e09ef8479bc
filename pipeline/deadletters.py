"""The dead-letter store: what failed for good, with enough to understand and replay it."""

from __future__ import annotations

import json
from typing import Any

import redis

from pipeline.clients.errors import ClientError
from pipeline.ledger import now_iso
from pipeline.store import tenant_key


def record_dead_letter(
    r: redis.Redis,
    tenant: str,
    item_id: str,
    *,
    stage: str,
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
    r.hset(tenant_key(tenant, "dlq"), item_id, json.dumps(record, sort_keys=True))


def record_rejection(
    r: redis.Redis, tenant: str, item_id: str, stage: str, exc: ClientError, payload: dict[str, Any]
) -> None:
    """A vendor refused this one item for good (after bisecting its batch)."""
    record_dead_letter(
        r,
        tenant,
        item_id,
        stage=stage,
        error_class=exc.error_class,
        reason=exc.reason,
        attempts=1,
        payload=payload,
    )
