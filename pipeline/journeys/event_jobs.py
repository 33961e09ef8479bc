"""Event jobs: the life of calendar events after they were sent (correct, cancel, withdraw).

A job works through the executions of one scope (a template, an activity, one contact) whose
event Rokt holds, and does one thing to each: update it everywhere with the content the
template renders now (`correct`), delete it everywhere (`cancel`), or remove it from the
contact's subscriptions (`withdraw`); docs/vendors/rokt-calendar-api.md §3.6 has the calls.

Durable and idempotent, like creation:
- the job is a Redis hash (what, who, when, its counts) and a list of execution ids, worked
  through in chunks by `rsf.event_job_step` tasks (acks_late: a chunk of a SIGKILLed worker is
  delivered again); every execution's outcome is recorded once (`_RECORD`), so a chunk run twice
  skips what it did, and each outcome is counted once;
- what an item sends is idempotent at Rokt too: an update with the same content changes nothing,
  a repeated delete or removal finds the event gone (EventNotFound: done);
- a correction compares the new content's digest with the one the execution sent: a second run
  of the same correction sends nothing;
- a task lost with its message (a broker outage) is found by the reconciler: a running job idle
  for EVENT_JOB_IDLE_SECONDS gets its unfinished chunks sent again (`stalled`).

The last chunk asks for a last look (`PLAN`): executions of the scope still queued are waited
for (they render the new template, or end `cancelled`), and any execution that reached Rokt
meanwhile joins the job, so no event of the scope is left behind. Planning reads the history
store and the history outbox's backlog (an execution finished but not yet in the store).

Rate: every call passes the tenant's Rokt limiter, shared with creation. While creates wait in
the limiter's line, a job reserves EVENT_JOB_SHARE of the rate (the line's slots are spaced for
the rest) and takes its slots from a limiter of its own at that share (`job_gate`), so a running
journey keeps the rest; alone, a job may use the whole rate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import redis

from pipeline.clients.errors import ClientError, CredentialsRejected, EventNotFound, PermanentError, Throttled
from pipeline.clients.rokt import RoktClient
from pipeline.delivery.retry_policy import decide
from pipeline.infra import keys
from pipeline.journeys import executions, links
from pipeline.journeys.render import MissingFields, TemplateRenderError, render_event
from pipeline.journeys.templates import TemplateNotFound, archive_template, get_template, restore_template
from pipeline.stores.deadletters import error_class_of, reason_of, record_dead_letter
from pipeline.stores.ledger import PENDING_FIELD, Execution, now_iso
from pipeline.stores.ratelimit import RESERVATION_SECONDS, RateLimited, RateLimiter
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import (
    HELD_STATES,
    JOB_STAGES,
    SKIPPED_OUTCOMES,
    JobKind,
    JobOutcome,
    JobState,
    OutboxKind,
    State,
)

log = logging.getLogger(__name__)

CHUNK = 50  # executions per step task: a lost task repeats at most this many look-ups
# a chunk's lease beyond one Rokt call's timeouts (the limiter's sleep, a slow host)
LEASE_MARGIN_SECONDS = 10.0
# an ended job's record (`events history`), as long as the daily figures
JOB_KEPT_DAYS = 400
# one step plans a job at a time (a scope of millions takes a while to read)
PLANNING_LOCK_SECONDS = 120
PLAN = -1  # the step that (re)plans the job, or ends it
HELD = tuple(sorted(HELD_STATES))
# the states each kind of job acts on: a subscriber's removal takes the event out of one calendar
# only (the contact may have several subscriptions): a cancel or a withdrawal still reaches the
# others (an EventNotFound there is done); a correction leaves it be
ACTS_ON: dict[JobKind, tuple[str, ...]] = {
    JobKind.CORRECT: HELD,
    JobKind.CANCEL: tuple(sorted({*HELD_STATES, State.REMOVED})),
    JobKind.WITHDRAW: tuple(sorted({*HELD_STATES, State.REMOVED})),
}
# a move's states: what each kind of job moves an execution to, and from where
TARGETS: dict[JobKind, State] = {
    JobKind.CORRECT: State.UPDATED,
    JobKind.CANCEL: State.CANCELLED,
    JobKind.WITHDRAW: State.WITHDRAWN,
}
# states a job's move may find an execution already in, having moved it itself (a chunk run twice),
# or Rokt's webhook having moved it first: the item is done as the job wanted
ALREADY: dict[JobKind, frozenset[str]] = {
    JobKind.CORRECT: frozenset(),
    JobKind.CANCEL: frozenset({State.CANCELLED}),
    JobKind.WITHDRAW: frozenset({State.WITHDRAWN}),
}


class NotYet(Exception):
    """The job's last look must wait: executions of its scope are still queued."""

    def __init__(self, queued: int) -> None:
        super().__init__(f"{queued} execution(s) of the job's scope still queued")
        self.retry_after = 2.0


class ChunkBusy(Exception):
    """Another run of this chunk holds its lease: this one comes back once it lapses (then finds
    the chunk done, or takes it over from a run lost with its worker)."""

    def __init__(self, start: int, retry_after: float) -> None:
        super().__init__(f"chunk {start} is being worked on")
        self.retry_after = max(1.0, retry_after)


class ScopeError(ValueError):
    """A job asked for without a scope it can work on (the caller's 400)."""


class CancelRunning(Exception):
    """A restore asked for while the cancel that archived the template still runs (the caller's 409)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the cancel {job_id} of this template is still running: restore it once it is done")
        self.job_id = job_id


# KEYS: outcomes hash, job hash, tenant totals, running jobs; ARGV: execution id, outcome, kind,
# now (epoch), job id. Progress marks the job busy for the reconciler (`stalled`).
# An execution's outcome is recorded once: a second one is ignored, except over `failed` (a
# replay of its dead letter); the job's counts move with it. The tenant's totals only grow.
# A job done has dropped its outcomes: a run of a chunk still going then (a step sent again
# beside the original) records nothing (a replay after the end counts in replay_item).
_RECORD = """
if redis.call('HGET', KEYS[2], 'state') == 'done' then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] or (old and old ~= 'failed') then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'n:' .. ARGV[2], 1)
if old then redis.call('HINCRBY', KEYS[2], 'n:failed', -1) end
redis.call('HINCRBY', KEYS[3], ARGV[3] .. ':' .. ARGV[2], 1)
redis.call('ZADD', KEYS[4], 'XX', ARGV[4], ARGV[5])
return 1
"""

# KEYS: job hash; ARGV: chunk size. The next chunk not yet claimed: {start, end}, or {-1, -1}.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'state') == 'done' then return {-1, -1} end
local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor') or 0)
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or 0)
if cursor >= total then return {-1, -1} end
local stop = math.min(cursor + tonumber(ARGV[1]), total)
redis.call('HSET', KEYS[1], 'cursor', stop, 'c:' .. cursor, stop)
return {cursor, stop}
"""

