"""Durable buffers for batched writes (SFMC, the history store): one Redis stream per tenant and kind.

Tasks append one entry per row; a flush takes up to a batch through a consumer group,
calls SFMC once, then acknowledges and deletes the entries. An entry stays in the group's
pending list until acknowledged, so a worker killed mid-batch loses nothing: the redelivered
flush task (same consumer name) re-reads its own pending entries, and any flush takes over
entries left idle longer than the claim lease by a consumer that never came back.
Writes are upserts by primary key, so sending an entry twice is harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.infra import keys
from pipeline.vocabulary import OutboxKind

GROUP = "flushers"


@dataclass(frozen=True)
class Entry:
    id: str
    payload: dict[str, Any]


class Outbox:
    def __init__(self, r: redis.Redis, tenant: str, kind: OutboxKind, claim_idle_ms: int) -> None:
        """`claim_idle_ms` (OUTBOX_CLAIM_IDLE_SECONDS) must exceed a flush task's hard time limit."""
        self.r = r
        self.claim_idle_ms = claim_idle_ms
        self.tenant = tenant
        self.kind = kind
        self.key = keys.outbox(tenant, kind)
        self._group_ready = False
        # until when (time.monotonic) this process saw the kind's flush slot taken (pipeline.delivery.flush)
        self.flush_slot_held_until = 0.0

    def ensure_group(self, again: bool = False) -> None:
        """The consumer group, made once per process; `again` after a NOGROUP: the group is gone
        though this process made it (a Redis failover lost the write that created it, taken by
        the old master), so it is made again from the stream's start: nothing is skipped."""
        if self._group_ready and not again:
            return
        try:
            self.r.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    @staticmethod
    def encode(payload: dict[str, Any]) -> str:
        """An entry's `p` field (for a script that appends it: call ensure_group() first)."""
        return json.dumps(payload, sort_keys=True)

    def append(self, payload: dict[str, Any]) -> str:
        self.ensure_group()
        return self.r.xadd(self.key, {"p": self.encode(payload)})

    def append_in(self, pipe: redis.client.Pipeline, payload: dict[str, Any]) -> None:
        """Append inside the caller's transaction (call ensure_group() first)."""
        pipe.xadd(self.key, {"p": self.encode(payload)})

    def _entries(self, raw: list[tuple[str, dict[str, str]]]) -> list[Entry]:
        return [Entry(entry_id, json.loads(fields["p"])) for entry_id, fields in raw if fields]

    def take_recovered(self, consumer: str, count: int) -> list[Entry]:
        """This consumer's own unacknowledged entries (a redelivered flush), else orphans
        idle longer than the claim lease (a flush that never came back)."""
        own = self._read(consumer, "0", count)
        entries = self._entries(own[0][1]) if own else []
        if entries:
            return entries
        claimed = self.r.xautoclaim(self.key, GROUP, consumer, self.claim_idle_ms, "0-0", count=count)
        return self._entries(claimed[1])

    def take_new(self, consumer: str, count: int) -> list[Entry]:
        fresh = self._read(consumer, ">", count)
        return self._entries(fresh[0][1]) if fresh else []

    def _read(self, consumer: str, since: str, count: int) -> list:
        self.ensure_group()
        try:
            return self.r.xreadgroup(GROUP, consumer, {self.key: since}, count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group(again=True)
            return self.r.xreadgroup(GROUP, consumer, {self.key: since}, count=count)

    def waiting(self) -> tuple[int, float]:
        """Entries never handed to a flush yet, and the age in seconds of the oldest of them."""
        self.ensure_group()
        group = next((g for g in self.r.xinfo_groups(self.key) if g["name"] == GROUP), None)
        if group is None:  # lost in a failover: made again (see ensure_group)
            self.ensure_group(again=True)
            group = next(g for g in self.r.xinfo_groups(self.key) if g["name"] == GROUP)
        count = int(self.r.xlen(self.key)) - int(group["pending"])
        if count <= 0:
            return 0, 0.0
        oldest = self.r.xrange(self.key, min="(" + group["last-delivered-id"], count=1)
        if not oldest:
            return 0, 0.0
        seconds, micros = self.r.time()
        created_ms = int(oldest[0][0].split("-")[0])
        return count, max(0.0, seconds + micros / 1e6 - created_ms / 1000)

    def ack(self, entries: list[Entry]) -> None:
        """Done with `entries` (sent): acknowledged, then deleted. Not in MULTI: a full Redis
        refuses every command queued in one, and an ack refused after the send would have the
        batch sent again (a release fired twice); XACK and XDEL free memory, so Redis takes them.
        Lost between the two, an entry is acknowledged and never read again."""
        ids = [e.id for e in entries]
        if ids:
            pipe = self.r.pipeline(transaction=False)
            pipe.xack(self.key, GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()

    def holds(self, consumer: str) -> bool:
        """Whether `consumer` took entries it has not acknowledged."""
        return bool(self.r.xpending_range(self.key, GROUP, "-", "+", 1, consumername=consumer))

    def forget_consumer(self, consumer: str) -> None:
        """Remove an idle consumer whose pending list is empty (keeps the group small)."""
        if not self.holds(consumer):
            self.r.xgroup_delconsumer(self.key, GROUP, consumer)

    def backlog(self) -> int:
        """Entries not yet acknowledged (waiting or in flight)."""
        return int(self.r.xlen(self.key))
