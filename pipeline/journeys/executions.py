"""One Journey Builder execution through the pipeline: render, create event, record outcome.

Each step reads the ledger first and does nothing twice: a redelivered render or create
task for a finished execution only re-emits its status row (an idempotent upsert). The
Rokt call carries the deterministic `eventId`, so even a repeat after an unknown outcome is
the same event to Rokt (kept once, or refused as taken: then an earlier attempt created it).

Release: a contact waiting on a "Wait Until API Event" is released exactly once. The release
is appended to the outbox in the same Redis transaction that sets `releasedAt` on the
execution hash (WATCHed), so a redelivered task, a confirmation webhook and the reconciler's
deadline pass racing each other append it once between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients.errors import ClientError, EventNotFound, PermanentError, Throttled, Unauthorized
from pipeline.delivery.retry_policy import Decision, decide
from pipeline.infra import keys
from pipeline.infra.cellsafe import neutralise
from pipeline.infra.logsafe import mask
from pipeline.journeys import links
from pipeline.journeys.render import TemplateRenderError, render_event
from pipeline.journeys.templates import TemplateNotFound, get_template
from pipeline.stores import ledger
from pipeline.stores.deadletters import error_class_of, reason_of, record_dead_letter
from pipeline.stores.ledger import Execution
from pipeline.stores.performance import FAILED_AS
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions.subscription_rows import live_subscriptions
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import HELD_STATES, ErrorClass, OutboxKind, Stage, State
from schemas.jb_execute import release_policy

log = logging.getLogger(__name__)

_SPLIT_IDS = re.compile(r"[\s,;]+")

# What create_step sends, remembered before it is sent (the answer may never come): the render
# step stores the digest of what it rendered (`eventDigest`), and the create step copies it to
# `sentDigest` before its first send (HSETNX: the first content sent). When Rokt later refuses
# the eventId as taken, the two say whether Rokt holds this content or another.
EVENT_DIGEST_FIELD, SENT_DIGEST_FIELD = "eventDigest", "sentDigest"
# KEYS: exec hash, the tenant's archived templates. Answers {hash, archived}: an execution of a
# template archived (its events cancelled) since it was rendered is not sent (nor is sentDigest set).
_LOAD_FOR_CREATE = """
local data = redis.call('HGETALL', KEYS[1])
local template = redis.call('HGET', KEYS[1], 'templateId')
if template and template ~= '' and redis.call('SISMEMBER', KEYS[2], template) == 1 then
  return {data, 1}
end
local digest = redis.call('HGET', KEYS[1], 'eventDigest')
if digest and redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSETNX', KEYS[1], 'sentDigest', digest)
end
return {data, 0}
"""


def event_digest(event_json: str, ids_json: str) -> str:
    """What the execution's event and subscriptions were, in 40 hex: sent content is compared by it."""
    return hashlib.sha1(f"{event_json}\n{ids_json}".encode(), usedforsecurity=False).hexdigest()


# The render step's one read: the execution's hash and the template its `templateId` field names
# (false when there is none). KEYS: exec hash, the tenant's templates hash.
_LOAD_FOR_RENDER = """
local data = redis.call('HGETALL', KEYS[1])
local template = redis.call('HGET', KEYS[1], 'templateId')
if template and template ~= '' then return {data, redis.call('HGET', KEYS[2], template)} end
return {data, false}
"""

# emit_outcome's write in one round trip: the status row appended; then, when a release is
# asked for, the release appended and `releasedAt` set, unless the execution was released
# before. Guarded by the status and updatedAt the caller built the release from: when the hash
# moved since, nothing is released here (-1) and the caller takes release_once's WATCH path.
# KEYS: exec hash, release-due set, status-rows outbox, releases outbox;
# ARGV: status row, release ('' = none), status, updatedAt, released at (iso), execution id
_EMIT = """
redis.call('XADD', KEYS[3], '*', 'p', ARGV[1])
if ARGV[2] == '' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[6])
local f = redis.call('HMGET', KEYS[1], 'status', 'updatedAt', 'releasedAt')
if not f[1] or f[3] then return 0 end
if f[1] ~= ARGV[3] or f[2] ~= ARGV[4] then return -1 end
redis.call('HSET', KEYS[1], 'releasedAt', ARGV[5], 'releasedStatus', ARGV[3])
redis.call('XADD', KEYS[4], '*', 'p', ARGV[2])
return 1
"""


