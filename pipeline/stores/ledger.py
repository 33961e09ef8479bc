"""The execution ledger: idempotency and state of every Journey Builder execution.

One Redis hash per execution, keyed by the execution id derived from Salesforce's dedupe pair
(`activityId` + `definitionInstanceId`). The web claims it with a set-if-absent script, so a
JB retry finds the claim and enqueues nothing; tasks move it through its states with a guarded
transition script, so a redelivered task never moves a finished execution again. The ledger
(not Celery results) is the record of what happened.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.stores import performance
from pipeline.stores.performance import COUNT_DAY_LUA, FAILED_AS, MOVE_FIGURES
from pipeline.vocabulary import ARCHIVED_STATES, NEXT_STATES, TERMINAL_STATES, OutboxKind, State

EXECUTION_NS = uuid.UUID("6f1b0f64-8a52-4a8e-9a53-0c2d6a5e7c11")
EVENT_NS = uuid.UUID("a3c1f0de-2f4b-4c6e-8d7a-5b9e1e0f4d22")
# An event job's change at Rokt in progress, on the execution it changes: `<kind>:<job id>`, set
# before the job's Rokt call and cleared by the job's move ('' then). Rokt's webhook for that very
# change (its echo) may land in between; the webhook's move names the job kind it would echo, and
# the transition script leaves such an execution to the job (pipeline/journeys/event_jobs.py).
PENDING_FIELD = "pendingChange"
PENDING = "pending"  # the transition's answer for an execution left to the job changing it

# Per-tenant counters kept by the scripts below, so they stay exact under concurrency:
# - `template-open` (hash templateId -> executions of it still `queued`), for refusing to delete
#   a template in use;
# - per activity (`activity:<activityId>:counts`, hash state -> executions in it, and
#   `activity:<activityId>:failures` and `:missing`, sorted sets reason -> executions), for the
#   running journey's live counts.
# Only executions claimed with the `tracked` field move these counters (so executions claimed
# before the counters existed never drive them negative). Each write gives the counter keys the
# ledger's TTL again, so they outlive every execution they count. Activity keys are built inside
# the scripts from the tenant prefix and the execution's own `activityId`.

# KEYS: exec hash, open set, counts, eventId index, template-open hash, last-execute time,
#       contact index (execution ids of one contact key, for `rokt-sfmc forget`),
#       intake stream (pipeline/journeys/intake.py: the pump publishes its entries to the broker),
#       the day's performance hash (a new execution counts as `entered`, and names its
#       activity's journey: `j:<activityId>`, what the performance rows look names up by);
# ARGV: ttl, now, execution id, tenant prefix, the performance hash's ttl, field/value pairs
# A new execution is stored and appended to the intake stream in this one script: once Redis has
# it, the pump will enqueue it, whatever the broker is doing (no claimed-but-not-enqueued window).
# The entry's id is kept in the record (`intakeId`), so an erasure deletes that entry by its id
# instead of reading the whole stream (which is longest when the broker is down).
_CLAIM = (
    COUNT_DAY_LUA
    + """
redis.call('SET', KEYS[6], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
local contact = redis.call('HGET', KEYS[1], 'contactKey')
if contact and contact ~= '' then
  redis.call('SADD', KEYS[7], ARGV[3])
  redis.call('EXPIRE', KEYS[7], tonumber(ARGV[1]))
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), KEYS[1])
redis.call('HINCRBY', KEYS[3], 'received', 1)
redis.call('SET', KEYS[4], ARGV[3], 'EX', tonumber(ARGV[1]))
local template = redis.call('HGET', KEYS[1], 'templateId')
if template and template ~= '' then
  redis.call('HINCRBY', KEYS[5], template, 1)
  redis.call('EXPIRE', KEYS[5], tonumber(ARGV[1]))
end
local activity = redis.call('HGET', KEYS[1], 'activityId')
if activity and activity ~= '' then
  local counts = ARGV[4] .. 'activity:' .. activity .. ':counts'
  redis.call('HINCRBY', counts, 'queued', 1)
  redis.call('EXPIRE', counts, tonumber(ARGV[1]))