# KEYS: job hash, chunks-done set; ARGV: start, end. A chunk done counts its items once; answers
# {items done, total, cursor, 1 when this run is the one that ended the chunk} ({0, 0, 0, 0} once
# the job is done).
_CHUNK_DONE = """
if redis.call('HGET', KEYS[1], 'state') == 'done' then return {0, 0, 0, 0} end
local first = redis.call('SADD', KEYS[2], ARGV[1])
if first == 1 then
  redis.call('HINCRBY', KEYS[1], 'doneItems', tonumber(ARGV[2]) - tonumber(ARGV[1]))
  redis.call('HDEL', KEYS[1], 'c:' .. ARGV[1])
end
local f = redis.call('HMGET', KEYS[1], 'doneItems', 'total', 'cursor')
return {tonumber(f[1] or 0), tonumber(f[2] or 0), tonumber(f[3] or 0), first}
"""


@dataclass
class Job:
    tenant: str
    job_id: str
    kind: JobKind
    fields: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, tenant: str, job_id: str, data: dict[str, str]) -> Job | None:
        if not data or "kind" not in data:
            return None
        counts = {name[2:]: int(value) for name, value in data.items() if name.startswith("n:")}
        return cls(tenant, job_id, JobKind(data["kind"]), data, counts)

    @property
    def state(self) -> str:
        return self.fields.get("state", JobState.PLANNING)

    @property
    def template_id(self) -> str:
        return self.fields.get("templateId", "")

    @property
    def activity_id(self) -> str:
        return self.fields.get("activityId", "")

    def as_dict(self) -> dict[str, Any]:
        """The job as the API, the CLI and the UI show it."""
        f = self.fields
        total, done = int(f.get("total", 0)), int(f.get("doneItems", 0))
        skipped = {o.value: self.counts.get(o.value, 0) for o in SKIPPED_OUTCOMES if self.counts.get(o.value)}
        return {
            "id": self.job_id,
            "kind": self.kind.value,
            "state": self.state,
            "templateId": f.get("templateId") or None,
            "activityId": f.get("activityId") or None,
            "contact": bool(f.get("contact")),
            "futureOnly": f.get("futureOnly") == "1",
            "reason": f.get("reason", ""),
            "startedBy": f.get("startedBy", ""),
            "startedAt": f.get("startedAt", ""),
            "finishedAt": f.get("finishedAt") or None,
            "total": total,
            "done": done if self.state != JobState.DONE else total,
            "toDo": max(0, total - done) if self.state != JobState.DONE else 0,
            "outcomes": {o.value: self.counts.get(o.value, 0) for o in JobOutcome},
            "skipped": skipped,
            "failed": self.counts.get(JobOutcome.FAILED, 0),
            "beyondRetention": int(f.get("beyondRetention", 0)),
        }


def get_job(r: redis.Redis, tenant: str, job_id: str) -> Job | None:
    return Job.from_hash(tenant, job_id, r.hgetall(keys.event_job(tenant, job_id)))


def list_jobs(r: redis.Redis, tenant: str, *, limit: int = 50, running_only: bool = False) -> list[Job]:
    """The tenant's jobs, newest first."""
    index = keys.event_jobs_running(tenant) if running_only else keys.event_jobs(tenant)
    ids = r.zrevrange(index, 0, max(0, limit - 1))
    pipe = r.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.event_job(tenant, job_id))
    found = [Job.from_hash(tenant, job_id, data) for job_id, data in zip(ids, pipe.execute(), strict=True)]
    return [job for job in found if job is not None]


# -- starting a job --------------------------------------------------------------------------


def sent_count(rt: Runtime, tenant: str, template_id: str) -> dict[str, int]:
    """What an edit of the template would correct and a cancel would delete: the events of it
    Rokt holds (`held`), and the events Rokt accepted whose record is past the ledger's
    retention (`beyondRetention`)."""
    held = _count_scope(rt, tenant, template_id=template_id)
    return {"held": held, "beyondRetention": _beyond_retention(rt, tenant, template_id)}


def start_job(
    rt: Runtime,
    tenant: str,
    kind: JobKind,
    *,
    started_by: str,
    template_id: str | None = None,
    activity_id: str | None = None,
    contact_key: str | None = None,
    future_only: bool = False,
    reason: str = "",
    job_id: str | None = None,
) -> Job:
    """Record a job and return it (state `planning`); the caller sends its first step (PLAN).

    A template's cancel archives the template first: from then on its executions end
    `cancelled` instead of being sent, and the job's last look finds any sent meanwhile."""
    if kind == JobKind.WITHDRAW and not contact_key:
        raise ScopeError("a withdrawal names a contact")
    if kind != JobKind.WITHDRAW and not (template_id or activity_id):
        raise ScopeError("a correction or a cancel names a template or an activity")
    if kind == JobKind.CORRECT and not template_id:
        raise ScopeError("a correction names a template")
    if template_id and kind != JobKind.WITHDRAW:
        get_template(rt.redis, tenant, template_id)  # TemplateNotFound for the caller
        ensure_no_job_on(rt.redis, tenant, template_id)
    job_id = job_id or "job-" + uuid.uuid4().hex[:16]
    now = time.time()
    fields = {
        "kind": kind.value,
        "state": JobState.PLANNING,
        "templateId": template_id or "",
        "activityId": activity_id or "",
        "futureOnly": "1" if future_only else "0",
        "reason": reason[:500],
        "startedBy": started_by[:200],
        "startedAt": now_iso(),
        "startedEpoch": str(now),
        "total": "0",
        "cursor": "0",
        "doneItems": "0",
    }
    if contact_key:
        # the contact's executions, not its key: a job's record holds no personal data
        found = set(rt.ledger.executions_of_contact(tenant, contact_key))
        found.update(rt.history.executions_of_contact(tenant, contact_key))
        if template_id:  # that template's events only: the contact's others stay in the calendar
            found = {ex for ex in found if (_current(rt, tenant, ex) or {}).get("templateId") == template_id}
        fields["contact"] = "1"
        contact_items = sorted(found)
    if kind == JobKind.CANCEL and template_id and not activity_id:
        archive_template(rt.redis, tenant, template_id, job_id)
    pipe = rt.redis.pipeline(transaction=True)
    pipe.hset(keys.event_job(tenant, job_id), mapping=fields)
    if contact_key:
        _append_items(pipe, tenant, job_id, contact_items)
        pipe.hset(keys.event_job(tenant, job_id), "planned", "1")
    pipe.zadd(keys.event_jobs(tenant), {job_id: now})
    pipe.zadd(keys.event_jobs_running(tenant), {job_id: now})
    pipe.execute()
    job = get_job(rt.redis, tenant, job_id)
    assert job is not None
    log.info("event job %s (%s) of %s started by %s", job_id, kind.value, tenant, started_by[:60])
    return job


