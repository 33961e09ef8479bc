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
# version then and the flush owns it, or the flush dropped it already; its merge moved the index
# entry too); its id leaves the old index and, when live, joins its contact's entry in the new
# one (as index_change_in does).
# KEYS: the hash, the old index, the new index's bucket. ARGV: the subscription id, the contact's
# field in the bucket, 1 when live.
_RETIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  return 0  -- merged since it was read (and maybe flushed and dropped): the merge moved its index
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if ARGV[3] == '1' then
  local held = redis.call('HGET', KEYS[3], ARGV[2])
  local ids = {}
  if held then
    for id in string.gmatch(held, '%S+') do
      if id ~= ARGV[1] then ids[#ids + 1] = id end
    end
  end
  ids[#ids + 1] = ARGV[1]
  table.sort(ids)
  redis.call('HSET', KEYS[3], ARGV[2], table.concat(ids, ' '))
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
    for row in rows:
        key, subscription_id = row["contact_key"], row["subscription_id"]
        digest = keys.contact_digest(key)
        names = [
            keys.subscription(tenant, subscription_id),
            keys.legacy_contact_subscriptions(tenant, key),
            keys.contact_subscriptions(tenant, digest),
        ]
        live = int(bool(row["live"] and key))
        retired = retire(keys=names, args=[subscription_id, keys.contact_subscriptions_field(digest), live])
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