end
count_day(KEYS[9], tonumber(ARGV[5]), activity, template, 'entered', 1)
local journey = redis.call('HGET', KEYS[1], 'journeyId')
if activity and activity ~= '' and journey and journey ~= '' then
  redis.call('HSETNX', KEYS[9], 'j:' .. activity, journey)  -- the day's activity -> its journey
end
local entry = redis.call('XADD', KEYS[8], '*', 'x', ARGV[3])
redis.call('HSET', KEYS[1], 'intakeId', entry)
return 1
"""
)

# Lua shared by the scripts that move an execution out of `failed`: its failure reason stops
# counting in the activity's top reasons. `base` is the activity's key prefix.
_UNCOUNT_FAILURE = """
local function reasons_of(base, reason)
  if string.sub(reason, 1, 14) == 'missing_field:' then return base .. ':missing' end
  return base .. ':failures'
end
local function uncount_failure(base)
  local old = redis.call('HGET', KEYS[1], 'failureReason')
  if old then
    local set = reasons_of(base, old)
    redis.call('ZINCRBY', set, -1, old)
    redis.call('ZREMRANGEBYSCORE', set, '-inf', 0)
    redis.call('HDEL', KEYS[1], 'failureReason')
  end
end
"""

# KEYS: exec hash, open set, counts, the day's performance hash, awaiting-confirmation set,
#       template-open hash,
#       history outbox (a move to a terminal state appends the execution: the history store gets it),
#       template-sent hash (a move to accepted counts one more event of its template);
# ARGV: new status, allowed-from csv (checked against NEXT_STATES before the call), now (iso),
#       now (epoch), tenant prefix, ttl, failure reason (used when the new status is failed),
#       '1' to answer the execution's hash after the move as a third element, execution id,
#       the day's figure of the move from queued, and from elsewhere (performance.MOVE_FIGURES;
#       '' for none; `failed` comes as `failed:<stage>:<error class>`), the performance hash's
#       ttl, a kind of event job ('' for none: see PENDING_FIELD), field/value pairs
# With a kind of job given, an execution whose PENDING_FIELD names that kind does not move (answer
# {0, 'pending'}): the job is changing it at Rokt, and the job's own move is the one that counts.
_TRANSITION = (
    _UNCOUNT_FAILURE
    + COUNT_DAY_LUA
    + """
local function answer(moved, current)
  if ARGV[8] ~= '1' then return {moved, current} end
  return {moved, current, redis.call('HGETALL', KEYS[1])}
end
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return answer(0, '') end
if redis.call('HGET', KEYS[1], 'archived') == '1' then return answer(0, 'archived') end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == current then allowed = true end end
if not allowed then return answer(0, current) end
if ARGV[13] ~= '' then
  local pending = redis.call('HGET', KEYS[1], '"""
    + PENDING_FIELD
    + """') or ''
  if pending == ARGV[13] or string.sub(pending, 1, #ARGV[13] + 1) == ARGV[13] .. ':' then
    return answer(0, 'pending')
  end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updatedAt', ARGV[3])
if #ARGV > 13 then redis.call('HSET', KEYS[1], unpack(ARGV, 14)) end
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if current ~= 'queued' then redis.call('HINCRBY', KEYS[3], current, -1) end
local first_send = true
if ARGV[1] == 'accepted' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[4]), KEYS[1])
  local first_time = redis.call('HEXISTS', KEYS[1], 'acceptedAt') == 0  -- not a replay's second send
  first_send = first_time
  redis.call('HSET', KEYS[1], 'acceptedAt', ARGV[4])  -- the confirm deadline's start: the set's score moves
  local sent = redis.call('HGET', KEYS[1], 'templateId')
  if first_time and sent and sent ~= '' then redis.call('HINCRBY', KEYS[8], sent, 1) end
end
if current == 'accepted' then redis.call('ZREM', KEYS[5], KEYS[1]) end
if ARGV[1] ~= 'queued' then redis.call('XADD', KEYS[7], '*', 'p', cjson.encode({executionId = ARGV[9]})) end
local figure = ARGV[11]
if current == 'queued' then figure = ARGV[10] end
if figure ~= '' and first_send then
  count_day(KEYS[4], tonumber(ARGV[12]), redis.call('HGET', KEYS[1], 'activityId'),
            redis.call('HGET', KEYS[1], 'templateId'), figure, 1)
end
if redis.call('HGET', KEYS[1], 'tracked') == '1' and current ~= ARGV[1] then
  local ttl = tonumber(ARGV[6])
  local template = redis.call('HGET', KEYS[1], 'templateId')
  if current == 'queued' and template and template ~= '' then
    if redis.call('HINCRBY', KEYS[6], template, -1) <= 0 then redis.call('HDEL', KEYS[6], template) end
  elseif ARGV[1] == 'queued' and template and template ~= '' then
    redis.call('HINCRBY', KEYS[6], template, 1)
    redis.call('EXPIRE', KEYS[6], ttl)
  end
  local activity = redis.call('HGET', KEYS[1], 'activityId')
  if activity and activity ~= '' then
    local base = ARGV[5] .. 'activity:' .. activity
    redis.call('HINCRBY', base .. ':counts', current, -1)
    redis.call('HINCRBY', base .. ':counts', ARGV[1], 1)
    redis.call('EXPIRE', base .. ':counts', ttl)
    uncount_failure(base)
    local reason = nil
    if ARGV[1] == 'failed' then reason = ARGV[7] end
    if ARGV[1] == 'missing_field' then reason = 'missing_field:' .. ARGV[7] end
    if reason then
      local set = reasons_of(base, reason)
      redis.call('ZINCRBY', set, 1, reason)
      redis.call('EXPIRE', set, ttl)
      redis.call('HSET', KEYS[1], 'failureReason', reason)
    end
  end
end
return answer(1, current)
"""
)

