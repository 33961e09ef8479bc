"""Event templates kept in Redis per tenant (created with `rokt-sfmc templates create`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from pipeline.store import tenant_key
from schemas.templates import TemplateSchema


class TemplateNotFound(LookupError):
    pass


def _index(tenant: str) -> str:
    return tenant_key(tenant, "templates")


def create_template(r: redis.Redis, tenant: str, document: dict[str, Any]) -> dict[str, Any]:
    """Validate (raises marshmallow.ValidationError) and store; returns the stored template."""
    loaded = TemplateSchema().load(document)
    stored = {
        **loaded,
        "id": "tpl-" + uuid.uuid4().hex[:16],
        "tenant": tenant,
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    r.hset(_index(tenant), stored["id"], json.dumps(stored, sort_keys=True))
    return stored


def get_template(r: redis.Redis, tenant: str, template_id: str) -> dict[str, Any]:
    raw = r.hget(_index(tenant), template_id)
    if raw is None:
        raise TemplateNotFound(f"template {template_id!r} not found for tenant {tenant!r}")
    return json.loads(raw)


def list_templates(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    items = [json.loads(raw) for raw in r.hvals(_index(tenant))]
    return sorted(items, key=lambda t: (t["createdAt"], t["id"]))
