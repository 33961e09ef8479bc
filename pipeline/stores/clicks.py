"""Following a tracked link (pipeline/journeys/links.py) and counting the click: one Redis script.

The script answers the link's target from the execution's record (`links`, a JSON list) when
the token's bind is the one stored for the link (`linkTags`; the caller then recomputes it on
the target) and, for a click, counts in the same call, so exactly under
any concurrency: on the record, `clicks` += 1 and `firstClickedAt` (set once); in the tenant's day
figures (pipeline/stores/performance.py) `clicks` for the tenant, the activity and the template,
and `clickers` on the execution's first click; a status row for the status outbox (the flush
rebuilds it from the record: pipeline/journeys/executions.py, `current_status_rows`), so the
status data extension's `Clicks` and `FirstClickedAt` follow; and the history outbox, so the
history store holds the counts once the record leaves Redis again. `updatedAt` moves, so an
archive that read the record before the click leaves it (its check of updatedAt fails) and the
store never goes back to fewer clicks.

Repeated clicks on one event's links within CLICK_REPEAT_SECONDS (a setting) count once: a double tap, a
link opened in two apps, or one holder of a link calling it in a loop are redirected but write
nothing, so what one link can make us write (counters, outbox entries, SFMC rows) is bounded
by time, not by requests.

A record that left Redis (archived to a tombstone, or past the tombstone) answers ARCHIVED: the
caller reads the store's copy, restores it and calls again (as a late webhook does:
pipeline/journeys/executions.py, `move_whole`); a copy the restore finds older than the tombstone
is read again (pipeline/stores/ledger.py, `_RESTORE`). One round trip for a click on a record in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from pipeline.infra import keys
from pipeline.stores.performance import COUNT_DAY_LUA, Figure
from pipeline.vocabulary import OutboxKind

FOUND, NOT_FOUND, ARCHIVED = 1, 0, -1

# KEYS: exec hash, the day's performance hash, status outbox, history outbox;
# ARGV: now (iso), the performance hash's ttl, execution id, link index (0-based), '1' to count,
#       the token's bind (hex: compared with the link's in `linkTags` before anything counts),
#       CLICK_REPEAT_SECONDS
# Answers {FOUND, target, clicks, 1 on the first click}, {NOT_FOUND} or {ARCHIVED}.
_FOLLOW = (
    COUNT_DAY_LUA
    + f"""
local f = redis.call('HMGET', KEYS[1], 'status', 'archived', 'links', 'linkTags')
if not f[1] or f[2] == '1' then return {{{ARCHIVED}}} end
if not f[3] then return {{{NOT_FOUND}}} end
local ok, targets = pcall(cjson.decode, f[3])
if not ok or type(targets) ~= 'table' then return {{{NOT_FOUND}}} end
local target = targets[tonumber(ARGV[4]) + 1]
if type(target) ~= 'string' then return {{{NOT_FOUND}}} end
local at = tonumber(ARGV[4]) * 4 + 1
if string.sub(f[4] or '', at, at + 3) ~= ARGV[6] then return {{{NOT_FOUND}}} end
if ARGV[5] ~= '1' then return {{{FOUND}, target, 0, 0}} end
local clock = redis.call('TIME')  -- Redis's own clock: the scripts' order is the clicks' order
local now_s = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local last = tonumber(redis.call('HGET', KEYS[1], 'lastClickAt') or '')
if last and now_s - last < tonumber(ARGV[7]) then return {{{FOUND}, target, 0, 0}} end
redis.call('HSET', KEYS[1], 'lastClickAt', string.format('%.6f', now_s))
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
if f[1] ~= 'queued' then redis.call('XADD', KEYS[4], '*', 'p', cjson.encode({{executionId = ARGV[3]}})) end
return {{{FOUND}, target, clicks, first}}
"""
)


@dataclass(frozen=True)
class Followed:
    status: int  # FOUND, NOT_FOUND, or ARCHIVED (the record is not whole in Redis)
    target: str | None = None
    clicks: int = 0  # after this click (0: not counted)
    first: bool = False


class ClickCounter:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._follow = r.register_script(_FOLLOW)

    def follow(
        self,
        tenant: str,
        execution_id: str,
        index: int,
        bind: str,
        count: bool,
        day: str,
        performance_ttl: int,
        now: str,
        repeat_seconds: float,
    ) -> Followed:
        """The stored target of link `index` when `bind` (hex) is the link's, counted as a click
        with `count` unless the execution's last click was under CLICK_REPEAT_SECONDS ago (the
        status outbox's group must exist: Outbox.ensure_group)."""
        names = [
            keys.execution(tenant, execution_id),
            keys.performance_day(tenant, day or "-"),
            keys.outbox(tenant, OutboxKind.STATUS_ROWS),
            keys.outbox(tenant, OutboxKind.HISTORY),
        ]
        args = [
            now,
            performance_ttl,
            execution_id,
            index,
            "1" if count else "0",
            bind,
            repeat_seconds,
        ]
        answer = self._follow(keys=names, args=args)
        if int(answer[0]) != FOUND:
            return Followed(int(answer[0]))
        return Followed(FOUND, str(answer[1]), int(answer[2]), bool(int(answer[3])))
