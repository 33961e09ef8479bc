"""Clicks on tracked links (pipeline/journeys/links.py), counted in one Redis script.

A followed link counts, in the same script and so exactly under any concurrency: on the
execution's record, `clicks` += 1 and `firstClickedAt` (set once); in the tenant's day figures
(pipeline/stores/performance.py) `clicks` for the tenant, the activity and the template, and
`clickers` on the execution's first click; a status row for the status outbox (the flush rebuilds
it from the record: pipeline/journeys/executions.py, `current_status_rows`), so the status data
extension's `Clicks` and `FirstClickedAt` follow; and the history outbox, so the history store
holds the counts once the record leaves Redis again. `updatedAt` moves, so an archive that read the
record before the click leaves it (its check of updatedAt fails) and the store never goes back.

A record that left Redis (archived to a tombstone, or past the tombstone) is not counted here: the
script answers ARCHIVED, the caller restores the record from the history store and calls again
(as a late webhook does: pipeline/journeys/executions.py, `move_whole`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from pipeline.infra import keys
from pipeline.stores.performance import COUNT_DAY_LUA, Figure
from pipeline.vocabulary import OutboxKind

COUNTED, ARCHIVED = 1, -1

# KEYS: exec hash, the day's performance hash, status outbox, history outbox;
# ARGV: now (iso), the performance hash's ttl, execution id
# Answers {COUNTED, clicks, 1 on the first click} or {ARCHIVED} (a tombstone or nothing).
_CLICK = (
    COUNT_DAY_LUA
    + f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'archived') == '1' then return {{{ARCHIVED}}} end
local clicks = redis.call('HINCRBY', KEYS[1], 'clicks', 1)
local first = redis.call('HSETNX', KEYS[1], 'firstClickedAt', ARGV[1])
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[1])
local activity = redis.call('HGET', KEYS[1], 'activityId')
local template = redis.call('HGET', KEYS[1], 'templateId')
local ttl = tonumber(ARGV[2])
count_day(KEYS[2], ttl, activity, template, '{Figure.CLICKS}', 1)
if first == 1 then count_day(KEYS[2], ttl, activity, template, '{Figure.CLICKERS}', 1) end
local row = {{keys = {{ContactKey = redis.call('HGET', KEYS[1], 'contactKey') or '', ExecutionId = ARGV[3]}},
             values = {{Clicks = clicks, FirstClickedAt = redis.call('HGET', KEYS[1], 'firstClickedAt')}}}}
redis.call('XADD', KEYS[3], '*', 'p', cjson.encode(row))
if status ~= 'queued' then redis.call('XADD', KEYS[4], '*', 'p', cjson.encode({{executionId = ARGV[3]}})) end
return {{{COUNTED}, clicks, first}}
"""
)


@dataclass(frozen=True)
class Click:
    counted: bool  # False: the record is not whole in Redis (restore it, then count again)
    clicks: int = 0
    first: bool = False


class ClickCounter:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._click = r.register_script(_CLICK)

    def count(self, tenant: str, execution_id: str, day: str, performance_ttl: int, now: str) -> Click:
        """Count one followed link of the execution (the status outbox's group must exist:
        Outbox.ensure_group)."""
        names = [
            keys.execution(tenant, execution_id),
            keys.performance_day(tenant, day),
            keys.outbox(tenant, OutboxKind.STATUS_ROWS),
            keys.outbox(tenant, OutboxKind.HISTORY),
        ]
        answer = self._click(keys=names, args=[now, performance_ttl, execution_id])
        if int(answer[0]) != COUNTED:
            return Click(False)
        return Click(True, int(answer[1]), bool(int(answer[2])))
