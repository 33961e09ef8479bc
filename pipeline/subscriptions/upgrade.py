"""Upgrade in place: subscriptions that an earlier version kept whole in Redis move into the history store.

Before the history store held subscriptions, each one was a Redis hash (`state`, `contactMatch`)
kept while it lived, and the contact index was named by the plain contact key. A deployment
upgraded in place still holds them; `move_subscriptions_to_store` moves them in bounded steps
(the mover framework of pipeline/upkeep/ calls it until it answers cursor 0). Until it has run,
render reads the old index too (`live_subscriptions`), and a webhook for an old hash moves that
subscription itself (its merge gives the hash a version, and the flush writes it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.infra import keys
from pipeline.stores import subscription_records
from pipeline.subscriptions.subscription_rows import store_row
from pipeline.tenancy.handles import Runtime

# One old hash, once the store holds it: gone, unless a webhook merged into it meanwhile (it has a
# version then, and the flush owns it); its id leaves the old index and, when live, joins the new.
# KEYS: the hash, the new index, the old index. ARGV: the subscription id, 1 when live, the index's
# expiry in seconds (0: none).
_RETIRE = """
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], ARGV[1])
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
  if tonumber(ARGV[3]) > 0 then
    redis.call('EXPIRE', KEYS[2], ARGV[3])
  end
end
return 1
"""


@dataclass
class MoveStep:
    """What one step did, and where the next one starts (0: done)."""

    cursor: int
    moved: int = 0
    skipped: int = 0  # working copies (the flush writes them) and hashes holding no state


def move_subscriptions_to_store(rt: Runtime, tenant: str, cursor: int = 0, batch: int = 500) -> MoveStep:
    """One bounded step: SCAN on from `cursor` over the tenant's subscription hashes (about `batch`
    keys), write the old ones to the store in one upsert, then retire each from Redis.

    Resumable: a step that fails (the store away) moved nothing it did not also retire, and is
    run again from the same cursor; a hash moved is gone, so a key SCAN returns twice is read
    once. An old hash is written at version 0: any version a webhook made since wins.
    """
    r = rt.redis
    prefix = keys.subscription(tenant, "")
    cursor, names = r.scan(cursor=cursor, match=prefix + "*", count=batch)
    step = MoveStep(cursor=int(cursor))
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
        pipe.ttl(name)
    found = pipe.execute()
    rows = []
    for name, held, ttl in zip(names, found[::2], found[1::2], strict=True):
        if not held.get("state") or held.get("v"):
            step.skipped += 1
            continue
        row = store_row(tenant, name[len(prefix) :], {**held, "v": "0"})
        row["updated_at"] = _last_write(rt, row["live"], ttl)
        rows.append(row)
    subscription_records.upsert_subscriptions(rt.history, rows)
    retire = r.register_script(_RETIRE)
    days = float(rt.settings.subscription_retention_days)
    for row in rows:
        key = row["contact_key"]
        live = bool(row["live"] and key)
        retired = retire(
            keys=[
                keys.subscription(tenant, row["subscription_id"]),
                keys.contact_subscriptions(tenant, keys.contact_digest(key)),
                keys.legacy_contact_subscriptions(tenant, key),
            ],
            args=[row["subscription_id"], int(live), int(days * 86400)],
        )
        step.moved += int(retired)
        step.skipped += int(not retired)
    return step


def _last_write(rt: Runtime, live: bool, ttl: int) -> str:
    """When an old hash was last written, as well as its TTL tells (retention counts from its
    last write); now when it had none (a live subscription kept while live)."""
    now = time.time()
    days = rt.settings.subscription_retention_days if live else rt.settings.ended_subscription_retention_days
    written = now - (days * 86400 - ttl) if ttl > 0 and days > 0 else now
    return datetime.fromtimestamp(written, UTC).isoformat(timespec="milliseconds")
