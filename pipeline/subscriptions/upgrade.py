"""Upgrade in place: subscriptions that an earlier version kept whole in Redis move into the history store.

Before the history store held subscriptions, each one was a Redis hash (`state`, `contactMatch`)
kept while it lived, and the contact index was named by the plain contact key. A deployment
upgraded in place still holds them; `move_subscriptions_to_store` moves them in bounded steps
(the mover framework of pipeline/upkeep/ calls it until it answers cursor 0). Until it has run,
render reads the old index too (`live_subscriptions`), and a webhook for an old hash moves that
subscription itself (its merge gives the hash a version, and the flush writes it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from pipeline.infra import keys
from pipeline.stores import subscription_records
from pipeline.subscriptions.subscription_rows import index_entry, indexed_as, store_row
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
        bucket, field = index_entry(r, tenant, key)
        names = [
            keys.subscription(tenant, subscription_id),
            keys.legacy_contact_subscriptions(tenant, key),
            bucket,
        ]
        live = int(bool(row["live"] and key))
        retired = retire(keys=names, args=[subscription_id, field, live])
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


# One id of the index as an older version named it (the unkeyed digest) joins its contact's entry
# under the keyed name when live, and leaves the old entry; only while the old entry still holds
# it: a change merged since it was read (an end, another contact key, an erasure) took it out of
# the old entry already, and put it where it belongs itself (index_change_in).
# KEYS: the old bucket, the new bucket. ARGV: the old field, the id, the new field, 1 when live.
_RENAME = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
local kept, found = {}, false
for id in string.gmatch(held, '%S+') do
  if id == ARGV[2] then found = true else kept[#kept + 1] = id end
end
if not found then return 0 end
if #kept == 0 then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, ' ')) end
if ARGV[4] == '1' then
  local ids = {}
  for id in string.gmatch(redis.call('HGET', KEYS[2], ARGV[3]) or '', '%S+') do
    if id ~= ARGV[2] then ids[#ids + 1] = id end
  end
  ids[#ids + 1] = ARGV[2]
  table.sort(ids)
  redis.call('HSET', KEYS[2], ARGV[3], table.concat(ids, ' '))
end
return 1
"""

STORE_READ = 500  # subscriptions read from the store per query


def rename_index_batch(rt: Runtime, tenant: str, buckets: list[str], pipe: redis.client.Pipeline) -> None:
    """Queue in `pipe` the move of every id these old buckets hold to its contact's entry under
    the keyed name (one command per id, answering 1 when it moved). The contact key cannot be
    read back from a digest, so it comes from the subscription itself: its working copy in
    Redis, else the history store's row; an id with neither (nothing left to send to) only leaves.
    The store away raises: nothing is queued, and the walk takes the batch again."""
    r = rt.redis
    read = r.pipeline(transaction=False)
    for bucket in buckets:
        read.hgetall(bucket)
    entries = [
        (bucket, field, subscription_id)
        for bucket, held in zip(buckets, read.execute(), strict=True)
        for field, ids in held.items()
        for subscription_id in ids.split()
    ]
    ids = sorted({subscription_id for _bucket, _field, subscription_id in entries})
    read = r.pipeline(transaction=False)
    for subscription_id in ids:
        read.hget(keys.subscription(tenant, subscription_id), "state")
    indexed: dict[str, tuple[str, bool]] = {}
    for subscription_id, state in zip(ids, read.execute(), strict=True):
        if state:
            indexed[subscription_id] = indexed_as(json.loads(state))
    missing = [subscription_id for subscription_id in ids if subscription_id not in indexed]
    for start in range(0, len(missing), STORE_READ):
        stored = subscription_records.load(rt.history, tenant, missing[start : start + STORE_READ])
        for subscription_id, row in stored.items():
            indexed[subscription_id] = (row["contact_key"], bool(row["live"]))
    rename = r.register_script(_RENAME)
    for bucket, field, subscription_id in entries:
        key, live = indexed.get(subscription_id, ("", False))
        new_bucket, new_field = index_entry(r, tenant, key) if key else (bucket, field)
        rename(
            keys=[bucket, new_bucket],
            args=[field, subscription_id, new_field, int(live and bool(key))],
            client=pipe,
        )