class TemplateJobRunning(Exception):
    """A correction or a cancel of this template runs: the template may not change meanwhile, nor
    may another correction or cancel of it start (the caller's 409). Two corrections at once would
    each send their version, in whatever order their chunks run."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            f"the {job.kind.value} job {job.job_id} of this template is still running: "
            "change the template once it is done"
        )
        self.job_id = job.job_id


def ensure_no_job_on(r: redis.Redis, tenant: str, template_id: str) -> None:
    """Raise TemplateJobRunning while a correction or a cancel of the template runs."""
    for job in list_jobs(r, tenant, limit=200, running_only=True):
        if job.template_id == template_id and job.kind in (JobKind.CORRECT, JobKind.CANCEL):
            raise TemplateJobRunning(job)


def restore(r: redis.Redis, tenant: str, template_id: str) -> dict[str, Any]:
    """Restore an archived template for future contacts, once the cancel that archived it is
    done: its last look deletes every event of the template Rokt holds, those sent after a
    restore too. Raises TemplateNotFound, CancelRunning."""
    cancel_job = get_template(r, tenant, template_id).get("cancelJob")
    job = get_job(r, tenant, cancel_job) if cancel_job else None
    if job is not None and job.state != JobState.DONE:
        raise CancelRunning(job.job_id)
    return restore_template(r, tenant, template_id)


def _append_items(pipe: Any, tenant: str, job_id: str, items: list[str]) -> None:
    for start in range(0, len(items), 1000):
        pipe.rpush(keys.event_job_items(tenant, job_id), *items[start : start + 1000])
    pipe.hincrby(keys.event_job(tenant, job_id), "total", len(items))


# -- running it ------------------------------------------------------------------------------


def step(rt: Runtime, tenant: str, job_id: str, start: int, end: int = 0) -> list[tuple[int, int]]:
    """Run one step of the job (a chunk [start, end), or PLAN) and answer the steps to send next.

    Raises RateLimited / a retryable ClientError (the task retries this step; what it did is
    recorded and not done again), NotYet (PLAN waits for queued executions), ChunkBusy (another
    run holds the chunk)."""
    job = get_job(rt.redis, tenant, job_id)
    if job is None or job.state == JobState.DONE:
        return []
    rt.redis.zadd(keys.event_jobs_running(tenant), {job_id: time.time()}, xx=True)
    if start == PLAN:
        return _plan(rt, job)
    _run_chunk(rt, job, start, end)
    done, total, cursor, first = rt.redis.register_script(_CHUNK_DONE)(
        keys=[keys.event_job(tenant, job_id), keys.event_job_chunks_done(tenant, job_id)], args=[start, end]
    )
    if not int(first):
        return []  # another run ended this chunk and sent what follows (or the job is done)
    if int(cursor) < int(total):
        return _claim(rt, job, 1)
    if int(done) >= int(total):
        return [(PLAN, 0)]
    return []  # other chunks still running: the last to end asks for the last look


def _claim(rt: Runtime, job: Job, count: int) -> list[tuple[int, int]]:
    claim = rt.redis.register_script(_CLAIM)
    claimed = []
    for _ in range(count):
        start, end = claim(keys=[keys.event_job(job.tenant, job.job_id)], args=[CHUNK])
        if int(start) < 0:
            break
        claimed.append((int(start), int(end)))
    return claimed


def _plan(rt: Runtime, job: Job) -> list[tuple[int, int]]:
    """Find the scope's executions not yet in the job and add them; with none left, end it."""
    tenant, r = job.tenant, rt.redis
    lock, token = keys.event_job_planning(tenant, job.job_id), uuid.uuid4().hex
    if not r.set(lock, token, nx=True, ex=PLANNING_LOCK_SECONDS):
        return []  # another step plans it now
    try:
        queued = 0
        if job.fields.get("contact") != "1":
            queued = _queued_in_scope(rt, job)
            first = job.fields.get("planned") != "1"
            if queued > 0 and not first:
                raise NotYet(queued)  # the last look: after they leave the queue
            found = _scope_executions(rt, job)
            outcomes = keys.event_job_outcomes(tenant, job.job_id)
            new: list[str] = []
            for offset in range(0, len(found), 1000):
                batch = found[offset : offset + 1000]
                known = r.hmget(outcomes, batch)
                new.extend(ex for ex, seen in zip(batch, known, strict=True) if seen is None)
            new = sorted(set(new) - _listed(r, tenant, job.job_id)) if new else []
            if new and not first and job.kind == JobKind.CORRECT:
                new = _rendered_before(rt, job, new)
            pipe = r.pipeline(transaction=True)
            if new:
                _append_items(pipe, tenant, job.job_id, new)
            pipe.hset(keys.event_job(tenant, job.job_id), mapping={"planned": "1", "state": JobState.RUNNING})
            pipe.execute()
        else:
            r.hset(keys.event_job(tenant, job.job_id), "state", JobState.RUNNING)
        claimed = _claim(rt, job, max(1, rt.settings.event_job_parallel))
        if claimed:
            return claimed
        if queued > 0:
            raise NotYet(queued)  # nothing sent yet to work on: look again once they are
        current = get_job(r, tenant, job.job_id)
        if current is not None and int(current.fields.get("doneItems", 0)) >= int(
            current.fields.get("total", 0)
        ):
            _finish(rt, current)
        return []
    finally:
        if r.get(lock) == token:  # not another's, taken after this one's ran out
            r.delete(lock)


