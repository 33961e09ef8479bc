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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from pipeline.store import tenant_key
from pipeline.vocabulary import TERMINAL_STATES, State

EXECUTION_NS = uuid.UUID("6f1b0f64-8a52-4a8e-9a53-0c2d6a5e7c11")
EVENT_NS = uuid.UUID("a3c1f0de-2f4b-4c6e-8d7a-5b9e1e0f4d22")

# KEYS: exec hash, open set, counts, eventId index; ARGV: ttl, now, execution id, field/value pairs
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), KEYS[1])
redis.call('HINCRBY', KEYS[3], 'received', 1)
redis.call('SET', KEYS[4], ARGV[3], 'EX', tonumber(ARGV[1]))
return 1
"""

# KEYS: exec hash, open set, counts, daily counts, awaiting-confirmation set;
# ARGV: new status, allowed-from csv, now (iso), now (epoch), field/value pairs
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == current then allowed = true end end
if not allowed then return {0, current} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updatedAt', ARGV[3])
if #ARGV > 4 then redis.call('HSET', KEYS[1], unpack(ARGV, 5)) end
redis.call('ZREM', KEYS[2], KEYS[1])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if current ~= 'queued' then redis.call('HINCRBY', KEYS[3], current, -1) end
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
redis.call('EXPIRE', KEYS[4], 400 * 86400)
if ARGV[1] == 'accepted' then redis.call('ZADD', KEYS[5], tonumber(ARGV[4]), KEYS[1]) end
if current == 'accepted' then redis.call('ZREM', KEYS[5], KEYS[1]) end
return {1, current}
"""

# KEYS: exec hash, open set, counts; ARGV: now (epoch), now (iso)
_REOPEN = """
if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0', 'error', '', 'budgetStart', ARGV[2],
           'updatedAt', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), KEYS[1])
redis.call('HINCRBY', KEYS[3], 'failed', -1)
redis.call('HINCRBY', KEYS[3], 'replayed', 1)
return 1
"""


def execution_id(activity_id: str, definition_instance_id: str) -> str:
    """Stable across JB retries (Salesforce documents this pair as the dedupe key)."""
    return str(uuid.uuid5(EXECUTION_NS, f"{activity_id}:{definition_instance_id}"))


def event_id_for(execution: str) -> str:
    """The Rokt `eventId`: deterministic, so a repeated create is the same event to Rokt."""
    return "rsf-" + uuid.uuid5(EVENT_NS, execution).hex


def daily_counts_key(tenant: str, day: str | None = None) -> str:
    """Per-tenant counts of one UTC day: outcomes, subscriptions, contact matches."""
    return tenant_key(tenant, "daily", day or datetime.now(UTC).date().isoformat())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Execution:
    tenant: str
    execution_id: str
    status: str
    event_id: str
    contact_key: str
    args: dict[str, Any]
    fields: dict[str, str]

    @property
    def template_id(self) -> str:
        return str(self.args.get("templateId") or "")

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATES


