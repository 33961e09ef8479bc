"""Event templates kept in Redis per tenant: the domain functions behind the CLI's `templates`
commands and the `/t/<tenant>/api/templates` routes (one implementation for both)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from marshmallow import ValidationError

from pipeline.infra import keys
from pipeline.journeys.render import PLACEHOLDER, RENDERED_FIELDS
from pipeline.stores.ledger import Ledger
from schemas.templates import READ_ONLY_FIELDS, TemplateSchema

# what archiving adds to a stored template (kept by an edit, removed by a restore)
ARCHIVE_FIELDS = ("archivedAt", "cancelJob")


class TemplateNotFound(LookupError):
    pass


class TemplateInUse(Exception):
    """A template cannot be deleted while executions of it are not terminal."""

    def __init__(self, template_id: str, open_executions: int) -> None:
        super().__init__(
            f"template {template_id!r} is used by {open_executions} execution(s) not yet finished"
        )
        self.template_id = template_id
        self.open_executions = open_executions


def _now() -> str:
    # microseconds, so that templates created in the same second still sort newest first
    return datetime.now(UTC).isoformat(timespec="microseconds")


def create_template(r: redis.Redis, tenant: str, document: dict[str, Any]) -> dict[str, Any]:
    """Validate (raises marshmallow.ValidationError) and store; returns the stored template."""
    loaded = TemplateSchema().load(document)
    now = _now()
    stored = {
        **loaded,
        "id": "tpl-" + uuid.uuid4().hex[:16],
        "tenant": tenant,
        "createdAt": now,
        "updatedAt": now,
    }
    r.hset(keys.templates(tenant), stored["id"], json.dumps(stored, sort_keys=True))
    return stored


def get_template(r: redis.Redis, tenant: str, template_id: str) -> dict[str, Any]:
    raw = r.hget(keys.templates(tenant), template_id)
    if raw is None:
        raise TemplateNotFound(f"template {template_id!r} not found for tenant {tenant!r}")
    return json.loads(raw)


def update_template(
    r: redis.Redis, tenant: str, template_id: str, document: dict[str, Any]
) -> dict[str, Any]:
    """Replace a template's content (validated like a new one; raises ValidationError or
    TemplateNotFound), keeping its id and createdAt; sets updatedAt. A template deleted
    meanwhile is not brought back. The read-only fields of a stored template (id, createdAt,
    ...) may be sent back as read: they are ignored, except an `id` naming another template."""
    if "id" in document and document["id"] != template_id:
        raise ValidationError({"id": [f"must be {template_id!r} (the template updated) or absent"]})
    loaded = TemplateSchema().load({k: v for k, v in document.items() if k not in READ_ONLY_FIELDS})

    def replaced(current: dict[str, Any]) -> dict[str, Any]:
        return {
            **loaded,
            **{name: current[name] for name in ARCHIVE_FIELDS if name in current},
            "id": template_id,
            "tenant": tenant,
            "createdAt": current.get("createdAt") or _now(),
            "updatedAt": _now(),
        }

    return _rewrite(r, tenant, template_id, replaced)


def delete_template(r: redis.Redis, tenant: str, template_id: str, ledger: Ledger | None = None) -> None:
    """Delete a template; TemplateInUse while the ledger counts executions of it that are not
    terminal, TemplateNotFound when there is none."""
    ledger = ledger or Ledger(r)
    open_executions = ledger.open_count_for_template(tenant, template_id)
    if open_executions > 0:
        raise TemplateInUse(template_id, open_executions)
    if not r.hdel(keys.templates(tenant), template_id):
        raise TemplateNotFound(f"template {template_id!r} not found for tenant {tenant!r}")


def archive_template(r: redis.Redis, tenant: str, template_id: str, job_id: str = "") -> dict[str, Any]:
    """Archive a template (its events are being cancelled): executions of it are no longer sent,
    they end `cancelled`. Raises TemplateNotFound."""
    return _set_archived(r, tenant, template_id, {"archivedAt": _now(), "cancelJob": job_id})


def restore_template(r: redis.Redis, tenant: str, template_id: str) -> dict[str, Any]:
    """Restore an archived template for the contacts who reach its step from now on; the events
    cancelled stay cancelled (their executions are final). Raises TemplateNotFound."""
    return _set_archived(r, tenant, template_id, None)


def _set_archived(
    r: redis.Redis, tenant: str, template_id: str, marks: dict[str, str] | None
) -> dict[str, Any]:
    def marked(current: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in current.items() if k not in ARCHIVE_FIELDS}, **(marks or {})}

    def index(pipe: redis.client.Pipeline) -> None:
        if marks:
            pipe.sadd(keys.archived_templates(tenant), template_id)
        else:
            pipe.srem(keys.archived_templates(tenant), template_id)

    return _rewrite(r, tenant, template_id, marked, index)


def _rewrite(
    r: redis.Redis,
    tenant: str,
    template_id: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    also: Callable[[redis.client.Pipeline], None] | None = None,
) -> dict[str, Any]:
    """Store `change(the stored template)` in place of the template, and `also`'s writes in the
    same transaction, unless it changed meanwhile (then again); TemplateNotFound when it is not
    stored (a template deleted meanwhile is not brought back)."""
    key = keys.templates(tenant)
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = pipe.hget(key, template_id)
                if raw is None:
                    raise TemplateNotFound(f"template {template_id!r} not found for tenant {tenant!r}")
                stored = change(json.loads(raw))
                pipe.multi()
                pipe.hset(key, template_id, json.dumps(stored, sort_keys=True))
                if also is not None:
                    also(pipe)
                pipe.execute()
                return stored
            except redis.WatchError:
                continue


def list_templates(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    """Every template of the tenant, oldest first (the CLI's `templates list`)."""
    items = [json.loads(raw) for raw in r.hvals(keys.templates(tenant))]
    return sorted(items, key=lambda t: (_created(t), t["id"]))


def _created(template: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(template.get("createdAt") or "")
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def search_templates(
    r: redis.Redis, tenant: str, q: str = "", page: int = 1, per_page: int = 20
) -> tuple[list[dict[str, Any]], int]:
    """One page of the tenant's templates, newest first, whose name or title contains `q`
    (case-insensitive; empty matches all); returns (items, total matches)."""
    needle = q.strip().casefold()
    matches = [
        t
        for t in (json.loads(raw) for raw in r.hvals(keys.templates(tenant)))
        if not needle
        or needle in (t.get("name") or "").casefold()
        or needle in (t.get("title") or "").casefold()
    ]
    matches.sort(key=lambda t: (_created(t), t["id"]), reverse=True)
    start = (max(page, 1) - 1) * per_page
    return matches[start : start + per_page], len(matches)


def placeholders(template: dict[str, Any]) -> list[dict[str, str | None]]:
    """The template's `{{placeholders}}` in order of first use (title, description, location,
    start, end), each once, with the default its first use carries (None without one)."""
    found: dict[str, str | None] = {}
    for field in RENDERED_FIELDS:
        for match in PLACEHOLDER.finditer(template.get(field) or ""):
            name = match.group("name")
            if name in found:
                continue
            default = match.group("default")
            found[name] = None if default is None else re.sub(r"\\(.)", r"\1", default)
    return [{"name": name, "default": default} for name, default in found.items()]
