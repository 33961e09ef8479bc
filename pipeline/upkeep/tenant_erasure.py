"""Erasing a brand that leaves (`rokt-sfmc tenants erase`): everything this deployment holds of
one tenant, so nothing of it is kept past its contract, its day figures included.

Only a disabled tenant is erased, so nothing new arrives meanwhile (executes and webhooks answer
503, workers leave its work). The steps go in an order that can be run again after a failure:
its Redis keys (every one under `rsf:<tenant>:`, in batches), then its history-store rows
(executions, dead letters, subscriptions, webhook receipts), and last its registry record, so a
tenant whose erasure stopped half-way is still there, disabled, to be erased again. What lives
in the brand's own accounts (the SFMC data extensions, the events in Rokt calendars) is theirs
and stays.
"""

from __future__ import annotations

from typing import Any

from pipeline.infra import keys
from pipeline.stores import subscription_records
from pipeline.stores.history import dead_letters, executions
from pipeline.tenancy.handles import Runtime, UnknownTenant
from pipeline.vocabulary import TenantStatus

SCAN_COUNT = 1000


class TenantNotDisabled(ValueError):
    """Only a disabled tenant is erased (`rokt-sfmc tenants disable` first)."""


def erase_tenant(rt: Runtime, name: str) -> dict[str, Any]:
    """Erase the tenant `name`; returns what went (Redis keys, store rows, the registry record).
    A tenant no longer in the registry (an earlier erasure stopped after its data) is erased
    all the same."""
    try:
        tenant = rt.tenant(name)
    except UnknownTenant:
        tenant = None
    if tenant is not None and tenant.pinned:
        raise TenantNotDisabled(
            f"tenant {name!r} is pinned: remove it from TENANTS_FILE or the environment first"
        )
    if tenant is not None and tenant.status != TenantStatus.DISABLED:
        raise TenantNotDisabled(
            f"tenant {name!r} is {tenant.status}: disable it first (rokt-sfmc tenants disable)"
        )
    removed_keys = 0
    batch: list[str] = []
    for key in rt.redis.scan_iter(match=keys.tenant_prefix(name) + "*", count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed_keys += int(rt.redis.unlink(*batch))
            batch = []
    if batch:
        removed_keys += int(rt.redis.unlink(*batch))
    rows: dict[str, int] = {}
    tables = (
        executions,
        dead_letters,
        subscription_records.subscriptions,
        subscription_records.webhook_receipts,
    )
    with rt.history.engine.begin() as connection:
        for table in tables:
            done = connection.execute(table.delete().where(table.c.tenant == name))
            rows[table.name] = int(done.rowcount or 0)
    registered = rt.registry.remove(name) if tenant is not None else False
    return {"tenant": name, "redisKeys": removed_keys, "historyRows": rows, "registry": registered}