class Ledger:
    def __init__(self, r: redis.Redis, ttl_days: int = 30) -> None:
        self.r = r
        self.ttl_seconds = ttl_days * 86400
        self._claim = r.register_script(_CLAIM)
        self._transition = r.register_script(_TRANSITION)
        self._reopen = r.register_script(_REOPEN)

    def _key(self, tenant: str, execution: str) -> str:
        return tenant_key(tenant, "exec", execution)

    def member(self, tenant: str, execution: str) -> str:
        """How an execution appears in the open and awaiting sets."""
        return self._key(tenant, execution)

    def _event_index(self, tenant: str, event_id: str) -> str:
        return tenant_key(tenant, "event", event_id)

    def execution_for_event(self, tenant: str, event_id: str) -> str | None:
        """The execution that sent this Rokt eventId (for SubscriptionEvent* webhooks)."""
        return self.r.get(self._event_index(tenant, event_id))

    def open_key(self, tenant: str) -> str:
        return tenant_key(tenant, "open")

    def counts_key(self, tenant: str) -> str:
        return tenant_key(tenant, "counts")

    def claim(self, tenant: str, execution: str, record: dict[str, Any]) -> bool:
        """Set-if-absent: True when this call created the execution (and must enqueue it)."""
        values: dict[str, str] = {
            "status": State.QUEUED,
            "createdAt": now_iso(),
            "updatedAt": now_iso(),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()},
        }
        flat = [item for pair in values.items() for item in pair]
        keys = [
            self._key(tenant, execution),
            self.open_key(tenant),
            self.counts_key(tenant),
            self._event_index(tenant, str(record.get("eventId", ""))),
        ]
        return bool(self._claim(keys=keys, args=[self.ttl_seconds, time.time(), execution, *flat]))

    def release_claim(self, tenant: str, execution: str) -> None:
        """Undo a claim whose enqueue failed, so the JB retry can claim and enqueue again."""
        pipe = self.r.pipeline()
        execution_hash = self._key(tenant, execution)
        event_id = self.r.hget(execution_hash, "eventId") or ""
        pipe.delete(execution_hash, self._event_index(tenant, event_id))
        pipe.zrem(self.open_key(tenant), self._key(tenant, execution))
        pipe.hincrby(self.counts_key(tenant), "received", -1)
        pipe.execute()

    def get(self, tenant: str, execution: str) -> Execution | None:
        data = self.r.hgetall(self._key(tenant, execution))
        if not data:
            return None
        return Execution(
            tenant=tenant,
            execution_id=execution,
            status=data.get("status", ""),
            event_id=data.get("eventId", ""),
            contact_key=data.get("contactKey", ""),
            args=json.loads(data.get("args", "{}")),
            fields=data,
        )

    def update(self, tenant: str, execution: str, **values: str) -> None:
        self.r.hset(self._key(tenant, execution), mapping={**values, "updatedAt": now_iso()})

    def transition(
        self,
        tenant: str,
        execution: str,
        to_status: State,
        allowed_from: tuple[State, ...] = (State.QUEUED,),
        **values: str,
    ) -> tuple[bool, str]:
        """Move to `to_status` only from `allowed_from`; returns (moved, previous status)."""
        flat = [item for pair in values.items() for item in pair]
        keys = [
            self._key(tenant, execution),
            self.open_key(tenant),
            self.counts_key(tenant),
            daily_counts_key(tenant),
            self.awaiting_key(tenant),
        ]
        moved, previous = self._transition(
            keys=keys, args=[to_status, ",".join(allowed_from), now_iso(), time.time(), *flat]
        )
        return bool(int(moved)), previous

    def reopen(self, tenant: str, execution: str) -> bool:
        """failed -> queued for a replay (fresh attempts and time budget); False otherwise."""
        keys = [self._key(tenant, execution), self.open_key(tenant), self.counts_key(tenant)]
        return bool(self._reopen(keys=keys, args=[time.time(), now_iso()]))

    def awaiting_key(self, tenant: str) -> str:
        """Executions accepted by Rokt and not yet confirmed, scored by acceptance time."""
        return tenant_key(tenant, "awaiting")

    def due(self, key: str, older_than: float, limit: int = 500) -> list[str]:
        """Execution ids in a scored set (open or awaiting) older than `older_than` (epoch)."""
        members = self.r.zrangebyscore(key, "-inf", older_than, start=0, num=limit)
        return [member.rsplit(":", 1)[-1] for member in members]

    def touch(self, key: str, tenant: str, execution: str) -> None:
        """Push an entry's score to now, so reconciliation looks at it again only later."""
        self.r.zadd(key, {self._key(tenant, execution): time.time()}, xx=True)

    def add_attempt(self, tenant: str, execution: str) -> int:
        """Count one more failed attempt (retryable vendor error); returns the new total."""
        return int(self.r.hincrby(self._key(tenant, execution), "attempts", 1))

    def counts(self, tenant: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.counts_key(tenant)).items()}

    def open_count(self, tenant: str) -> int:
        return int(self.r.zcard(self.open_key(tenant)))