def _rendered_before(rt: Runtime, job: Job, execution_ids: list[str]) -> list[str]:
    """Of executions found by a correction's last look, those rendered before the job started:
    one rendered since has the new content already, and a journey still sending the template
    would otherwise keep the job from ever ending."""
    started = job.fields.get("startedAt", "")
    kept = []
    for execution_id in execution_ids:
        record = _current(rt, job.tenant, execution_id) or {}
        if (record.get("renderStartedAt") or record.get("createdAt") or "") < started:
            kept.append(execution_id)
    return kept


def _listed(r: redis.Redis, tenant: str, job_id: str) -> set[str]:
    """The items the job holds (the last look adds only the others)."""
    return set(r.lrange(keys.event_job_items(tenant, job_id), 0, -1))


def _finish(rt: Runtime, job: Job) -> None:
    tenant, r = job.tenant, rt.redis
    beyond = _beyond_retention(rt, tenant, job.template_id) if job.template_id else 0
    pipe = r.pipeline(transaction=True)
    pipe.hset(
        keys.event_job(tenant, job.job_id),
        mapping={"state": JobState.DONE, "finishedAt": now_iso(), "beyondRetention": beyond},
    )
    pipe.delete(
        keys.event_job_items(tenant, job.job_id),
        keys.event_job_outcomes(tenant, job.job_id),
        keys.event_job_chunks_done(tenant, job.job_id),
    )
    pipe.zrem(keys.event_jobs_running(tenant), job.job_id)
    # a job's record is kept as long as the daily figures (who did what, and when), then goes
    pipe.expire(keys.event_job(tenant, job.job_id), JOB_KEPT_DAYS * 86400)
    pipe.expire(keys.event_job_notes(tenant, job.job_id), JOB_KEPT_DAYS * 86400)
    pipe.zremrangebyscore(keys.event_jobs(tenant), "-inf", time.time() - JOB_KEPT_DAYS * 86400)
    pipe.execute()
    log.info("event job %s of %s done: %s", job.job_id, tenant, get_job(r, tenant, job.job_id).counts)  # type: ignore[union-attr]


def _queued_in_scope(rt: Runtime, job: Job) -> int:
    """Executions of the scope claimed before the job started and still queued. Those claimed
    after it render the template as it is now (a correction's new content; a cancel's archived
    template ends them `cancelled`), so only these can still reach Rokt with what the job undoes.
    (An execution the reconciler re-drove has a later score: it is stuck, not sending.)"""
    started = float(job.fields.get("startedEpoch") or 0)
    name, wanted = ("templateId", job.template_id) if job.template_id else ("activityId", job.activity_id)
    queued, offset, page = 0, 0, 10000
    while True:  # every one claimed before the start: the oldest may be another journey's
        members = rt.redis.zrangebyscore(
            keys.open_executions(job.tenant), "-inf", started, start=offset, num=page
        )
        pipe = rt.redis.pipeline(transaction=False)
        for member in members:
            pipe.hmget(member, name, "status")
        queued += sum(1 for value, status in pipe.execute() if value == wanted and status == State.QUEUED)
        if len(members) < page:
            return queued
        offset += page


def _scope_executions(rt: Runtime, job: Job) -> list[str]:
    """Execution ids of the scope whose event Rokt holds, by the history store and by the history
    outbox's backlog (finished, not yet in the store: read first, so an entry flushed meanwhile
    is in the store when it is asked). An execution in the backlog is judged by its record in
    Redis, not by the store's older copy (a move not flushed yet: the events a cancel just
    deleted are not held any more)."""
    backlog = _outbox_backlog(rt, job.tenant)
    held, waiting = _judged_in_redis(rt, job, backlog)
    found: set[str] = set(held)
    after = ""
    while True:
        page = rt.history.executions_in_scope(
            job.tenant,
            template_id=job.template_id or None,
            activity_id=job.activity_id or None,
            statuses=ACTS_ON[job.kind],
            after=after,
        )
        found.update(execution_id for execution_id in page if execution_id not in waiting)
        if len(page) < 1000:
            break
        after = page[-1]
    return sorted(found)


def _judged_in_redis(rt: Runtime, job: Job, ids: list[str]) -> tuple[list[str], set[str]]:
    """Of the backlog's executions `ids`, those of the job's scope whose event Rokt holds by
    their record in Redis, and every one Redis holds whole (judged there: the store's copy may
    be older). One already shrunk to its tombstone (archived before its entry was acknowledged)
    is the store's to answer."""
    if not ids:
        return [], set()
    field_name = "templateId" if job.template_id else "activityId"
    wanted = job.template_id or job.activity_id
    pipe = rt.redis.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hmget(keys.execution(job.tenant, execution_id), field_name, "status", "archived")
    held, whole = [], set()
    for execution_id, (value, status, archived) in zip(ids, pipe.execute(), strict=True):
        if status is None or archived == "1":
            continue
        whole.add(execution_id)
        if value == wanted and status in ACTS_ON[job.kind]:
            held.append(execution_id)
    return held, whole


def _pending_in_outbox(rt: Runtime, job: Job, ids: list[str]) -> list[str]:
    """The backlog's executions `ids` of the job's scope that Rokt holds, by their Redis record."""
    return _judged_in_redis(rt, job, ids)[0]