# the outcome of a contact who reaches the step after its event was cancelled (status row's Error)
CANCELLED_REASON = "cancelled: the event was cancelled (its template is archived); nothing sent"

# templates as parsed, by their stored JSON: a render parses each template version once per process
_parsed_templates: dict[str, dict[str, Any]] = {}
PARSED_TEMPLATES_KEPT = 256


def subscription_ids(args: dict[str, Any]) -> list[str]:
    """`subscriptionId` (one id, or several separated by commas) or a `subscriptionIds` list."""
    raw = args.get("subscriptionIds", args.get("subscriptionId"))
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else _SPLIT_IDS.split(str(raw))
    ids: list[str] = []
    for item in items:
        text = str(item).strip()
        if text and text not in ids:
            ids.append(text)
    return ids


def new_execution(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(execution id, ledger record) of a validated execute payload; the id is deterministic,
    so a JB retry of the same contact and activity is the same execution."""
    execution = ledger.execution_id(payload["activityId"], payload["definitionInstanceId"])
    record = {
        "contactKey": payload["keyValue"],
        "eventId": ledger.event_id_for(execution),
        "journeyId": payload["journeyId"],
        "activityId": payload["activityId"],
        "definitionInstanceId": payload["definitionInstanceId"],
        "args": payload["args"],
    }
    return execution, record


def status_row(ex: Execution) -> dict[str, Any]:
    """The status data extension row (primary key ContactKey + ExecutionId). `Error` holds a
    vendor's words, which may start like a formula: neutralised as every free text we write.
    `FirstClickedAt` and `Clicks` only once a tracked link was followed: a status DE installed
    before those columns existed refuses a row naming them, so only a brand that turned Track
    clicks on (and installed the data extensions again: docs/activity.md) ever sends them."""
    f = ex.fields
    clicked = (
        {"FirstClickedAt": f.get("firstClickedAt", ""), "Clicks": int(f["clicks"])} if "clicks" in f else {}
    )
    return {
        "keys": {"ContactKey": ex.contact_key, "ExecutionId": ex.execution_id},
        "values": {
            "Status": ex.status,
            "RoktEventId": ex.event_id if ex.status in HELD_STATES else "",
            "Error": neutralise(f.get("error", "")),
            "TemplateId": ex.template_id,
            "JourneyId": f.get("journeyId", ""),
            "ActivityId": f.get("activityId", ""),
            "CreatedAt": f.get("createdAt", ""),
            "UpdatedAt": f.get("updatedAt", ""),
            **clicked,
        },
    }


class RowsWaitForTheStore(Exception):
    """Some rows of a batch need the history store, which is away: `ready` are the others, as
    the ledger has them now (to send meanwhile); the batch stays pending for the rest."""

    def __init__(self, ready: list[dict[str, Any]], cause: SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.ready = ready
        self.cause = cause


def current_status_rows(rt: Runtime, tenant: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the ledger has them now: one round trip for the batch, and one query of the
    history store for the executions archived since (Redis keeps at most their tombstone). An
    execution found in neither (past its retention) keeps its buffered row. A store that is away
    holds back only the rows of archived executions (RowsWaitForTheStore)."""
    ids = [row["keys"]["ExecutionId"] for row in rows]
    pipe = rt.redis.pipeline(transaction=False)
    for execution_id in ids:
        pipe.hgetall(keys.execution(tenant, execution_id))
    found = dict(zip(ids, pipe.execute(), strict=True))
    archived = [ex_id for ex_id, data in found.items() if not data or data.get("archived") == "1"]

    def as_now(pairs: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        current = []
        for row, execution_id in pairs:
            data = found.get(execution_id) or {}
            ex = Execution.from_hash(tenant, execution_id, data) if data.get("archived") != "1" else None
            current.append(status_row(ex) if ex is not None else row)
        return current

    pairs = list(zip(rows, ids, strict=True))
    if archived:
        try:
            found.update(rt.history.records(tenant, archived))
        except SQLAlchemyError as exc:
            waiting = set(archived)
            raise RowsWaitForTheStore(as_now([p for p in pairs if p[1] not in waiting]), exc) from exc
    return as_now(pairs)


def emit_outcome(rt: Runtime, ex: Execution, *, quiet: bool = False) -> bool:
    """Buffer the status row (every time: an idempotent upsert) and, when the journey waits on
    an API event and this outcome is the one to release at, the release (once). True when this
    call released the contact (logged, unless `quiet`: the caller's line says so)."""
    rows = rt.outbox(ex.tenant, OutboxKind.STATUS_ROWS)
    key = release_key_of(ex)
    if not key or ex.status == State.QUEUED:
        rows.append(status_row(ex))
        return False
    release_on, after_seconds = release_policy(ex.args)
    if release_on == "confirmed" and ex.status == State.ACCEPTED and after_seconds > 0:
        # wait for Rokt's confirmation; the reconciler releases the outcome so far at the deadline
        rows.append(status_row(ex))
        if "releasedAt" not in ex.fields:
            rt.redis.zadd(
                keys.release_due(ex.tenant), {ex.execution_id: time.time() + after_seconds}, nx=True
            )
        return False
    if "releasedAt" in ex.fields:  # released before: the row only (release_once would find it so)
        rows.append(status_row(ex))
        rt.redis.zrem(keys.release_due(ex.tenant), ex.execution_id)
        return False
    box = rt.outbox(ex.tenant, OutboxKind.RELEASES)
    rows.ensure_group()
    box.ensure_group()
    released = rt.redis.register_script(_EMIT)(
        keys=[keys.execution(ex.tenant, ex.execution_id), keys.release_due(ex.tenant), rows.key, box.key],
        args=[
            rows.encode(status_row(ex)),
            box.encode(release_of(ex, key)),
            ex.status,
            ex.fields.get("updatedAt", ""),
            ledger.now_iso(),
            ex.execution_id,
        ],
    )
    if released == -1:  # it moved since it was read: decide on what it is now
        return release_once(rt, ex.tenant, ex.execution_id)
    if released == 1 and not quiet:
        log.info("execution %s released", ex.execution_id)
    return released == 1


def move_whole(
    rt: Runtime,
    tenant: str,
    execution_id: str,
    target: State,
    allowed_from: tuple[State, ...],
    *,
    unless_pending: str = "",
    **values: str,
) -> tuple[bool, str]:
    """Move an execution whatever Redis still holds of it: a tombstone (or nothing) is made whole
    again from the history store first, so it moves like any other (and leaves Redis again once
    the store has the move). A copy the ledger finds older than its tombstone (another webhook
    restored, moved and archived it since this one read the store) is read again, so a move is
    never made twice from a superseded state. Returns (moved, previous status); ('' when neither
    holds it: past its retention; 'archived' when it kept leaving Redis). `unless_pending`: as
    the ledger's transition (a job's change in progress)."""
    return _whole(
        rt,
        tenant,
        execution_id,
        lambda: rt.ledger.transition(
            tenant, execution_id, target, allowed_from, unless_pending=unless_pending, **values
        ),
    )


def mark_whole(
    rt: Runtime, tenant: str, execution_id: str, allowed_from: tuple[State, ...], **values: str
) -> tuple[bool, str]:
    """Set fields of an execution in one of `allowed_from` without moving it (nothing counted),
    whatever Redis still holds of it (made whole again as for a move). Returns (set, status
    found); ('' when neither holds it)."""
    return _whole(
        rt, tenant, execution_id, lambda: rt.ledger.mark(tenant, execution_id, allowed_from, **values)
    )


def _whole(
    rt: Runtime, tenant: str, execution_id: str, change: Callable[[], tuple[bool, str]]
) -> tuple[bool, str]:
    done, previous = False, ""
    for _attempt in range(ledger.RESTORE_ATTEMPTS):  # archived again, or a stale copy: read again
        current = rt.ledger.get(tenant, execution_id)
        if current is None or "archived" in current.fields:
            record = rt.history.record(tenant, execution_id)
            if record is None:
                return False, ""
            if rt.ledger.restore(tenant, execution_id, record) == ledger.STALE:
                done, previous = False, "archived"
                continue
        done, previous = change()
        if previous != "archived":
            break
    return done, previous


def release_key_of(ex: Execution) -> str:
    return str(ex.args.get("releaseEventDefinitionKey") or "").strip()


def release_once(rt: Runtime, tenant: str, execution_id: str) -> bool:
    """Release the contact with the execution's current outcome, unless it was released
    before; True when this call appended the release."""
    exec_key = keys.execution(tenant, execution_id)  # the ledger's execution hash
    box = rt.outbox(tenant, OutboxKind.RELEASES)
    box.ensure_group()

    def release(pipe: redis.client.Pipeline) -> bool:
        ex = Execution.from_hash(tenant, execution_id, pipe.hgetall(exec_key))
        pipe.multi()
        pipe.zrem(keys.release_due(tenant), execution_id)  # released now, before, or never
        if ex is None or "releasedAt" in ex.fields or ex.status == State.QUEUED or not release_key_of(ex):
            return False
        pipe.hset(exec_key, mapping={"releasedAt": ledger.now_iso(), "releasedStatus": ex.status})
        box.append_in(pipe, release_of(ex, release_key_of(ex)))
        return True

    released = bool(rt.redis.transaction(release, exec_key, value_from_callable=True))
    if released:
        log.info("execution %s released", execution_id)
    return released


def release_of(ex: Execution, key: str) -> dict[str, Any]:
    """The release appended to the outbox: the contact, released from `key`'s wait with the outcome."""
    return {
        "eventDefinitionKey": key,
        "contactKey": ex.contact_key,
        "data": {
            "roktStatus": ex.status,
            "roktEventId": ex.event_id if ex.status != State.NO_SUBSCRIPTION else "",
            "executionId": ex.execution_id,
            "error": ex.fields.get("error", ""),
        },
    }


def finish(
    rt: Runtime,
    tenant: str,
    execution_id: str,
    status: State,
    error: str = "",
    allowed_from: tuple[State, ...] = (State.QUEUED,),
    failed_as: str = "",
) -> Execution | None:
    """Move a queued execution to a terminal status and emit its outcome (once per move);
    `failed_as` (`<stage>:<error class>`) is what a move to failed counts as in the day figures."""
    _moved, ex = rt.ledger.transition_get(
        tenant,
        execution_id,
        status,
        allowed_from,
        error=error[:500],
        **({FAILED_AS: failed_as} if failed_as else {}),
    )
    if ex is not None:
        released = emit_outcome(rt, ex, quiet=True)
        log.info(
            "execution %s for %s ended %s%s%s",
            execution_id,
            mask(ex.contact_key),
            ex.status,
            f" ({error})" if error else "",
            "; released" if released else "",
        )
    return ex


def _open(tenant: str, execution_id: str, rt: Runtime, ex: Execution | None) -> Execution | None:
    """The execution if it still needs work; a finished one re-emits its row and returns None."""
    if ex is None:
        log.warning("execution %s of tenant %s not in the ledger (expired?)", execution_id, tenant)
        return None
    if ex.terminal:
        if "archived" not in ex.fields:  # an archived one's row went out before it left Redis
            emit_outcome(rt, ex)
        return None
    return ex


def _as_dict(flat: Any) -> dict[str, str]:
    """A hash as a script answers it (a flat list; a dict under RESP3 where it is one)."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _template(rt: Runtime, tenant: str, ex: Execution, raw: str | None) -> dict[str, Any]:
    """The template the execution names, parsed once per stored version. `raw` was read by the
    id in the execution's `templateId` field; an execution claimed before that field existed
    reads it by the id in its args."""
    if raw is None or ex.fields.get("templateId") != ex.template_id:
        return get_template(rt.redis, tenant, ex.template_id)
    template = _parsed_templates.get(raw)
    if template is None:
        if len(_parsed_templates) >= PARSED_TEMPLATES_KEPT:
            _parsed_templates.clear()
        template = _parsed_templates[raw] = json.loads(raw)
    return template


def render_step(rt: Runtime, tenant: str, execution_id: str) -> bool:
    """Render the contact's event; True when it must be sent to Rokt (else the execution ended)."""
    started_at = ledger.now_iso()  # createdAt -> renderStartedAt is the execution's queue wait
    data, raw_template = rt.redis.register_script(_LOAD_FOR_RENDER)(
        keys=[keys.execution(tenant, execution_id), keys.templates(tenant)]
    )
    ex = _open(tenant, execution_id, rt, Execution.from_hash(tenant, execution_id, _as_dict(data)))
    if ex is None:
        return False
    try:
        template = _template(rt, tenant, ex, raw_template)
        if template.get("archivedAt"):
            finish(rt, tenant, execution_id, State.CANCELLED, CANCELLED_REASON)
            return False
        tracker = links.tracker_for(
            template,
            links.link_key(rt.redis),
            rt.settings.public_base_url,
            tenant,
            execution_id,
            known=ex.fields.get(links.LINKS_FIELD),  # a render again: its links keep their places
        )
        event = render_event(template, ex.args, ex.event_id, links=tracker)
    except TemplateNotFound as exc:
        fail(rt, tenant, execution_id, Stage.RENDER, ErrorClass.PERMANENT, str(exc))
        return False
    except TemplateRenderError as exc:
        if exc.outcome == State.FAILED:
            fail(rt, tenant, execution_id, Stage.RENDER, ErrorClass.PERMANENT, exc.reason)
        else:  # missing_field: the template's policy said so; nothing to replay
            finish(rt, tenant, execution_id, exc.outcome, exc.reason)
        return False
    ids, source = subscription_ids(ex.args), "inArguments"
    if not ids:  # no binding, or the contact has no such attribute: what our webhooks stored
        ids, source = live_subscriptions(rt.redis, tenant, ex.contact_key), "index"
    if not ids:
        finish(
            rt,
            tenant,
            execution_id,
            State.NO_SUBSCRIPTION,
            "no subscriptionId in inArguments and no live subscription stored for the contact",
        )
        return False
    event_json, ids_json = _json(event), _json(ids)
    rt.ledger.update(
        tenant,
        execution_id,
        event=event_json,
        subscriptionIds=ids_json,
        subscriptionSource=source,
        renderStartedAt=started_at,
        **{EVENT_DIGEST_FIELD: event_digest(event_json, ids_json)},
        **(tracker.stored() if tracker is not None else {}),
    )
    return True


def create_step(rt: Runtime, tenant: str, execution_id: str) -> None:
    """Send the rendered event to Rokt (the client passes the tenant's global limiter).

    Raises RateLimited / retryable ClientError for the task to retry; a permanent error
    ends the execution `failed` with Rokt's reason.
    """
    member = keys.execution(tenant, execution_id)
    flat, archived = rt.redis.register_script(_LOAD_FOR_CREATE)(
        keys=[member, keys.archived_templates(tenant)]
    )
    ex = _open(tenant, execution_id, rt, Execution.from_hash(tenant, execution_id, _as_dict(flat)))
    if ex is None:
        return
    if int(archived):
        if ex.fields.get(SENT_DIGEST_FIELD):  # an earlier attempt was sent, its answer lost: Rokt
            with contextlib.suppress(EventNotFound):  # may hold it, and the cancel cannot see it
                rt.rokt(tenant).delete_subscription_event(ex.event_id)
        finish(rt, tenant, execution_id, State.CANCELLED, CANCELLED_REASON)
        return
    sent_before = ex.fields.get(SENT_DIGEST_FIELD)  # None: this call is the first to send
    event = _loads(ex.fields.get("event"))
    ids = _loads(ex.fields.get("subscriptionIds"))
    if not event or not ids:  # only a render step stores these; never expected here
        # a dead letter of the render stage: a replay renders it again, then sends it
        reason = "internal: no rendered event to send"
        fail(rt, tenant, execution_id, Stage.RENDER, ErrorClass.PERMANENT, reason)
        return
    try:
        created = rt.rokt(tenant).create_subscription_event(event, ids)
    except (RateLimited, ClientError) as exc:
        # the limiter kept the call back, or Rokt answered without taking the event: nothing
        # was created, so, when this call was the first to send, nothing has been sent yet
        if sent_before is None and isinstance(exc, (RateLimited, Throttled, Unauthorized, PermanentError)):
            rt.redis.hdel(member, SENT_DIGEST_FIELD)
        if isinstance(exc, PermanentError):
            fail(rt, tenant, execution_id, Stage.CREATE_EVENT, exc.error_class, exc.reason)
            return
        if isinstance(exc, ClientError):
            rt.ledger.update(tenant, execution_id, lastError=exc.reason[:500])
            if getattr(exc, "retry_after", None):
                rt.limiter(tenant, "rokt").pause(exc.retry_after)  # the whole account waits
        raise
    if not created and sent_before not in (None, ex.fields.get(EVENT_DIGEST_FIELD)):
        fail(
            rt,
            tenant,
            execution_id,
            Stage.CREATE_EVENT,
            ErrorClass.PERMANENT,
            "Rokt refuses this eventId as taken by an earlier attempt, which sent other content "
            "(another template version or other subscriptions): the calendar shows that version",
        )
        return
    if not created:
        log.info("execution %s: Rokt already holds its event (an earlier attempt sent it)", execution_id)
    finish(rt, tenant, execution_id, State.ACCEPTED)


def fail(
    rt: Runtime,
    tenant: str,
    execution_id: str,
    stage: Stage,
    error_class: str,
    reason: str,
    attempts: int = 1,
    allowed_from: tuple[State, ...] = (State.QUEUED,),
) -> None:
    """End `failed` and keep a dead letter (payload, stage, class, reason) for replay."""
    ex = rt.ledger.get(tenant, execution_id)
    if ex is not None and ex.status not in allowed_from:
        log.info(
            "execution %s already %s; %s failure not recorded: %s", execution_id, ex.status, stage, reason
        )
        return
    record_dead_letter(
        rt.redis,
        tenant,
        execution_id,
        stage=stage,
        error_class=error_class,
        reason=reason,
        attempts=attempts,
        payload={
            "executionId": execution_id,
            "journeyId": ex.fields.get("journeyId", "") if ex else "",
            "args": ex.args if ex else {},
        },
    )
    error = reason if attempts <= 1 else f"{reason} (after {attempts} attempts)"
    # the day figures count the failure by where and how it failed, never by its text: a render
    # error quotes the contact's values (docs/reporting.md)
    finish(rt, tenant, execution_id, State.FAILED, error, allowed_from, failed_as=f"{stage}:{error_class}")


def give_up(
    rt: Runtime, tenant: str, execution_id: str, stage: Stage, exc: BaseException, attempts: int
) -> None:
    """Retries exhausted (or an unexpected error): end `failed` with a dead letter."""
    fail(rt, tenant, execution_id, stage, error_class_of(exc), reason_of(exc), attempts)


def after_failed_call(
    rt: Runtime, tenant: str, execution_id: str, exc: RateLimited | ClientError
) -> Decision:
    """The create step was rate limited or Rokt failed: retry when (pipeline.delivery.retry_policy),
    or give up, which ends the execution `failed` with a dead letter.

    Attempts live in the ledger, not in Celery's retry count: a replay or a task sent again
    after a lost worker must not start the count afresh. The time budget runs from the
    execution's creation (or from its last replay, or its tenant's last re-enable).
    """
    ex = rt.ledger.get(tenant, execution_id)
    if ex is None:
        return Decision(retry=False)  # expired from the ledger: nothing left to do
    attempts = int(ex.fields.get("attempts", 0))
    started = ex.fields.get("budgetStart") or ex.fields.get("createdAt", "")
    age = _age_seconds(started)
    resumed_at = rt.tenant(tenant).resumed_at
    if resumed_at:  # the time its tenant was disabled does not count against it
        age = min(age, time.time() - resumed_at)
    decision = decide(exc, attempts + 1, age)
    if decision.counted:
        attempts = rt.ledger.add_attempt(tenant, execution_id)
    if not decision.retry:
        give_up(rt, tenant, execution_id, Stage.CREATE_EVENT, exc, max(attempts, 1))
    return decision


def _age_seconds(since: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
    except ValueError:
        return 0.0


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _loads(value: str | None) -> Any:
    return json.loads(value) if value else None