# KEYS: exec hash, open set, counts, template-open hash; ARGV: now (epoch), now (iso), tenant prefix, ttl
_REOPEN = (
    _UNCOUNT_FAILURE
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0', 'error', '', 'budgetStart', ARGV[2],
           'updatedAt', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), KEYS[1])
redis.call('HINCRBY', KEYS[3], 'failed', -1)
redis.call('HINCRBY', KEYS[3], 'replayed', 1)
if redis.call('HGET', KEYS[1], 'tracked') == '1' then
  local ttl = tonumber(ARGV[4])
  local template = redis.call('HGET', KEYS[1], 'templateId')
  if template and template ~= '' then
    redis.call('HINCRBY', KEYS[4], template, 1)
    redis.call('EXPIRE', KEYS[4], ttl)
  end
  local activity = redis.call('HGET', KEYS[1], 'activityId')
  if activity and activity ~= '' then
    local base = ARGV[3] .. 'activity:' .. activity
    redis.call('HINCRBY', base .. ':counts', 'failed', -1)
    redis.call('HINCRBY', base .. ':counts', 'queued', 1)
    redis.call('EXPIRE', base .. ':counts', ttl)
    uncount_failure(base)
  end
end
return 1
"""
)

# KEYS: exec hash; ARGV: allowed-from csv, now (iso), field/value pairs
# Set fields of an execution in one of the allowed states, whole in Redis (not a tombstone),
# without moving it: nothing is counted. `updatedAt` changes too, so a flush that read the record
# before does not archive it without these fields (the archive script compares `updatedAt`).
# Answers {1 set or 0, the status found ('' none, 'archived' a tombstone)}.
_MARK = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, ''} end
if redis.call('HGET', KEYS[1], 'archived') == '1' then return {0, 'archived'} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == current then allowed = true end end
if not allowed then return {0, current} end
redis.call('HSET', KEYS[1], 'updatedAt', ARGV[2], unpack(ARGV, 3))
return {1, current}
"""