def _outbox_backlog(rt: Runtime, tenant: str) -> list[str]:
    """Execution ids in the history outbox: finished (or moved) and not yet in the store."""
    key = keys.outbox(tenant, OutboxKind.HISTORY)
    ids: list[str] = []
    start = "-"
    while True:
        entries = rt.redis.xrange(key, start, "+", count=1000)
        for _entry_id, values in entries:
            try:
                ids.append(json.loads((values or {}).get("p", "{}")).get("executionId", ""))
            except ValueError:
                continue
        if len(entries) < 1000:
            break
        start = "(" + entries[-1][0]
    return [i for i in dict.fromkeys(ids) if i]


def _count_scope(rt: Runtime, tenant: str, *, template_id: str) -> int:
    probe = Job(tenant, "", JobKind.CORRECT, {"templateId": template_id})
    return len(_scope_executions(rt, probe))


def _beyond_retention(rt: Runtime, tenant: str, template_id: str) -> int:
    """Events of the template Rokt accepted whose record the ledger no longer keeps: its sent
    count less the accepted executions the store holds and those still on their way to it (the
    history outbox's backlog, thousands for a while after a journey's run). The backlog is read
    before the store: an entry flushed meanwhile is never missed (at worst counted twice, the
    figure a moment low, never an event claimed lost that is not)."""
    sent = int(rt.redis.hget(keys.template_sent(tenant), template_id) or 0)
    if not sent:
        return 0
    on_the_way = _accepted_in_outbox(rt, tenant, template_id)
    not_stored = 0
    for offset in range(0, len(on_the_way), 500):  # some the store has already: counted there
        batch = on_the_way[offset : offset + 500]
        stored = rt.history.records(tenant, batch)
        not_stored += sum(1 for i in batch if "acceptedAt" not in stored.get(i, {}))
    return max(0, sent - rt.history.sent_in_scope(tenant, template_id=template_id) - not_stored)


def _accepted_in_outbox(rt: Runtime, tenant: str, template_id: str) -> list[str]:
    """Executions of the template in the history outbox whose event Rokt accepted (whatever
    became of it since)."""
    ids = _outbox_backlog(rt, tenant)
    pipe = rt.redis.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hmget(keys.execution(tenant, execution_id), "templateId", "acceptedAt")
    return [
        execution_id
        for execution_id, (value, accepted_at) in zip(ids, pipe.execute(), strict=True)
        if value == template_id and accepted_at
    ]


# -- one chunk, one item ---------------------------------------------------------------------


def _run_chunk(rt: Runtime, job: Job, start: int, end: int) -> None:
    tenant = job.tenant
    if rt.redis.sismember(keys.event_job_chunks_done(tenant, job.job_id), start):
        return
    # one run of a chunk at a time: a step the reconciler sent again while the first still runs
    # (or waits for its retry) finds the lease taken and leaves the chunk to it
    lease, token = keys.event_job_lease(tenant, job.job_id, start), uuid.uuid4().hex
    # renewed item by item, so it need cover one item: its Rokt call's timeouts and the limiter's
    # longest sleep, with room; a run lost with its worker lets it lapse that soon
    seconds = rt.settings.http_connect_timeout + rt.settings.http_read_timeout + LEASE_MARGIN_SECONDS
    lease_ms = int(seconds * 1000)
    if not rt.redis.set(lease, token, nx=True, px=lease_ms):
        raise ChunkBusy(start, int(rt.redis.pttl(lease)) / 1000)
    try:
        _run_items(rt, job, start, end, lease, lease_ms)
    finally:
        if rt.redis.get(lease) == token:
            rt.redis.delete(lease)


def _run_items(rt: Runtime, job: Job, start: int, end: int, lease: str, lease_ms: int) -> None:
    tenant = job.tenant
    items = rt.redis.lrange(keys.event_job_items(tenant, job.job_id), start, end - 1)
    known = rt.redis.hmget(keys.event_job_outcomes(tenant, job.job_id), items) if items else []
    template = _job_template(rt, job)
    for execution_id, seen in zip(items, known, strict=True):
        if seen is not None:
            continue
        try:
            outcome = process_item(rt, job, execution_id, template)
        except (RateLimited, ClientError) as exc:
            if not _give_up_item(rt, job, execution_id, exc):
                raise
            continue
        record_outcome(rt, job, execution_id, outcome)
        rt.redis.pexpire(lease, lease_ms)


def _job_template(rt: Runtime, job: Job) -> dict[str, Any] | None:
    if job.kind != JobKind.CORRECT:
        return None
    try:
        return get_template(rt.redis, job.tenant, job.template_id)
    except TemplateNotFound:
        return None


def record_outcome(rt: Runtime, job: Job, execution_id: str, outcome: JobOutcome, note: str = "") -> bool:
    """Count one execution's outcome in its job, once; a note (why kept, why failed) is kept."""
    tenant = job.tenant
    recorded = rt.redis.register_script(_RECORD)(
        keys=[
            keys.event_job_outcomes(tenant, job.job_id),
            keys.event_job(tenant, job.job_id),
            keys.event_job_totals(tenant),
            keys.event_jobs_running(tenant),
        ],
        args=[execution_id, outcome.value, job.kind.value, time.time(), job.job_id],
    )
    if note:
        rt.redis.hset(keys.event_job_notes(tenant, job.job_id), execution_id, note[:300])
    return bool(recorded)


def _give_up_item(rt: Runtime, job: Job, execution_id: str, exc: RateLimited | ClientError) -> bool:
    """A failed call for one item: True when the item ends `failed` with a dead letter (Rokt
    refused it for good, or retries ran out); False to retry the chunk (429/5xx, the limiter).
    Refused credentials pause the whole job instead: every item would fail alike."""
    if isinstance(exc, Throttled) and exc.retry_after:
        rt.limiter(job.tenant, "rokt").pause(exc.retry_after)
    if isinstance(exc, (RateLimited, CredentialsRejected, Throttled)):  # waits, not failed attempts
        return False
    attempts = int(rt.redis.hincrby(keys.event_job(job.tenant, job.job_id), f"a:{execution_id}", 1))
    if decide(exc, attempts, 0.0).retry:
        return False
    fail_item(rt, job, execution_id, exc, attempts)
    return True


