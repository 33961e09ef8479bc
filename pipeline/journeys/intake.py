"""Intake: how an execution the web tier accepted reaches the broker.

Execute does not publish. The claim script (`Ledger.claim`) stores a new execution and appends
it to its tenant's stream `rsf:<tenant>:intake` in the same Redis round trip, so there is no
moment where an execution is claimed but not on its way, and executes keep being accepted while
the broker is down (only Redis must answer). A pump reads the streams with one consumer group,
publishes one render task per entry (on RabbitMQ each publish returns once the broker confirmed
it) and only then acknowledges and deletes the entries. Pumps run as a thread in every worker
that serves the render stage (tasks/intake_pump.py), one consumer each, named after the worker:

- a publish that fails (broker down) leaves the entry and the rest of its batch pending with that
  pump, which tries them again, first, with a growing pause (at most `PUBLISH_RETRY_MAX_PAUSE_SECONDS`);
- a pump killed mid-batch leaves its entries pending: its replacement (the same worker name, as
  compose restarts it) takes them up at start, and any other pump claims them (XAUTOCLAIM) once
  they have been idle `INTAKE_RECLAIM_AFTER` seconds (a machine that never comes back);
- an entry published and then taken over before its acknowledgement is published again: the
  chain is idempotent (the ledger's guarded states, Rokt's eventId), and an entry taken over is
  published only while its execution has not started rendering.

The reconciler stays the safety net: an execution still `queued` after RECONCILE_QUEUED_AFTER
is re-driven whatever became of its entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from pipeline.infra import keys
from pipeline.stores.ledger import INTAKE_GROUP
from pipeline.vocabulary import State

log = logging.getLogger(__name__)

GROUP = INTAKE_GROUP
FIELD = "x"  # an entry's one field: the execution id
BATCH = 200  # entries read per stream per pass
BLOCK_MS = 1000  # how long a pass waits for new entries
TENANTS_EVERY_SECONDS = 5.0  # the streams read are the registry's tenants, re-read this often
RECLAIM_EVERY_SECONDS = 10.0
PUBLISH_RETRY_MAX_PAUSE_SECONDS = 5.0

Publish = Callable[[str, str], None]  # (tenant, execution id): enqueue its render task


def backlog(r: redis.Redis, tenant: str) -> dict[str, int]:
    """Entries of the tenant's stream not yet published and acknowledged (`waiting`: all of
    them; `pending`: those a pump holds)."""
    key = keys.intake(tenant)
    pipe = r.pipeline(transaction=False)
    pipe.xlen(key)
    pipe.xpending(key, GROUP)
    try:
        length, pending = pipe.execute()
    except redis.ResponseError:  # no group yet: nothing was ever pumped
        return {"waiting": int(r.xlen(key)), "pending": 0}
    return {"waiting": int(length), "pending": int(pending["pending"])}


def oldest_age_seconds(r: redis.Redis, tenant: str, now: float | None = None) -> float:
    """Age of the tenant's oldest entry not yet pumped (an entry id is its append time in ms);
    0 when the stream is empty. Only reads (the exporter's RsfIntakeStalled)."""
    first = r.xrange(keys.intake(tenant), count=1)
    if not first:
        return 0.0
    appended_ms = int(str(first[0][0]).split("-", 1)[0])
    return max(0.0, (time.time() if now is None else now) - appended_ms / 1000)


class PublishFailed(Exception):
    """A publish failed; what was published before it is acknowledged, the rest stays pending."""


@dataclass
class PumpStats:
    published: int = 0
    reclaimed: int = 0  # entries taken over from another pump
    skipped: int = 0  # entries taken over whose execution had started already (not published)
    failures: int = 0  # passes that stopped at a failed publish
    errors: list[str] = field(default_factory=list)  # the last few failure reasons


class Pump:
    """One consumer of the intake group. `step()` is one pass; `run()` loops until stopped."""

    def __init__(
        self,
        r: redis.Redis,
        consumer: str,
        publish: Publish,
        tenants: Callable[[], Iterable[str]],
        *,
        reclaim_after: float = 60.0,
        batch: int = BATCH,
        block_ms: int = BLOCK_MS,
    ) -> None:
        if reclaim_after <= 0:
            raise ValueError("reclaim_after must be positive seconds")
        self.r = r
        self.consumer = consumer
        self.publish = publish
        self._tenants = tenants
        self.reclaim_after = reclaim_after
        self.batch = batch
        self.block_ms = block_ms
        self.stats = PumpStats()
        self._streams: dict[str, str] = {}  # stream key -> tenant
        self._streams_at = float("-inf")
        self._reclaim_at = 0.0
        self._own_pending = True  # a restarted pump first publishes what it held before

    # -- the streams ---------------------------------------------------------------------
    def streams(self, force: bool = False) -> dict[str, str]:
        """The tenants' stream keys (-> tenant), each with the group (created reading from the
        start, so entries appended before the group existed are pumped too)."""
        now = time.monotonic()
        if force or now - self._streams_at >= TENANTS_EVERY_SECONDS:
            streams = {keys.intake(t): t for t in sorted(set(self._tenants()))}
            for key in streams:
                ensure_group(self.r, key)
            self._streams, self._streams_at = streams, now
        return self._streams

    def _read(self, last_id: str, block: int | None) -> list[tuple[str, list[tuple[str, Any]]]]:
        streams = self.streams()
        if not streams:
            return []
        try:
            answer = self.r.xreadgroup(
                GROUP, self.consumer, dict.fromkeys(streams, last_id), count=self.batch, block=block
            )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.streams(force=True)  # a stream deleted and created again (FLUSHDB): its group too
            return []
        return [(key, entries) for key, entries in answer or [] if entries]

    def _reclaim(self) -> list[tuple[str, list[tuple[str, Any]]]]:
        """Entries another pump has held unacknowledged for `reclaim_after` seconds."""
        found = []
        idle_ms = int(self.reclaim_after * 1000)
        for key in self.streams():
            try:
                answer = self.r.xautoclaim(key, GROUP, self.consumer, idle_ms, "0-0", count=self.batch)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                continue
            entries = [entry for entry in answer[1] if entry]
            deleted = answer[2] if len(answer) > 2 else []
            if deleted:  # Redis 7 drops deleted entries from the pending list itself
                log.info("intake: %d taken-over entries of %s were deleted already", len(deleted), key)
            if entries:
                self.stats.reclaimed += len(entries)
                log.warning("intake: took over %d entries of %s from a silent pump", len(entries), key)
                found.append((key, self._not_started(key, entries)))
        return found

    def _not_started(self, key: str, entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Taken-over entries, with those whose execution started rendering (or ended) marked
        for acknowledgement only: their render task reached a worker already."""
        tenant = self._streams[key]
        pipe = self.r.pipeline(transaction=False)
        for _entry_id, values in entries:
            execution = (values or {}).get(FIELD, "")
            pipe.hmget(keys.execution(tenant, execution), "status", "renderStartedAt")
        kept = []
        for (entry_id, values), (status, started) in zip(entries, pipe.execute(), strict=True):
            if status != State.QUEUED or started:
                self.stats.skipped += 1
                kept.append((entry_id, None))
            else:
                kept.append((entry_id, values))
        return kept

    # -- one pass ------------------------------------------------------------------------
    def step(self, block: bool = True) -> int:
        """Publish one batch per stream: this pump's own pending entries first (after a restart
        or a failed publish), then entries idle too long with another pump (every
        RECLAIM_EVERY_SECONDS), else new ones (waiting up to `block_ms` with `block`).
        Returns the entries published; raises PublishFailed when a publish failed."""
        batches = []
        if self._own_pending:
            # what this pump held when it stopped (killed mid-batch, a failed publish or ack):
            # those whose render started were published already and are only acknowledged
            batches = [(key, self._not_started(key, entries)) for key, entries in self._read("0", None)]
            self._own_pending = bool(batches)
        if not batches and time.monotonic() >= self._reclaim_at:
            self._reclaim_at = time.monotonic() + RECLAIM_EVERY_SECONDS
            batches = self._reclaim()
        if not batches:
            batches = self._read(">", self.block_ms if block else None)
        published = 0
        for key, entries in batches:
            published += self._publish(key, entries)
        return published

    def _publish(self, key: str, entries: list[tuple[str, Any]]) -> int:
        tenant = self._streams[key]
        done: list[str] = []
        published = 0
        try:
            for entry_id, values in entries:
                execution = (values or {}).get(FIELD)
                if execution:  # none: deleted meanwhile, or taken over after its render started
                    self.publish(tenant, execution)
                    published += 1
                done.append(entry_id)
        except Exception as exc:
            self._own_pending = True
            self.stats.failures += 1
            self.stats.errors = [*self.stats.errors[-4:], f"{type(exc).__name__}: {exc}"]
            raise PublishFailed(f"publishing intake of {tenant}: {exc}") from exc
        finally:
            self.stats.published += published
            if done:
                try:
                    self._ack(key, done)
                except Exception:
                    self._own_pending = True  # published, not acknowledged: this pump's again
                    raise
        return published

    def _ack(self, key: str, ids: list[str]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(key, GROUP, *ids)
        pipe.xdel(key, *ids)
        pipe.execute()

    def drain(self, timeout: float = 60.0) -> int:
        """Publish until no new entry is left (entries other pumps hold stay theirs)."""
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            count = self.step(block=False)
            total += count
            if not count and not self._own_pending:
                return total
        raise TimeoutError(f"intake not drained after {timeout:.0f} s")

    def run(self, stop: threading.Event) -> None:
        """Pass after pass until `stop` is set; a failed publish or an unreachable Redis pauses
        the pump (0.5 s, doubling up to PUBLISH_RETRY_MAX_PAUSE_SECONDS) and nothing is dropped."""
        pause = 0.0
        while not stop.is_set():
            try:
                if not self.streams():
                    stop.wait(TENANTS_EVERY_SECONDS)
                    continue
                self.step()
                pause = 0.0
            except (PublishFailed, redis.RedisError) as exc:
                pause = min(PUBLISH_RETRY_MAX_PAUSE_SECONDS, max(0.5, pause * 2))
                log.warning("intake pump %s: %s; again in %.1f s", self.consumer, exc, pause)
                stop.wait(pause)
            except Exception:  # never let the thread die: log it, pause, go on
                pause = PUBLISH_RETRY_MAX_PAUSE_SECONDS
                log.exception("intake pump %s failed; again in %.1f s", self.consumer, pause)
                stop.wait(pause)


def ensure_group(r: redis.Redis, key: str) -> None:
    try:
        r.xgroup_create(key, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def default_pump(consumer: str) -> Pump:
    """A pump of this process's settings: its Redis, the tenant registry, render tasks published
    through `dispatch` (the broker of BROKER_URL, confirmed on RabbitMQ)."""
    from pipeline.infra import dispatch  # Celery's producer: only where a pump runs
    from pipeline.tenancy.handles import get_runtime

    rt = get_runtime()
    return Pump(
        rt.redis,
        consumer,
        dispatch.enqueue_execution,
        lambda: rt.registry.all().keys(),
        reclaim_after=rt.settings.intake_reclaim_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.journeys.intake [CONSUMER]`: one pump on its own (default name `pump@<pid>`)
    until SIGTERM or SIGINT; the workers run theirs as a thread (tasks/intake_pump.py)."""
    import os
    import signal
    import sys

    from pipeline.infra import logsetup
    from pipeline.settings import get_settings

    args = sys.argv[1:] if argv is None else argv
    logsetup.configure_logging(get_settings(), "worker")  # a part of the worker, run apart
    name = args[0] if args else f"pump@{os.getpid()}"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("intake pump %s started", name)
    default_pump(name).run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
