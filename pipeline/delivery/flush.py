"""Drain the outboxes into SFMC in vendor-sized batches, and what is done into the history store.

Status rows go out through the sync rowset API (at most 50 rows per call), releases through
`/interaction/v1/async/events` (at most 100 members per call, grouped by event definition
key). A batch SFMC rejects as a whole is bisected, so one bad row cannot fail its good
neighbours: the bad row alone ends in the dead-letter store with SFMC's error. A refused token
(CredentialsRejected: a client secret changed or mistyped, a refresh token revoked) is no row's
fault: the flush parks, every row stays in its outbox, and it flushes once SFMC takes the
credentials again (an admin's Save or sign-in; `pipeline.clients.tokens.Refusals`).

The history outbox carries finished executions (by id, read as they are now) and replayed dead
letters (whole: they have left Redis); both are upserts, so a batch written twice is harmless.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from pipeline.clients.errors import ClientError, CredentialsRejected, PermanentError
from pipeline.clients.sfmc import ASYNC_EVENTS_MAX_MEMBERS, ROWSET_MAX_ROWS, SfmcClient
from pipeline.delivery.retry_policy import retryable
from pipeline.infra import keys
from pipeline.journeys.executions import RowsWaitForTheStore, current_status_rows
from pipeline.settings import Tenant
from pipeline.stores import subscription_records
from pipeline.stores.deadletters import record_exception
from pipeline.stores.history import dead_letter_row, row_of
from pipeline.stores.outbox import Entry, Outbox
from pipeline.subscriptions.subscription_rows import current_subscription_rows, store_row
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OUTBOX_STAGES, OutboxKind

log = logging.getLogger(__name__)

FLUSH_DELAY_SECONDS = 1.0  # a first row schedules a flush this much later
MAX_WAIT_SECONDS = 2.0  # a partial batch goes out once its oldest row waited this long


Flusher = Callable[..., "FlushReport"]
CurrentRows = Callable[[Runtime, str, list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class FlushReport:
    items: int = 0
    calls: int = 0
    rejected: int = 0
    more: bool = False  # the time budget ran out with entries left
    retry_in: float = 0.0  # a partial batch is waiting to fill; look again in this many seconds
    parked: bool = False  # SFMC refuses the tenant's credentials: the entries wait in the outbox
    holding: bool = False  # parked with a batch this consumer took: the same consumer reads it again


def claim_flush_slot(rt: Runtime, tenant: str, kind: OutboxKind, delay: float = FLUSH_DELAY_SECONDS) -> bool:
    """True when no flush is scheduled within `delay`: the caller schedules one then.

    One scheduled flush per tenant and kind at a time, however many rows arrive meanwhile.
    """
    return bool(rt.redis.set(keys.flush_slot(tenant, kind), "1", nx=True, px=_slot_ms(delay)))


# schedule_flushes' one round trip: for each kind, an outbox holding entries whose flush slot
# this call takes. KEYS: per kind its outbox, then its slot key; ARGV: the slot's lifetime (ms).
# Answers the (1-based) positions of the kinds whose flush the caller schedules, and each slot's
# remaining lifetime (ms; negative when there is none).
_CLAIM_FLUSH_SLOTS = """
local due, held = {}, {}
for i = 1, #KEYS, 2 do
  if redis.call('XLEN', KEYS[i]) > 0 and redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ARGV[1]) then
    due[#due + 1] = (i + 1) / 2
  end
  held[#held + 1] = redis.call('PTTL', KEYS[i + 1])
end
return {due, held}
"""


def claim_flush_slots(
    rt: Runtime, tenant: str, kinds: Iterable[OutboxKind], delay: float = FLUSH_DELAY_SECONDS
) -> list[OutboxKind]:
    """The kinds whose outbox holds entries and whose flush slot this call took (claim_flush_slot
    for each kind with a backlog), in one round trip; none while this process saw the slot taken.

    A slot is taken for its whole lifetime (nothing deletes it), and while it is taken no call
    can take it: a kind whose slot this process last saw held is not asked about again until then.
    """
    now = time.monotonic()
    boxes = {kind: rt.outbox(tenant, kind) for kind in kinds}
    asked = [kind for kind, box in boxes.items() if box.flush_slot_held_until <= now]
    if not asked:
        return []
    names = []
    for kind in asked:
        names += [boxes[kind].key, keys.flush_slot(tenant, kind)]
    script = rt.redis.register_script(_CLAIM_FLUSH_SLOTS)
    due, held = script(keys=names, args=[_slot_ms(delay)])
    for kind, remaining_ms in zip(asked, held, strict=True):
        boxes[kind].flush_slot_held_until = now + int(remaining_ms) / 1000 if int(remaining_ms) > 0 else 0.0
    return [asked[int(position) - 1] for position in due]


def _slot_ms(delay: float) -> int:
    return max(1, int(delay * 1000))


def latest_per_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per primary key, the last appended winning (stream order is append order)."""
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_key[json.dumps(row["keys"], sort_keys=True)] = row
    return list(by_key.values())


def _call(rt: Runtime, tenant: str, send: Callable[[], Any]) -> None:
    try:
        send()
    except ClientError as exc:
        if getattr(exc, "retry_after", None):
            rt.limiter(tenant, "sfmc").pause(exc.retry_after)
        raise


def send_bisecting(
    rt: Runtime,
    tenant: str,
    items: list[Any],
    send: Callable[[list[Any]], Any],
    on_rejected: Callable[[Any, PermanentError], None],
    report: FlushReport,
    on_sent: Callable[[list[Any]], None] | None = None,
) -> None:
    """Send `items`; a whole-batch rejection splits it until the bad item is alone. `on_sent`
    hears of every part SFMC took, as soon as it took it."""
    report.calls += 1
    try:
        _call(rt, tenant, lambda: send(items))
    except CredentialsRejected:
        raise  # every call of the tenant fails alike: no item is at fault, nothing is split
    except PermanentError as exc:
        if len(items) == 1:
            report.rejected += 1
            on_rejected(items[0], exc)
            return
        middle = len(items) // 2
        send_bisecting(rt, tenant, items[:middle], send, on_rejected, report, on_sent)
        send_bisecting(rt, tenant, items[middle:], send, on_rejected, report, on_sent)
        return
    if on_sent is not None:
        on_sent(items)


def sfmc_parked(client: SfmcClient) -> bool:
    """Whether SFMC refuses the tenant's credentials now: held (no token may be asked for yet), or
    refused again by the one token request made once the hold ended. One Redis read while SFMC
    refuses nothing: what a flush pays to take no batch it could not send."""
    refusals = client.refusals
    if not refusals.marked():
        return False
    if refusals.held() is not None:
        return True
    try:
        client.token.get()
    except CredentialsRejected:
        return True
    return False


def _unless_parked(
    client: SfmcClient, box: Outbox, consumer: str, report: FlushReport, drain: Callable[[], FlushReport]
) -> FlushReport:
    """`drain()`, unless SFMC refuses the tenant's credentials, before it or on its way: then the
    report is `parked`, and `holding` when this consumer took a batch it could not send (its entries
    stay pending for it: the task runs again under the same consumer name to send them)."""
    try:
        if not sfmc_parked(client):
            return drain()
    except CredentialsRejected as exc:
        log.warning("SFMC refuses the credentials of %s (%s): its %s wait", box.tenant, exc.reason, box.kind)
    box.ensure_group()
    report.parked = True
    report.holding = box.holds(consumer)
    return report


def _drain(
    box: Outbox,
    consumer: str,
    count: int,
    send_batch: Callable[[list[Entry]], None],
    report: FlushReport,
    budget_seconds: float,
    max_wait: float,
) -> FlushReport:
    """Resend recovered batches, then send full batches; a partial batch only once its
    oldest entry has waited `max_wait` seconds (else `report.retry_in` says when to look).

    Full batches keep SFMC calls near rows / batch size; the wait bounds row latency.
    """
    deadline = time.monotonic() + budget_seconds
    while batch := box.take_recovered(consumer, count):
        send_batch(batch)
        box.ack(batch)
        report.items += len(batch)
    while True:
        if time.monotonic() > deadline:
            report.more = True
            return report
        waiting, age = box.waiting()
        if waiting == 0:
            break
        if waiting < count and age < max_wait:
            report.retry_in = max_wait - age
            break
        batch = box.take_new(consumer, count)
        if not batch:
            break
        send_batch(batch)
        box.ack(batch)
        report.items += len(batch)
    box.forget_consumer(consumer)
    return report


def _flush_de_rows(
    rt: Runtime,
    tenant: str,
    kind: OutboxKind,
    de_key: str,
    current: CurrentRows,
    consumer: str,
    budget_seconds: float,
    max_wait: float,
) -> FlushReport:
    """Rows are rebuilt from the current state when sent, so a batch retried late (after a
    429, say) can never overwrite a newer row that another batch already wrote."""
    client = rt.sfmc(tenant)
    report = FlushReport()

    def rejected(row: dict[str, Any], exc: PermanentError) -> None:
        item = ":".join(str(v) for v in row["keys"].values())
        log.error("%s row %s rejected by SFMC: %s", kind, item, exc.reason)
        payload = {"deKey": de_key, "row": row}
        record_exception(rt.redis, tenant, f"{kind}-row:{item}", OUTBOX_STAGES[kind], exc, payload)

    def send(rows: list[dict[str, Any]]) -> None:
        send_bisecting(rt, tenant, rows, lambda items: client.upsert_rows(de_key, items), rejected, report)

    def send_batch(batch: list[Entry]) -> None:
        try:
            rows = current(rt, tenant, latest_per_key([entry.payload for entry in batch]))
        except RowsWaitForTheStore as waiting:  # the others go now; the batch waits for the store
            if waiting.ready:
                send(waiting.ready)  # sent again with the rest later: an upsert of the same values
            raise waiting.cause from waiting
        send(rows)

    box = rt.outbox(tenant, kind)
    return _unless_parked(
        client,
        box,
        consumer,
        report,
        lambda: _drain(box, consumer, ROWSET_MAX_ROWS, send_batch, report, budget_seconds, max_wait),
    )


def _de_rows_flusher(kind: OutboxKind, de_key_of: Callable[[Tenant], str], current: CurrentRows) -> Flusher:
    """A flusher of one kind of data-extension rows (status rows, subscription rows)."""

    def flush(
        rt: Runtime,
        tenant: str,
        consumer: str,
        budget_seconds: float = 30,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> FlushReport:
        de_key = de_key_of(rt.tenant(tenant))
        return _flush_de_rows(rt, tenant, kind, de_key, current, consumer, budget_seconds, max_wait)

    return flush


flush_status_rows = _de_rows_flusher(
    OutboxKind.STATUS_ROWS, lambda t: t.sfmc_status_de_key, current_status_rows
)
flush_subscription_rows = _de_rows_flusher(
    OutboxKind.SUBSCRIPTION_ROWS, lambda t: t.sfmc_subscription_de_key, current_subscription_rows
)


def flush_releases(
    rt: Runtime,
    tenant: str,
    consumer: str,
    budget_seconds: float = 30,
    max_wait: float = MAX_WAIT_SECONDS,
) -> FlushReport:
    client = rt.sfmc(tenant)
    report = FlushReport()

    box = rt.outbox(tenant, OutboxKind.RELEASES)

    def member(entry: Entry) -> dict[str, Any]:
        return {"contactKey": entry.payload["contactKey"], "data": entry.payload["data"]}

    def send_batch(batch: list[Entry]) -> None:
        """Each part SFMC took is acknowledged at once: a release fires a journey event, so a part
        sent must never be sent again because a later step of the batch failed (a full Redis
        refusing the next limiter call or dead letter makes the task run again in place)."""
        groups: dict[str, list[Entry]] = {}
        for entry in batch:
            groups.setdefault(entry.payload["eventDefinitionKey"], []).append(entry)
        for key, entries in groups.items():

            def rejected(entry: Entry, exc: PermanentError, key: str = key) -> None:
                item = f"release:{entry.payload['data'].get('executionId')}"
                payload = {"eventDefinitionKey": key, "member": member(entry)}
                record_exception(rt.redis, tenant, item, OUTBOX_STAGES[OutboxKind.RELEASES], exc, payload)
                box.ack([entry])

            def fire(part: list[Entry], key: str = key) -> None:
                client.fire_events(key, [member(entry) for entry in part])

            send_bisecting(rt, tenant, entries, fire, rejected, report, on_sent=box.ack)

    return _unless_parked(
        client,
        box,
        consumer,
        report,
        lambda: _drain(box, consumer, ASYNC_EVENTS_MAX_MEMBERS, send_batch, report, budget_seconds, max_wait),
    )


HISTORY_BATCH = 500  # executions (or replayed dead letters) per write to the history store


def flush_history(
    rt: Runtime,
    tenant: str,
    consumer: str,
    budget_seconds: float = 30,
    max_wait: float = MAX_WAIT_SECONDS,
) -> FlushReport:
    """Finished executions into the history store, one upsert per batch; then each record that
    waits for nothing more shrinks to its tombstone in Redis; replayed dead letters in one upsert
    of their own. A store that is down raises (the task retries, the entries wait in the outbox);
    nothing is dropped."""
    report = FlushReport()
    box = rt.outbox(tenant, OutboxKind.HISTORY)

    def send_batch(batch: list[Entry]) -> None:
        letters = [entry.payload["deadLetter"] for entry in batch if "deadLetter" in entry.payload]
        if letters:
            report.calls += 1
            _write_dead_letters(rt, tenant, letters, report)
        ids = list(
            dict.fromkeys(
                str(entry.payload["executionId"]) for entry in batch if "executionId" in entry.payload
            )
        )
        if not ids:
            return
        pipe = rt.redis.pipeline(transaction=False)
        for execution in ids:
            pipe.hgetall(keys.execution(tenant, execution))
        records = {
            execution: record
            for execution, record in zip(ids, pipe.execute(), strict=True)
            if record and record.get("archived") != "1"  # forgotten meanwhile, or archived before
        }
        report.calls += 1
        refused = _write_history(rt, tenant, records, report)
        for execution in refused:
            del records[execution]
        changed = [
            execution
            for execution, record in records.items()
            if rt.ledger.archive(tenant, execution, record, rt.settings.execution_tombstone_seconds) == -1
        ]
        for execution in changed:  # moved since it was read: archived again as it is now
            box.append({"executionId": execution})

    return _drain(box, consumer, HISTORY_BATCH, send_batch, report, budget_seconds, max_wait)


def _write_history(
    rt: Runtime, tenant: str, records: dict[str, dict[str, str]], report: FlushReport
) -> list[str]:
    """One upsert for the batch (see _write_refusing). Returns the refused executions."""
    rows = {execution: row_of(tenant, execution, record) for execution, record in records.items()}
    return _write_refusing(rt, tenant, OutboxKind.HISTORY, rows, rt.history.upsert_executions, report)


def _write_refusing(
    rt: Runtime,
    tenant: str,
    kind: OutboxKind,
    rows: dict[str, dict[str, Any]],
    upsert: Callable[[list[dict[str, Any]]], int],
    report: FlushReport,
) -> list[str]:
    """One upsert for the batch. A store that is away raises (the batch waits); a batch the store
    refuses (a value it cannot hold) is written row by row, and a row refused alone is
    dead-lettered (replayed, it is written as it is then). Returns the refused ids."""
    try:
        upsert(list(rows.values()))
        return []
    except SQLAlchemyError as exc:
        if retryable(exc):  # away, not refusing: the batch waits
            raise
    name, field = REFUSED_ITEMS[kind]
    refused = []
    for item, row in rows.items():
        report.calls += 1
        try:
            upsert([row])
        except SQLAlchemyError as exc:
            if retryable(exc):
                raise
            report.rejected += 1
            refused.append(item)
            log.error("history store refused %s %s: %s", name, item, type(exc).__name__)
            record_exception(rt.redis, tenant, f"{name}:{item}", OUTBOX_STAGES[kind], exc, {field: item})
    return refused


# per store outbox: a refused row's dead-letter item prefix, and its payload's field
REFUSED_ITEMS: dict[OutboxKind, tuple[str, str]] = {
    OutboxKind.HISTORY: ("history", "executionId"),
    OutboxKind.SUBSCRIPTION_HISTORY: ("subscription-history", "subscriptionId"),
}

# Drops a subscription's working copy once the store holds its version; a copy merged again
# meanwhile stays (its newer version has its own outbox entry). KEYS: the copy; ARGV: the version.
_DROP_WORKING_COPY = """
if redis.call('HGET', KEYS[1], 'v') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def flush_subscription_history(
    rt: Runtime,
    tenant: str,
    consumer: str,
    budget_seconds: float = 30,
    max_wait: float = MAX_WAIT_SECONDS,
) -> FlushReport:
    """Merged subscriptions and webhook receipts into the history store, one upsert each per
    batch; then each subscription's working copy leaves Redis if it is still the version written
    (its contact index entry stays: render reads it). A store that is down raises (the task
    retries, the entries wait in the outbox)."""
    report = FlushReport()
    box = rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY)
    drop = rt.redis.register_script(_DROP_WORKING_COPY)

    def send_batch(batch: list[Entry]) -> None:
        ids = list(
            dict.fromkeys(str(e.payload["subscriptionId"]) for e in batch if "subscriptionId" in e.payload)
        )
        receipts = {
            str(e.payload["webhook"]): {
                "tenant": tenant,
                "event_id": str(e.payload["webhook"]),
                "event_type": str(e.payload.get("eventType", ""))[:64],
                "recorded_at": str(e.payload.get("at", "")),
            }
            for e in batch
            if "webhook" in e.payload
        }
        pipe = rt.redis.pipeline(transaction=False)
        for subscription_id in ids:
            pipe.hgetall(keys.subscription(tenant, subscription_id))
        held = {  # forgotten or dropped meanwhile: nothing to write
            subscription_id: copy
            for subscription_id, copy in zip(ids, pipe.execute(), strict=True)
            if copy.get("state") and copy.get("v")
        }
        report.calls += 1
        rows = {
            subscription_id: store_row(tenant, subscription_id, copy)
            for subscription_id, copy in held.items()
        }
        upsert = partial(subscription_records.upsert_subscriptions, rt.history)
        for subscription_id in _write_refusing(
            rt, tenant, OutboxKind.SUBSCRIPTION_HISTORY, rows, upsert, report
        ):
            del rows[subscription_id]
        if receipts:
            subscription_records.record_receipts(rt.history, list(receipts.values()))
        for subscription_id, row in rows.items():
            drop(keys=[keys.subscription(tenant, subscription_id)], args=[row["version"]])

    return _drain(box, consumer, HISTORY_BATCH, send_batch, report, budget_seconds, max_wait)


def _write_dead_letters(rt: Runtime, tenant: str, letters: list[dict[str, Any]], report: FlushReport) -> None:
    """One upsert of replayed letters, as `_write_history` does executions: a store that is away
    raises (the batch waits); a letter refused alone is dead-lettered whole (its replay appends
    it to the history outbox again), so it is never dropped."""
    rows = [dead_letter_row(tenant, letter) for letter in letters]
    try:
        rt.history.upsert_dead_letters(rows)
        return
    except SQLAlchemyError as exc:
        if retryable(exc):
            raise
    for letter, row in zip(letters, rows, strict=True):
        report.calls += 1
        try:
            rt.history.upsert_dead_letters([row])
        except SQLAlchemyError as exc:
            if retryable(exc):
                raise
            report.rejected += 1
            log.error("history store refused a replayed dead letter: %s", type(exc).__name__)
            stage = OUTBOX_STAGES[OutboxKind.HISTORY]
            item = f"history:dead-letter:{letter.get('id')}"
            record_exception(rt.redis, tenant, item, stage, exc, {"deadLetter": letter})


FLUSHERS: dict[str, Flusher] = {
    OutboxKind.STATUS_ROWS: flush_status_rows,
    OutboxKind.SUBSCRIPTION_ROWS: flush_subscription_rows,
    OutboxKind.RELEASES: flush_releases,
    OutboxKind.HISTORY: flush_history,
    OutboxKind.SUBSCRIPTION_HISTORY: flush_subscription_history,
}