def fail_item(rt: Runtime, job: Job, execution_id: str, exc: BaseException, attempts: int = 1) -> None:
    stage = JOB_STAGES[job.kind]
    record_dead_letter(
        rt.redis,
        job.tenant,
        f"{job.job_id}:{execution_id}",
        stage=stage,
        error_class=error_class_of(exc),
        reason=reason_of(exc),
        attempts=attempts,
        payload={"jobId": job.job_id, "executionId": execution_id, "kind": job.kind.value},
    )
    _abandon(rt, job, execution_id)
    if job.state == JobState.DONE:  # a replay refused again: counted failed when the job ended
        rt.redis.hset(keys.event_job_notes(job.tenant, job.job_id), execution_id, reason_of(exc)[:300])
    else:
        record_outcome(rt, job, execution_id, JobOutcome.FAILED, reason_of(exc))
    log.warning(
        "event job %s: execution %s failed at %s: %s", job.job_id, execution_id, stage, reason_of(exc)
    )


def _abandon(rt: Runtime, job: Job, execution_id: str) -> None:
    """The item failed for good: the job's change in progress leaves the record (when it is still
    this job's), so Rokt's later webhooks take their own meaning again (a replay sets it again)."""
    record = _current(rt, job.tenant, execution_id)
    if record is not None and record.get(PENDING_FIELD) == pending_of(job):
        executions.mark_whole(rt, job.tenant, execution_id, ACTS_ON[job.kind], **{PENDING_FIELD: ""})


def _current(rt: Runtime, tenant: str, execution_id: str) -> dict[str, str] | None:
    """The execution's record: Redis's while whole there, else the history store's."""
    data = rt.redis.hgetall(keys.execution(tenant, execution_id))
    if data and data.get("archived") != "1":
        return data
    return rt.history.record(tenant, execution_id)


def process_item(rt: Runtime, job: Job, execution_id: str, template: dict[str, Any] | None) -> JobOutcome:
    """Do the job's one thing to one execution; raises what the Rokt call raises (the caller
    retries or gives up), EventNotFound aside: a repeated delete or removal finds it done."""
    record = _current(rt, job.tenant, execution_id)
    if record is None:
        return JobOutcome.GONE
    ex = Execution.from_hash(job.tenant, execution_id, record)
    assert ex is not None
    if ex.status in ALREADY[job.kind]:
        return _done_outcome(job.kind)
    if ex.status not in ACTS_ON[job.kind]:
        return JobOutcome.NOT_HELD
    event = json.loads(record.get("event") or "{}")
    if job.fields.get("futureOnly") == "1" and _has_started(event):
        return JobOutcome.ENDED
    client = job_client(rt, job.tenant)
    if job.kind == JobKind.CORRECT:
        return _correct(rt, job, ex, record, event, template, client)
    found = _intend(rt, job, execution_id)
    if found is not None:
        return found
    if job.kind == JobKind.CANCEL:
        with contextlib.suppress(EventNotFound):  # gone before: done
            client.delete_subscription_event(ex.event_id)
        why = job.fields.get("reason") or "the event was cancelled"
        return _move(rt, job, execution_id, {"error": f"cancelled: {why}"[:500]})
    for subscription_id in json.loads(record.get("subscriptionIds") or "[]"):
        with contextlib.suppress(EventNotFound):  # gone before: done
            client.remove_subscription_event(subscription_id, ex.event_id)
    return _move(rt, job, execution_id, {"error": "withdrawn: removed from the contact's calendar"})


def kept_note(exc: TemplateRenderError) -> str:
    """Why an execution kept its old event, by the template's fields only: a render error may
    quote the contact's own values (a date that does not parse), which a job's notes (kept 400
    days, named by execution id) must not hold."""
    if isinstance(exc, MissingFields):
        return exc.reason[:300]  # "missing value for City": placeholder names only
    fields = ", ".join(exc.fields) or "the event"
    return f"{fields}: does not render with the contact's values"[:300]


def _done_outcome(kind: JobKind) -> JobOutcome:
    return {
        JobKind.CORRECT: JobOutcome.UPDATED,
        JobKind.CANCEL: JobOutcome.CANCELLED,
        JobKind.WITHDRAW: JobOutcome.WITHDRAWN,
    }[kind]


def _correct(
    rt: Runtime,
    job: Job,
    ex: Execution,
    record: dict[str, str],
    event: dict[str, Any],
    template: dict[str, Any] | None,
    client: RoktClient,
) -> JobOutcome:
    if _has_ended(event):
        return JobOutcome.ENDED
    if template is None:
        raise PermanentError(f"template {job.template_id!r} no longer exists: nothing to correct with")
    try:
        tracker = links.tracker_for(
            template,
            links.link_key(rt.redis),
            rt.settings.public_base_url,
            job.tenant,
            ex.execution_id,
            known=record.get(links.LINKS_FIELD),
        )
        new = render_event(template, ex.args, ex.event_id, links=tracker)
    except TemplateRenderError as exc:
        rt.redis.hset(keys.event_job_notes(job.tenant, job.job_id), ex.execution_id, kept_note(exc))
        return JobOutcome.KEPT
    new_json = json.dumps(new, sort_keys=True)
    ids_json = record.get("subscriptionIds") or "[]"
    digest = executions.event_digest(new_json, ids_json)
    if digest == record.get(executions.EVENT_DIGEST_FIELD):
        return JobOutcome.UNCHANGED
    found = _intend(rt, job, ex.execution_id)
    if found is not None:
        return found
    client.update_subscription_event(new)
    values = {
        "event": new_json,
        executions.EVENT_DIGEST_FIELD: digest,
        executions.SENT_DIGEST_FIELD: digest,
        "eventUpdatedAt": now_iso(),
        "error": "",
        # the links so far and the correction's new ones (a kept link keeps its token)
        **(tracker.stored() if tracker is not None else {}),
    }
    return _move(rt, job, ex.execution_id, values)


def pending_of(job: Job) -> str:
    """What the job's change in progress writes on an execution (ledger.PENDING_FIELD)."""
    return f"{job.kind.value}:{job.job_id}"