# KEYS: exec hash, open set, awaiting set, template-open hash, contact index, intake stream;
# ARGV: tenant prefix, execution id, the intake group
# Erase one execution (`rokt-sfmc forget`): the hash and its eventId index go; a queued one stops
# counting as open (template, activity); a failed one's reason stops counting among the top
# failures. Other counters stay, as when the ledger's TTL ends an execution. Its intake entry, if
# not yet pumped, goes in the same script by the id the claim recorded (checked to name this
# execution): a pump that reads the stream after this finds nothing, one that read the entry
# before publishes an execution with no record, which the render step drops.
# Answers 0 (no record), 1 (erased) or 2 (erased, but the record held no entry id: claimed by an
# older version, so its entry, if any, is for the caller to find in the stream).
_FORGET = (
    _UNCOUNT_FAILURE
    + """
redis.call('SREM', KEYS[5], ARGV[2])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local answer = 1
local entry = redis.call('HGET', KEYS[1], 'intakeId')
if entry then
  local found = redis.call('XRANGE', KEYS[6], entry, entry)
  if found[1] and found[1][2][1] == 'x' and found[1][2][2] == ARGV[2] then
    redis.call('XACK', KEYS[6], ARGV[3], entry)
    redis.call('XDEL', KEYS[6], entry)
  end
elseif redis.call('HGET', KEYS[1], 'archived') ~= '1' then
  answer = 2
end
local event = redis.call('HGET', KEYS[1], 'eventId') or ''
if redis.call('HGET', KEYS[1], 'tracked') == '1' then
  local activity = redis.call('HGET', KEYS[1], 'activityId')
  local base = ''
  if activity and activity ~= '' then base = ARGV[1] .. 'activity:' .. activity end
  if status == 'queued' then
    local template = redis.call('HGET', KEYS[1], 'templateId')
    if template and template ~= '' then
      if redis.call('HINCRBY', KEYS[4], template, -1) <= 0 then redis.call('HDEL', KEYS[4], template) end
    end
    if base ~= '' then redis.call('HINCRBY', base .. ':counts', 'queued', -1) end
  end
  if base ~= '' then uncount_failure(base) end
end
redis.call('DEL', KEYS[1], ARGV[1] .. 'event:' .. event)
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return answer
"""
)

# KEYS: exec hash, eventId index, contact index; ARGV: updatedAt and field count as archived,
#       the tombstone's lifetime (s), execution id, the states that may be archived (csv)
# Once the history store holds an execution as it is now (same updatedAt, same fields) and it
# waits for nothing more, its record shrinks to a tombstone (status, archived, updatedAt) that
# keeps execute's dedupe for Journey Builder's retry window, and the version the store was given
# (so no copy read from the store before it is restored over it: `_RESTORE`); its indexes go
# (the store answers them).
_ARCHIVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'archived') == '1' then return 0 end
local seen = redis.call('HGET', KEYS[1], 'updatedAt')
if seen ~= ARGV[1] or redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[2]) then return -1 end
local archivable = false
for s in string.gmatch(ARGV[5], '[^,]+') do if s == status then archivable = true end end
if not archivable then return 0 end
-- a journey waiting for this contact's release: not before it is released (the same task does it)
local ok, args = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'args') or '{}')
local release = ok and type(args) == 'table' and args['releaseEventDefinitionKey']
local released = redis.call('HGET', KEYS[1], 'releasedAt')
local waits = (type(release) == 'string' and string.match(release, '%S')) or type(release) == 'number'
if waits and not released then return -1 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[1], 'status', status, 'archived', '1', 'updatedAt', seen)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS: exec hash, history outbox; ARGV: ttl, execution id, the copy's updatedAt, field/value
#       pairs of the record as the store holds it
# A tombstone (or nothing, past the tombstone's lifetime) becomes the whole record again, so a
# late webhook can move it like any other; a record still whole is left as it is (0). A copy
# older than the version the tombstone was archived at is refused (-1): it was read from the
# store before a click or a move that was restored, counted, written and archived meanwhile, and
# restoring it would lose that change and count it again; the caller reads the store again. A
# tombstone of an older version holds no updatedAt: any copy restores. The history outbox gets
# it again, so it leaves Redis again whether or not the move happens.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local kept = redis.call('HMGET', KEYS[1], 'archived', 'updatedAt')
  if kept[1] ~= '1' then return 0 end
  if kept[2] and ARGV[3] < kept[2] then return -1 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('XADD', KEYS[2], '*', 'p', cjson.encode({executionId = ARGV[2]}))
return 1
"""

# KEYS: exec hash, history outbox; ARGV: execution id, the terminal states (csv)
# A record an older version finished (it moved to a terminal state before the transition script
# appended to the history outbox) joins the outbox the way that script appends, so flush_history
# writes and archives it like any other; one in flight, archived or gone is left alone.
_TO_HISTORY = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'archived') == '1' then return 0 end
local terminal = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == status then terminal = true end end
if not terminal then return 0 end
redis.call('XADD', KEYS[2], '*', 'p', cjson.encode({executionId = ARGV[1]}))
return 1
"""