def _intend(rt: Runtime, job: Job, execution_id: str) -> JobOutcome | None:
    """Before the job's Rokt call for an execution, its change in progress on the record
    (ledger.PENDING_FIELD): Rokt's webhook for that very change may land before the job's move
    (a withdrawal's second removal still to make, a correction whose answer was lost and is
    retried), and then moves nothing (pipeline/subscriptions/webhooks.py, ECHO_OF), so the move
    and its day figure are the job's, once. Kept until the job's move (a retry sets it again),
    or until the item fails for good (`fail_item`). None when set; else the item's outcome (the
    execution left the states the job acts on meanwhile)."""
    marked, previous = executions.mark_whole(
        rt, job.tenant, execution_id, ACTS_ON[job.kind], **{PENDING_FIELD: pending_of(job)}
    )
    if marked:
        return None
    if not previous:
        return JobOutcome.GONE
    if previous in ALREADY[job.kind]:
        return _done_outcome(job.kind)
    return JobOutcome.NOT_HELD


def _move(rt: Runtime, job: Job, execution_id: str, values: dict[str, str]) -> JobOutcome:
    """The execution to the job's state (status row and history follow), its change in progress
    cleared; moved by the webhook of the very change before us (a crash between setting the
    change and the webhook), it is done all the same. An execution found elsewhere keeps the
    change it names: no webhook moves it out of a final state (nor into `removed` from there)."""
    target = TARGETS[job.kind]
    moved, previous = executions.move_whole(
        rt, job.tenant, execution_id, target, ACTS_ON[job.kind], **{**values, PENDING_FIELD: ""}
    )
    if not previous:
        return JobOutcome.GONE
    if moved:
        current = rt.ledger.get(job.tenant, execution_id)
        if current is not None:
            executions.emit_outcome(rt, current)
        return _done_outcome(job.kind)
    if previous == target or previous in ALREADY[job.kind]:
        return _done_outcome(job.kind)
    return JobOutcome.NOT_HELD


def _event_time(event: dict[str, Any], name: str) -> datetime | None:
    value = event.get(name)
    if not value:
        return None
    try:
        zone = ZoneInfo(event.get("timezoneIanaId") or "UTC")
        return datetime.fromisoformat(value).replace(tzinfo=zone)
    except (ValueError, KeyError):
        return None


def _has_ended(event: dict[str, Any]) -> bool:
    """An event whose end (or, without one, its start) is past: corrections leave it be."""
    ends = _event_time(event, "end") or _event_time(event, "start")
    return ends is not None and ends < datetime.now(UTC)


def _has_started(event: dict[str, Any]) -> bool:
    starts = _event_time(event, "start")
    return starts is not None and starts <= datetime.now(UTC)


# -- the rate a job may take -----------------------------------------------------------------


_job_clients: dict[tuple[int, str], tuple[Any, RoktClient]] = {}


def job_client(rt: Runtime, tenant: str) -> RoktClient:
    """The tenant's Rokt client for jobs: its gate takes a slot of the tenant's limiter, and,
    while creates wait in that limiter's line, one of the job share's limiter first."""
    config = rt.tenant(tenant)
    cached = _job_clients.get((id(rt), tenant))
    if cached is None or cached[0] != config:
        client = RoktClient(
            config, rt.redis, rt.settings.http_timeout, gate=lambda: job_gate(rt, tenant), box=rt.token_box
        )
        cached = _job_clients[(id(rt), tenant)] = (config, client)
    return cached[1]


def job_gate(rt: Runtime, tenant: str) -> None:
    """A job's slot. While creates wait in the limiter's line, the job reserves its share of the
    rate (the line's slots are spaced for the rest) and takes its slots from a limiter of its
    own at that share: the two together keep to the rate, a running journey keeps the rest, and
    the job is not left with only the slots creates leave. Alone, it takes the whole rate."""
    limiter = rt.limiter(tenant, "rokt")
    if limiter.line_ahead() > 0:
        paused = limiter.cooldown_remaining()
        if paused > 0:  # Rokt's 429 pauses the whole account, the job's share too
            raise RateLimited(paused)
        share = max(0.01, min(0.95, rt.settings.event_job_share))
        own = _share_limiter(rt, tenant, limiter, share)
        # held past the job's next slot however slow its share is, so creates never get it back between
        limiter.reserve(share, max(RESERVATION_SECONDS, 2 * own.emission))
        own.acquire()
        return
    limiter.acquire()


_share_limiters: dict[tuple[str, float], RateLimiter] = {}


def _share_limiter(rt: Runtime, tenant: str, limiter: RateLimiter, share: float) -> RateLimiter:
    rate = rt.tenant(tenant).rokt_rate_limit * share
    cached = _share_limiters.get((tenant, rate))
    if cached is None:
        jitter = rt.settings.rate_limit_jitter_ms / 1000
        cached = _share_limiters[(tenant, rate)] = RateLimiter(
            rt.redis, tenant, "rokt-jobs", rate, jitter=jitter
        )
    return cached


# -- a journey stopped -----------------------------------------------------------------------

# what Journey Builder's stop calls a stopped journey version (GET /interaction/v1/interactions/{id})
JOURNEY_STOPPED = "Stopped"
STOPPED_BY = "Journey Builder (journey stopped)"


class StopNotConfirmed(Exception):
    """SFMC does not (yet) say the journey version is stopped: nothing is cancelled."""


class NotThisJourney(Exception):
    """The stop names a journey version the activity is not part of: nothing is cancelled."""


STOP_JOB_NS = uuid.UUID("0d6f3a52-3c1e-4b8e-9f61-5a7c2e9b1d40")


def cancel_on_stop(
    rt: Runtime, tenant: str, activity_id: str, definition_id: str, version: int
) -> Job | None:
    """Journey Builder called the activity's `stop`. That call is unauthenticated, so its word
    alone cancels nothing: SFMC must say the journey version is stopped and that the activity is
    one of its activities (else NotThisJourney: a stopped journey cannot be named to cancel a
    running one's events). Then, when the activity's inArguments opted in (`cancelOnStop`), a
    cancel job for its events that have not started yet, one per stopped version however often
    this runs. Returns the job, or None when the activity did not opt in. Raises
    StopNotConfirmed, NotThisJourney, or what the SFMC client raises (the task retries)."""
    if not _opted_in(rt, tenant, activity_id):
        log.info(
            "journey stop for activity %s of %s: cancelOnStop is off; nothing cancelled", activity_id, tenant
        )
        return None
    found = rt.sfmc(tenant).journey_version(definition_id, version)
    status, activities = found if found is not None else ("", set())
    if found is not None and activity_id not in activities:
        raise NotThisJourney(f"activity {activity_id} is not in journey {definition_id} v{version}")
    if status != JOURNEY_STOPPED:
        raise StopNotConfirmed(f"SFMC says journey {definition_id} v{version} is {status or 'unknown'}")
    name = f"{tenant}:{activity_id}:{definition_id}:{version}"
    job_id = "job-stop-" + uuid.uuid5(STOP_JOB_NS, name).hex[:16]
    existing = get_job(rt.redis, tenant, job_id)
    if existing is not None:  # this stop was acted on before (a redelivered task)
        return existing
    return start_job(
        rt,
        tenant,
        JobKind.CANCEL,
        started_by=STOPPED_BY,
        activity_id=activity_id,
        future_only=True,
        reason="the journey was stopped",
        job_id=job_id,
    )


def _opted_in(rt: Runtime, tenant: str, activity_id: str) -> bool:
    """Whether the activity's executions carry `cancelOnStop` on (its inArguments: every
    execution of one activity version carries the same)."""
    probe = Job(tenant, "", JobKind.CANCEL, {"activityId": activity_id})
    found = _pending_in_outbox(rt, probe, _outbox_backlog(rt, tenant)) + rt.history.executions_in_scope(
        tenant, activity_id=activity_id, statuses=HELD, page=5
    )
    for execution_id in found[:5]:
        record = _current(rt, tenant, execution_id)
        if record is None:
            continue
        args = json.loads(record.get("args") or "{}")
        return str(args.get("cancelOnStop", "")).strip().lower() in ("true", "1", "yes", "on")
    return False


# -- replays and the reconciler --------------------------------------------------------------


def replay_item(rt: Runtime, tenant: str, job_id: str, execution_id: str) -> JobOutcome | None:
    """A dead letter's item done again (`rokt-sfmc replay`, through the job-item task); None
    when its job is gone."""
    job = get_job(rt.redis, tenant, job_id)
    if job is None:
        return None
    outcome = process_item(rt, job, execution_id, _job_template(rt, job))
    if job.state == JobState.DONE:  # its outcomes are gone: the counts move here, once
        if not rt.redis.hdel(keys.event_job_notes(tenant, job_id), execution_id):
            return outcome  # replayed before (its failure's note went then): counted already
        pipe = rt.redis.pipeline(transaction=True)
        pipe.hincrby(keys.event_job(tenant, job_id), "n:failed", -1)
        pipe.hincrby(keys.event_job(tenant, job_id), f"n:{outcome.value}", 1)
        pipe.hincrby(keys.event_job_totals(tenant), f"{job.kind.value}:{outcome.value}", 1)
        pipe.execute()
    else:
        record_outcome(rt, job, execution_id, outcome)
    return outcome


def stalled(rt: Runtime, tenant: str, idle_seconds: float) -> list[tuple[str, int, int]]:
    """Steps to send again for running jobs idle longer than `idle_seconds`: their claimed
    chunks not done, or their next chunk, or their last look."""
    r = rt.redis
    due = r.zrangebyscore(
        keys.event_jobs_running(tenant), "-inf", time.time() - idle_seconds, start=0, num=100
    )
    steps: list[tuple[str, int, int]] = []
    for job_id in due:
        r.zadd(keys.event_jobs_running(tenant), {job_id: time.time()}, xx=True)
        job = get_job(r, tenant, job_id)
        if job is None:
            r.zrem(keys.event_jobs_running(tenant), job_id)
            continue
        done = r.smembers(keys.event_job_chunks_done(tenant, job_id))
        claimed = [
            (int(name[2:]), int(value))
            for name, value in job.fields.items()
            if name.startswith("c:") and name[2:] not in done
        ]
        # a chunk whose run holds its lease is being worked on (or waits for its retry): not sent again
        leased = [bool(r.exists(keys.event_job_lease(tenant, job_id, start))) for start, _end in claimed]
        claimed = [chunk for chunk, held in zip(claimed, leased, strict=True) if not held]
        if claimed:
            steps.extend((job_id, start, end) for start, end in claimed)
        elif not any(leased):
            steps.append((job_id, PLAN, 0))
    return steps


def notes(r: redis.Redis, tenant: str, job_id: str, limit: int = 100) -> dict[str, str]:
    """Why the job kept or failed executions (execution id -> reason), at most `limit`."""
    found: dict[str, str] = {}
    for name, value in r.hscan_iter(keys.event_job_notes(tenant, job_id), count=limit):
        found[name] = value
        if len(found) >= limit:
            break
    return found


# an erasure's removals wait this long in all for the limiter (or Rokt's 429) before giving up
FORGET_WAIT_SECONDS = 120.0


def forget_contact_events(rt: Runtime, tenant: str, execution_ids: Iterable[str]) -> int:
    """An erasure's withdrawal, now (`rokt-sfmc forget`): every event of these executions that
    Rokt holds leaves the contact's subscriptions, before their records are erased (after, no
    record would say which events are theirs). Returns how many events were removed; raises
    what Rokt raises past FORGET_WAIT_SECONDS of waiting (the caller erases nothing then)."""
    removed = 0
    client = rt.rokt(tenant)
    deadline = time.monotonic() + FORGET_WAIT_SECONDS
    for execution_id in execution_ids:
        record = _current(rt, tenant, execution_id)
        if record is None or record.get("status") not in ACTS_ON[JobKind.WITHDRAW]:
            continue
        event_id = record.get("eventId", "")
        for subscription_id in json.loads(record.get("subscriptionIds") or "[]"):
            while True:
                try:
                    client.remove_subscription_event(subscription_id, event_id)
                except EventNotFound:
                    pass  # removed before, or not in that subscription any more
                except (RateLimited, Throttled) as exc:
                    wait = float(getattr(exc, "retry_after", 0) or 1.0)
                    if time.monotonic() + wait > deadline:
                        raise
                    time.sleep(wait)
                    continue
                break
        removed += 1
    return removed