# a failed execution's reason as the activity's top failures list it
FAILURE_REASON_CHARS = 200
TOP_FAILURES = 5
# missing_field executions count their reason ("missing value for City") under this prefix in a
# sorted set of their own (keys.activity_missing; the scripts pick the set by the prefix, written
# there as a literal), so the running view can say which field was missing
MISSING_REASON = "missing_field:"


INTAKE_GROUP = "pump"  # the intake streams' consumer group (pipeline/journeys/intake.py)
FORGOT_UNRECORDED = 2  # `_FORGET`'s answer for a record that holds no intake entry id
# `_RESTORE`'s answers: made whole again; whole already (left as it is); the copy is older than
# the version archived (nothing written: read the store again)
RESTORED, WHOLE, STALE = 1, 0, -1
# restores a caller tries (each found archived again before its write, or its copy found older
# than the tombstone and read again) before it gives up: a click answers uncounted, a move
# answers 'archived'
RESTORE_ATTEMPTS = 4


def execution_id(activity_id: str, definition_instance_id: str) -> str:
    """Stable across JB retries (Salesforce documents this pair as the dedupe key)."""
    return str(uuid.uuid5(EXECUTION_NS, f"{activity_id}:{definition_instance_id}"))


def event_id_for(execution: str) -> str:
    """The Rokt `eventId`: deterministic, so a repeated create is the same event to Rokt."""
    return "rsf-" + uuid.uuid5(EVENT_NS, execution).hex


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class IllegalTransition(RuntimeError):
    """A move that `vocabulary.NEXT_STATES` does not allow: a defect in the caller, never data."""


@dataclass
class Execution:
    tenant: str
    execution_id: str
    status: str
    event_id: str
    contact_key: str
    args: dict[str, Any]
    fields: dict[str, str]

    @classmethod
    def from_hash(cls, tenant: str, execution_id: str, data: dict[str, str]) -> Execution | None:
        """The execution stored in `data` (its Redis hash), or None when the hash is empty."""
        if not data:
            return None
        return cls(
            tenant=tenant,
            execution_id=execution_id,
            status=data.get("status", ""),
            event_id=data.get("eventId", ""),
            contact_key=data.get("contactKey", ""),
            args=json.loads(data.get("args", "{}")),
            fields=data,
        )

    @property
    def template_id(self) -> str:
        return str(self.args.get("templateId") or "")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES


class Ledger:
    def __init__(
        self,
        r: redis.Redis,
        ttl_days: int = 30,
        day_of: Callable[[str], str] = performance.utc_today,
        performance_days: int = 400,
    ) -> None:
        """`day_of(tenant)`: today in the tenant's reporting time zone (the day its moves count
        in); `performance_days`: how long a day's figures are kept."""
        self.r = r
        self.ttl_seconds = ttl_days * 86400
        self.day_of = day_of
        self.performance_ttl = performance.ttl_seconds(performance_days)
        self._claim = r.register_script(_CLAIM)
        self._transition = r.register_script(_TRANSITION)
        self._mark = r.register_script(_MARK)
        self._reopen = r.register_script(_REOPEN)
        self._forget = r.register_script(_FORGET)
        self._archive = r.register_script(_ARCHIVE)
        self._restore = r.register_script(_RESTORE)
        self._to_history = r.register_script(_TO_HISTORY)

    def execution_for_event(self, tenant: str, event_id: str) -> str | None:
        """The execution that sent this Rokt eventId (for SubscriptionEvent* webhooks)."""
        return self.r.get(keys.event(tenant, event_id))

    def contact_index(self, tenant: str, contact_key: str) -> str:
        """The contact's index of executions, named by the keyed digest of its key."""
        digest = keys.personal_digest(deployment_salt(self.r), tenant, contact_key)
        return keys.contact_executions(tenant, digest)

    def executions_of_contact(self, tenant: str, contact_key: str) -> list[str]:
        """The contact's executions claimed since the index exists (the ledger's TTL ago at most),
        in the index as an older version named it too (one MULTI: a mover's rename between two
        reads would hide an id from both)."""
        if not contact_key:
            return []
        pipe = self.r.pipeline(transaction=True)
        pipe.smembers(self.contact_index(tenant, contact_key))
        pipe.smembers(keys.unkeyed_contact_executions(tenant, keys.unkeyed_contact_digest(contact_key)))
        current, unkeyed = pipe.execute()
        return sorted(set(current) | set(unkeyed))

    def drop_contact_index(self, tenant: str, contact_key: str) -> None:
        """The contact's index of executions goes whole (an erasure), under either name."""
        unkeyed = keys.unkeyed_contact_executions(tenant, keys.unkeyed_contact_digest(contact_key))
        self.r.delete(self.contact_index(tenant, contact_key), unkeyed)

    def forget(
        self, tenant: str, execution: str, contact_key: str = "", unrecorded: set[str] | None = None
    ) -> bool:
        """Erase one execution, its indexes and its intake entry not yet pumped (by the id its
        claim recorded); True when it was still stored. A record an older version claimed holds
        no entry id: its entry is looked for in the stream, now, or later by the caller when
        `unrecorded` is given (the execution is added to it: one pass for many executions)."""
        names = [
            keys.execution(tenant, execution),
            keys.open_executions(tenant),
            keys.awaiting(tenant),
            keys.template_open(tenant),
            self.contact_index(tenant, contact_key),
            keys.intake(tenant),
        ]
        answer = int(self._forget(keys=names, args=[keys.tenant_prefix(tenant), execution, INTAKE_GROUP]))
        if answer == FORGOT_UNRECORDED:
            if unrecorded is None:
                self.drop_intake_entries(tenant, {execution})
            else:
                unrecorded.add(execution)
        return answer > 0

    def drop_intake_entries(self, tenant: str, executions: set[str], page: int = 1000) -> int:
        """The entries of `executions` still in the intake stream, found by reading all of it
        (one pass, however many executions): for records claimed before their entry id was
        kept. Returns how many were deleted."""
        key, start, dropped = keys.intake(tenant), "-", 0
        while executions:
            entries = self.r.xrange(key, start, "+", count=page)
            found = [entry_id for entry_id, values in entries if (values or {}).get("x") in executions]
            if found:
                pipe = self.r.pipeline(transaction=True)
                pipe.xack(key, INTAKE_GROUP, *found)
                pipe.xdel(key, *found)
                dropped += int(pipe.execute()[1])
            if len(entries) < page:
                break
            start = "(" + entries[-1][0]
        return dropped

    def claim(self, tenant: str, execution: str, record: dict[str, Any]) -> bool:
        """Set-if-absent: True when this call created the execution, and appended it to the
        tenant's intake stream in the same script (the pump enqueues it; nothing else must).

        The execution's `templateId` (from `record["templateId"]` or `record["args"]`) is stored
        as its own field, so the scripts can keep the per-template open count.
        """
        args = record.get("args")
        template_id = record.get("templateId", args.get("templateId") if isinstance(args, dict) else None)
        values: dict[str, str] = {
            "status": State.QUEUED,
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
            "tracked": "1",
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()},
        }
        if template_id is not None:
            values["templateId"] = str(template_id)
        flat = [item for pair in values.items() for item in pair]
        names = [
            keys.execution(tenant, execution),
            keys.open_executions(tenant),
            keys.counts(tenant),
            keys.event(tenant, str(record.get("eventId", ""))),
            keys.template_open(tenant),
            keys.last_execute(tenant),
            self.contact_index(tenant, str(values.get("contactKey", ""))),
            keys.intake(tenant),
            keys.performance_day(tenant, self.day_of(tenant)),
        ]
        args = [
            self.ttl_seconds,
            time.time(),
            execution,
            keys.tenant_prefix(tenant),
            self.performance_ttl,
            *flat,
        ]
        return bool(self._claim(keys=names, args=args))

    def archive(self, tenant: str, execution: str, record: dict[str, str], tombstone_seconds: int) -> int:
        """Shrink the execution to its tombstone now that the history store holds `record` (its
        hash as read before the write): 1 done, 0 not to be archived (waiting for something, or
        already), -1 changed since it was read, or its contact's release still to come (the
        caller archives it again)."""
        names = [
            keys.execution(tenant, execution),
            keys.event(tenant, record.get("eventId", "")),
            self.contact_index(tenant, record.get("contactKey", "")),
        ]
        states = ",".join(sorted(ARCHIVED_STATES))
        args = [record.get("updatedAt", ""), len(record), tombstone_seconds, execution, states]
        return int(self._archive(keys=names, args=args))

    def restore(self, tenant: str, execution: str, record: dict[str, str]) -> int:
        """The whole record back in Redis from the store's copy `record`, when only its tombstone
        (or nothing) is left: RESTORED; WHOLE when the record is whole in Redis (nothing written);
        STALE when `record` is older than the version its tombstone was archived at (nothing
        written: the store holds a newer copy, read it again and retry)."""
        fields = {name: value for name, value in record.items() if name != "archived"}
        flat = [item for pair in fields.items() for item in pair]
        names = [keys.execution(tenant, execution), keys.outbox(tenant, OutboxKind.HISTORY)]
        args = [self.ttl_seconds, execution, fields.get("updatedAt", ""), *flat]
        return int(self._restore(keys=names, args=args))

    def to_history(self, tenant: str, execution: str, pipe: redis.client.Pipeline | None = None) -> Any:
        """Append a finished, unarchived execution to the history outbox, as a terminal move does
        (1 appended, 0 left alone: in flight, archived or gone); queued in `pipe` when given (its
        answer is then the pipeline's)."""
        names = [keys.execution(tenant, execution), keys.outbox(tenant, OutboxKind.HISTORY)]
        states = ",".join(sorted(TERMINAL_STATES))
        return self._to_history(keys=names, args=[execution, states], client=pipe)

    def get(self, tenant: str, execution: str) -> Execution | None:
        return Execution.from_hash(tenant, execution, self.r.hgetall(keys.execution(tenant, execution)))

    def update(self, tenant: str, execution: str, **values: str) -> None:
        self.r.hset(keys.execution(tenant, execution), mapping={**values, "updatedAt": now_iso()})

    def transition(
        self,
        tenant: str,
        execution: str,
        to_status: State,
        allowed_from: tuple[State, ...] = (State.QUEUED,),
        *,
        unless_pending: str = "",
        **values: str,
    ) -> tuple[bool, str]:
        """Move to `to_status` only from `allowed_from`; returns (moved, previous status).

        A move to failed counts its `error` value (cut to 200 characters) among the activity's
        failure reasons. With `unless_pending` (a kind of event job), an execution such a job is
        changing at Rokt (PENDING_FIELD) does not move: (False, PENDING)."""
        moved, previous = self._move(
            tenant,
            execution,
            to_status,
            allowed_from,
            values,
            answer_hash=False,
            unless_pending=unless_pending,
        )
        return bool(int(moved)), previous

    def mark(
        self, tenant: str, execution: str, allowed_from: tuple[State, ...], **values: str
    ) -> tuple[bool, str]:
        """Set fields of the execution, whole in Redis and in one of `allowed_from`, without
        moving it (nothing counted); returns (set, status found: '' none, 'archived' a tombstone)."""
        flat = [item for pair in values.items() for item in pair]
        args = [",".join(allowed_from), now_iso(), *flat]
        done, current = self._mark(keys=[keys.execution(tenant, execution)], args=args)
        return bool(int(done)), current

    def transition_get(
        self,
        tenant: str,
        execution: str,
        to_status: State,
        allowed_from: tuple[State, ...] = (State.QUEUED,),
        **values: str,
    ) -> tuple[bool, Execution | None]:
        """transition(), answering (moved, the execution as it is after the call) in the same
        round trip (None when it is not in the ledger)."""
        moved, _previous, flat = self._move(
            tenant, execution, to_status, allowed_from, values, answer_hash=True
        )
        data = dict(zip(flat[::2], flat[1::2], strict=True))
        return bool(int(moved)), Execution.from_hash(tenant, execution, data)

    def _move(
        self,
        tenant: str,
        execution: str,
        to_status: State,
        allowed_from: tuple[State, ...],
        values: dict[str, str],
        answer_hash: bool,
        unless_pending: str = "",
    ) -> list[Any]:
        illegal = [state for state in allowed_from if to_status not in NEXT_STATES[State(state)]]
        if illegal:
            raise IllegalTransition(f"{', '.join(illegal)} -> {to_status} is not in NEXT_STATES")
        values = dict(values)
        figures = [figure or "" for figure in MOVE_FIGURES[State(to_status)]]
        if to_status == State.FAILED:  # counted by where and how, never by the reason's text
            kind = performance.failure_kind(values.pop(FAILED_AS, ""))
            figures = [f"{figure}:{kind}" for figure in figures]
        flat = [item for pair in values.items() for item in pair]
        names = [
            keys.execution(tenant, execution),
            keys.open_executions(tenant),
            keys.counts(tenant),
            keys.performance_day(tenant, self.day_of(tenant)),
            keys.awaiting(tenant),
            keys.template_open(tenant),
            keys.outbox(tenant, OutboxKind.HISTORY),
            keys.template_sent(tenant),
        ]
        reason = str(values.get("error") or "").strip()[:FAILURE_REASON_CHARS] or "(no reason recorded)"
        args = [
            to_status,
            ",".join(allowed_from),
            now_iso(),
            time.time(),
            keys.tenant_prefix(tenant),
            self.ttl_seconds,
            reason,
            "1" if answer_hash else "0",
            execution,
            *figures,
            self.performance_ttl,
            unless_pending,
            *flat,
        ]
        return self._transition(keys=names, args=args)

    def reopen(self, tenant: str, execution: str) -> bool:
        """failed -> queued for a replay (fresh attempts and time budget); False otherwise."""
        if State.QUEUED not in NEXT_STATES[State.FAILED]:
            raise IllegalTransition("failed -> queued is not in NEXT_STATES")
        names = [
            keys.execution(tenant, execution),
            keys.open_executions(tenant),
            keys.counts(tenant),
            keys.template_open(tenant),
        ]
        args = [time.time(), now_iso(), keys.tenant_prefix(tenant), self.ttl_seconds]
        return bool(self._reopen(keys=names, args=args))

    def due(self, key: str, older_than: float, limit: int = 500) -> list[str]:
        """Execution ids in a scored set (open or awaiting) older than `older_than` (epoch)."""
        members = self.r.zrangebyscore(key, "-inf", older_than, start=0, num=limit)
        return [member.rsplit(":", 1)[-1] for member in members]

    def touch(self, key: str, tenant: str, execution: str) -> None:
        """Push an entry's score to now, so reconciliation looks at it again only later."""
        self.r.zadd(key, {keys.execution(tenant, execution): time.time()}, xx=True)

    def add_attempt(self, tenant: str, execution: str) -> int:
        """Count one more failed attempt (retryable vendor error); returns the new total."""
        return int(self.r.hincrby(keys.execution(tenant, execution), "attempts", 1))

    def counts(self, tenant: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(keys.counts(tenant)).items()}

    def open_count(self, tenant: str) -> int:
        return int(self.r.zcard(keys.open_executions(tenant)))

    def open_count_for_template(self, tenant: str, template_id: str) -> int:
        """Executions of this template not yet terminal (still queued)."""
        return max(0, int(self.r.hget(keys.template_open(tenant), template_id) or 0))

    def activity_stats(self, tenant: str, activity_id: str, days: int = 0) -> dict[str, Any]:
        """Live counts of one Journey Builder activity: executions per state, the most frequent
        reasons of its failed executions and of its missing_field ones (at most five each, most
        frequent first); with `days`, its figures of each of the last `days` days in the tenant's
        reporting time zone (today first: pipeline/stores/performance.py)."""
        today = date.fromisoformat(self.day_of(tenant))
        dates = [(today - timedelta(days=n)).isoformat() for n in range(max(0, days))]
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(keys.activity_counts(tenant, activity_id))
        for key in (keys.activity_failures(tenant, activity_id), keys.activity_missing(tenant, activity_id)):
            pipe.zrevrangebyscore(key, "+inf", "(0", start=0, num=TOP_FAILURES, withscores=True)
        raw_counts, failures, missing = pipe.execute()
        moves = {
            "days": [
                {"day": found.day, **found.figures}
                for found in performance.read_days(self.r, tenant, dates, activity=activity_id)
            ]
        }
        return {
            **(moves if days else {}),
            "counts": {str(state): max(0, int(raw_counts.get(state, 0))) for state in State},
            "topFailures": [{"reason": reason, "count": int(score)} for reason, score in failures],
            "missingFields": [
                {"reason": reason[len(MISSING_REASON) :], "count": int(score)} for reason, score in missing
            ],
        }
