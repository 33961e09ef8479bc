"""Privacy: how long each kind of contact record is kept, and erasing one person on request.

Retention (RETENTION below, the table in SECURITY.md): the ledger and stored webhooks expire by
Redis TTL from their last write; the history store's executions, subscriptions and webhook
receipts, dead letters, replayed dead letters and the erasure audit are trimmed by the
reconciler (`apply_retention`, every beat run, in bounded steps); outbox entries are deleted
once flushed.

Erasure (`rokt-sfmc forget`): `forget_contact` finds every record of one contact key (and
optionally an email) in the tenant's keys and the history store (ledger executions (through the
contact index, and a SCAN of the tenant's execution hashes for executions claimed before the
index), subscriptions (the store's rows, working copies, the index), stored webhooks, dead
letters (pending and replayed), outbox entries not yet flushed, intake entries not yet pumped (by
the id the claim recorded: the stream is read only for records an older version claimed)),
removes them, and records the erasure without the data: when, the tenant, a salted hash of the
contact key, and the counts. With `scan=False` no step walks the keyspace.
Records are matched by the person's identifiers: the contact key and email, then the ids found
on the way (execution ids, Rokt event ids, calendar subscription ids), so a webhook or a row
that names only an id goes too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.stores import deadletters, subscription_records
from pipeline.stores.ledger import now_iso
from pipeline.subscriptions import subscription_rows, webhooks
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind

log = logging.getLogger(__name__)

SCAN_COUNT = 1000


@dataclass(frozen=True)
class Retention:
    kind: str
    key: str
    kept: str
    setting: str
    default: str


# What SECURITY.md documents (tests/unit/upkeep/test_privacy.py keeps the two in step).
RETENTION: tuple[Retention, ...] = (
    Retention(
        "Execution (ledger)",
        keys.execution("<t>", "<executionId>"),
        "contactKey, journey/activity ids, inArguments, rendered event, status, error",
        "EXECUTION_TTL_DAYS",
        "30 days from the execute",
    ),
    Retention(
        "Contact index of executions",
        keys.contact_executions("<t>", "<keyed digest of the contact key>"),
        "execution ids",
        "EXECUTION_TTL_DAYS",
        "30 days from the last execute",
    ),
    Retention(
        "Subscription (history store)",
        "history store: subscriptions",
        "the 26 data extension attributes with their event rank, contactMatch, contact key, email",
        "SUBSCRIPTION_RETENTION_DAYS / ENDED_SUBSCRIPTION_RETENTION_DAYS",
        "while live (0); 30 days after the Unsubscribe or removal",
    ),
    Retention(
        "Subscription working copy",
        keys.subscription("<t>", "<calendarSubscriptionId>"),
        "the same, while an event is merged",
        "(none)",
        "until the history store holds its version (seconds)",
    ),
    Retention(
        "Contact index of subscriptions",
        keys.contact_subscriptions("<t>", "") + "<4 hex of the keyed digest> (hash; field: the next 16)",
        "live calendar subscription ids",
        "SUBSCRIPTION_RETENTION_DAYS",
        "while one is live",
    ),
    Retention(
        "Stored webhook (receipt)",
        keys.webhook_receipt("<t>", "<eventId>"),
        "the envelope until processed; then eventId and eventType only (dedupe)",
        "WEBHOOK_RECEIPT_DAYS / WEBHOOK_DEDUPE_MINUTES",
        "until processed (at most 7 days); then 120 minutes",
    ),
    Retention(
        "Dead letter",
        f"{keys.dead_letters('<t>')} (hash), {keys.dead_letters_by_time('<t>')} (index)",
        "stage, error class, reason, attempts, the payload a replay needs",
        "DEAD_LETTER_RETENTION_DAYS",
        "30 days from the failure",
    ),
    Retention(
        "Replayed dead letter (audit)",
        f"{keys.outbox('<t>', OutboxKind.HISTORY)} until flushed, then the history store (dead_letters)",
        "the dead letter and replayedAt",
        "DEAD_LETTER_RETENTION_DAYS",
        "30 days from the replay",
    ),
    Retention(
        "Outbox entry",
        f"{keys.outbox('<t>', '<kind>')} (stream)",
        "one status row, subscription row or release",
        "(none)",
        "until SFMC accepted it (deleted on flush)",
    ),
    Retention(
        "Erasure audit",
        keys.erasures("<t>"),
        "when, tenant, salted hash of the contact key, counts (no contact data)",
        "ERASURE_AUDIT_DAYS",
        "730 days",
    ),
)
# Kept without contact data (ids, counts, times), so outside this table: API keys (sha256 of the
# key), templates, daily and activity counts, the webhook-applied markers (WEBHOOK_DEDUPE_MINUTES),
# the history store's webhook receipts (eventId, type, time: WEBHOOK_RECEIPT_DAYS), open/awaiting
# sets (execution keys), Celery messages (tenant and ids only). No logs are kept in Redis.


def apply_retention(rt: Runtime, tenant: str, now: float | None = None, batch: int = 500) -> dict[str, int]:
    """One bounded retention step for the tenant (the reconciler runs it every pass)."""
    now = time.time() if now is None else now
    dlq_days = float(rt.settings.dead_letter_retention_days)
    audit_days = float(rt.settings.erasure_audit_days)
    trimmed = {"executions": 0, "deadLetters": 0, "replayedDeadLetters": 0, "erasureAudit": 0}
    if rt.settings.execution_ttl_days > 0:  # the history store's executions: whole days
        oldest = datetime.fromtimestamp(now, UTC).date() - timedelta(days=rt.settings.execution_ttl_days)
        try:
            trimmed["executions"] = rt.history.drop_before(oldest)
        except SQLAlchemyError as exc:  # the store away: its days go next pass; Redis's trimmed now
            log.warning("retention: the history store of %s is unavailable: %s", tenant, type(exc).__name__)
    if dlq_days > 0:
        cutoff = now - dlq_days * 86400
        trimmed["deadLetters"] = deadletters.trim_dead_letters(rt.redis, tenant, cutoff, batch)
        trimmed["replayedDeadLetters"] = deadletters.trim_replayed(rt.redis, tenant, cutoff, batch)
        trimmed["replayedDeadLetters"] += _trim_stored_replayed(rt, tenant, cutoff, batch)
    try:
        trimmed.update(_subscription_retention(rt, tenant, now, batch))
    except SQLAlchemyError as exc:  # the store away: next pass
        log.warning("retention: the history store of %s is unavailable: %s", tenant, type(exc).__name__)
    if audit_days > 0:
        trimmed["erasureAudit"] = int(
            rt.redis.zremrangebyscore(keys.erasures(tenant), "-inf", now - audit_days * 86400)
        )
    return trimmed


def _subscription_retention(rt: Runtime, tenant: str, now: float, batch: int) -> dict[str, int]:
    """Ended subscriptions after ENDED_SUBSCRIPTION_RETENTION_DAYS, live ones after
    SUBSCRIPTION_RETENTION_DAYS (when set) without an event, and webhook receipts after
    WEBHOOK_RECEIPT_DAYS leave the history store; a live one leaves the contact index too."""
    settings, store = rt.settings, rt.history
    trimmed = {"endedSubscriptions": 0, "liveSubscriptions": 0, "webhookReceipts": 0}

    def before(days: float) -> str:
        return datetime.fromtimestamp(now - days * 86400, UTC).isoformat(timespec="milliseconds")

    if settings.ended_subscription_retention_days > 0:
        cutoff = before(settings.ended_subscription_retention_days)
        ended = subscription_records.expire(store, tenant, live=False, before=cutoff, limit=batch)
        trimmed["endedSubscriptions"] = len(ended)
    if settings.subscription_retention_days > 0:
        cutoff = before(settings.subscription_retention_days)
        def leave_the_index(found: list[tuple[str, str]]) -> None:
            pipe = rt.redis.pipeline(transaction=False)
            for sub_id, contact_key in found:
                if contact_key:
                    subscription_rows.index_change_in(pipe, tenant, contact_key, sub_id, live=False)
            pipe.execute()

        live = subscription_records.expire(
            store, tenant, live=True, before=cutoff, limit=batch, on_found=leave_the_index
        )
        trimmed["liveSubscriptions"] = len(live)
    if settings.webhook_receipt_days > 0:
        cutoff = before(settings.webhook_receipt_days)
        trimmed["webhookReceipts"] = subscription_records.drop_receipts_before(store, tenant, cutoff)
    return trimmed


def _trim_stored_replayed(rt: Runtime, tenant: str, cutoff: float, batch: int) -> int:
    """Replayed letters in the history store, `batch` at a time, with their auto-retry markers;
    a store that is away keeps them until the next pass."""
    cutoff_iso = datetime.fromtimestamp(cutoff, UTC).isoformat(timespec="milliseconds")
    try:
        gone = rt.history.drop_replayed_before(tenant, cutoff_iso, batch)
    except SQLAlchemyError as exc:
        log.warning("retention: the history store of %s is unavailable: %s", tenant, type(exc).__name__)
        return 0
    if gone:
        rt.redis.srem(keys.dead_letters_auto_retried(tenant), *gone)
    return len(gone)


# -- erasure ---------------------------------------------------------------------------------


def subject_hash(r: redis.Redis, tenant: str, contact_key: str) -> str:
    """HMAC-SHA256 of the contact key under a per-deployment salt: the same person erased twice
    has the same hash, which can be checked for a given key, but not read back."""
    salt = deployment_salt(r)  # per deployment, created on first use
    return hmac.new(salt.encode(), f"{tenant}\0{contact_key}".encode(), hashlib.sha256).hexdigest()


class _Person:
    """The identifiers of one person: the contact key and email, and the ids found on the way."""

    def __init__(self, contact_key: str, email: str | None) -> None:
        self.ids = {contact_key}
        self.email = (email or "").strip().lower()
        if self.email:
            self.ids.add(self.email)

    def add(self, *values: str) -> None:
        self.ids.update(v for v in values if v)

    def _text_matches(self, text: str) -> bool:
        if text in self.ids or (self.email and self.email in text.lower()):
            return True
        return any(part in self.ids for part in text.split(":")) if ":" in text else False

    def matches(self, value: Any) -> bool:
        """Any string in `value` (JSON text is looked into) names this person."""
        if isinstance(value, str):
            if self._text_matches(value):
                return True
            if value[:1] in "{[":
                try:
                    return self.matches(json.loads(value))
                except ValueError:
                    return False
            return False
        if isinstance(value, dict):
            return any(self.matches(k) or self.matches(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return any(self.matches(v) for v in value)
        return False


def _scan(r: redis.Redis, pattern: str) -> Iterator[str]:
    yield from r.scan_iter(match=pattern, count=SCAN_COUNT)


def _chunks(items: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _forget_executions(rt: Runtime, tenant: str, person: _Person, contact_key: str, scan: bool) -> int:
    r, ledger = rt.redis, rt.ledger
    found = set(ledger.executions_of_contact(tenant, contact_key))
    if person.email:
        found.update(ledger.executions_of_contact(tenant, person.email))  # email-capture contact keys
    if scan:  # executions claimed before the contact index existed
        prefix = keys.execution(tenant, "")
        for batch in _chunks(_scan(r, prefix + "*")):
            pipe = r.pipeline(transaction=False)
            for key in batch:
                pipe.hmget(key, "contactKey", "args")
            for key, (stored_key, args) in zip(batch, pipe.execute(), strict=True):
                if stored_key in person.ids or (args and person.matches(args)):
                    found.add(key[len(prefix) :])
    for key in {contact_key, person.email} - {""}:  # finished ones: in the history store
        found.update(rt.history.executions_of_contact(tenant, key))
    removed = 0
    unrecorded: set[str] = set()  # claimed by an older version: their intake entries, one pass
    for execution in sorted(found):
        ex = ledger.get(tenant, execution)
        archived = rt.history.record(tenant, execution) if ex is None or "archived" in ex.fields else None
        event_id = (ex.event_id if ex else "") or (archived or {}).get("eventId", "")
        person.add(execution, event_id)
        stored = ledger.forget(tenant, execution, ex.contact_key if ex else contact_key, unrecorded)
        removed += int(stored or archived is not None)
        r.zrem(keys.release_due(tenant), execution)
    ledger.drop_intake_entries(tenant, unrecorded)
    rt.history.forget_executions(tenant, sorted(found))
    for key in {contact_key, person.email} - {""}:
        ledger.drop_contact_index(tenant, key)
        rt.history.forget_contact(tenant, key)
    return removed


def _forget_subscriptions(rt: Runtime, tenant: str, person: _Person, contact_key: str, scan: bool) -> int:
    """The person's subscriptions: found by the contact index (and the index as it was once
    named), the history store (contact key or email) and, with `scan`, the working copies
    Redis holds; erased from all of them."""
    r = rt.redis
    names = sorted({contact_key, person.email} - {""})
    found = {sub_id for key in names for sub_id in subscription_rows.live_subscriptions(r, tenant, key)}
    found.update(subscription_records.of_contact(rt.history, tenant, names))
    prefix = keys.subscription(tenant, "")
    if scan:  # working copies not yet in the store (and hashes from before the store)
        for batch in _chunks(_scan(r, prefix + "*")):
            pipe = r.pipeline(transaction=False)
            for key in batch:
                pipe.hget(key, "state")
            for key, raw in zip(batch, pipe.execute(), strict=True):
                if raw and _state_names(json.loads(raw), person):
                    found.add(key[len(prefix) :])
    parked = keys.matches_parked(tenant)  # contact matches waiting for SFMC's credentials
    found.update(_hash_matching(r, parked, person))
    person.add(*found)
    if found:
        r.hdel(parked, *found)
    stored = subscription_records.load(rt.history, tenant, found)
    removed = 0
    for sub_id in sorted(found):
        removed += int(r.delete(prefix + sub_id) or sub_id in stored)
    subscription_records.forget(rt.history, tenant, found)
    subscription_rows.index_drop(r, tenant, names)
    return removed


def _state_names(state: dict[str, list[Any]], person: _Person) -> bool:
    values = {name: value for name, (value, _rank) in state.items()}
    key, _ = subscription_rows.contact_key(values)
    return key in person.ids or person.matches(values.get("Email") or "")


def _forget_webhooks(rt: Runtime, tenant: str, person: _Person, scan: bool) -> int:
    """Stored envelopes naming the person become bare dedupe markers (a redelivery stays a
    duplicate, so Rokt's retry cannot bring the data back). A receipt keeps its envelope only
    until processed, and until then it is in the open set: without `scan`, only those are read
    (a SCAN walks the whole keyspace, as large as the backlog of a broker outage); `scan` also
    finds envelopes an older version kept after processing."""
    r = rt.redis
    prefix = keys.webhook_receipt(tenant, "")
    if scan:
        receipts: Iterable[str] = _scan(r, prefix + "*")
    else:
        unprocessed = r.zscan_iter(keys.webhooks_open(tenant), count=SCAN_COUNT)
        receipts = (prefix + event_id for event_id, _received in unprocessed)
    removed = 0
    for batch in _chunks(receipts):
        for key, raw in zip(batch, r.mget(batch), strict=True):
            if raw is None or '"stripped"' in raw:
                continue
            envelope = json.loads(raw)
            if person.matches(envelope.get("eventDetails")):
                event_id = key[len(prefix) :]
                person.add(event_id)
                removed += webhooks.strip_receipt(r, tenant, event_id, "erased")
                r.zrem(keys.webhooks_open(tenant), event_id)
    return removed


def _hash_matching(r: redis.Redis, key: str, person: _Person) -> list[str]:
    return [field for field, raw in r.hscan_iter(key, count=SCAN_COUNT) if person.matches(raw)]


def _forget_dead_letters(rt: Runtime, tenant: str, person: _Person) -> tuple[int, int]:
    r = rt.redis
    removed = deadletters.remove_dead_letters(r, tenant, _hash_matching(r, keys.dead_letters(tenant), person))
    replayed = _hash_matching(r, keys.dead_letters_replayed(tenant), person)  # an older version's
    deadletters.remove_replayed(r, tenant, replayed)
    stored = rt.history.forget_dead_letters(tenant, person.matches)
    retried = [m for m in r.sscan_iter(keys.dead_letters_auto_retried(tenant)) if person.matches(m)]
    if retried:
        r.srem(keys.dead_letters_auto_retried(tenant), *retried)
    return removed, len(replayed) + len(stored)


def _forget_outboxes(rt: Runtime, tenant: str, person: _Person) -> int:
    """Entries not yet flushed (waiting, or read by a flush and not yet acknowledged)."""
    from pipeline.stores.outbox import GROUP

    r = rt.redis
    removed = 0
    for kind in OutboxKind:
        key = keys.outbox(tenant, kind)
        start = "-"
        while True:
            entries = r.xrange(key, min=start, count=500)
            doomed = [entry_id for entry_id, fields in entries if person.matches(fields.get("p", ""))]
            if doomed:
                pipe = r.pipeline()
                pipe.xack(key, GROUP, *doomed)
                pipe.xdel(key, *doomed)
                removed += int(pipe.execute()[1])
            if len(entries) < 500:
                break
            start = "(" + entries[-1][0]
    return removed


def forget_contact(
    rt: Runtime, tenant: str, contact_key: str, email: str | None = None, *, scan: bool = True
) -> dict[str, Any]:
    """Erase one person from everything the tenant's keys hold; returns what was removed (counts
    per kind) and records the erasure (without the data) in the audit."""
    contact_key = contact_key.strip()
    if not contact_key:
        raise ValueError("a contact key is required")
    person = _Person(contact_key, email)
    counts: Counter[str] = Counter()
    counts["executions"] = _forget_executions(rt, tenant, person, contact_key, scan)
    counts["subscriptions"] = _forget_subscriptions(rt, tenant, person, contact_key, scan)
    counts["webhooks"] = _forget_webhooks(rt, tenant, person, scan)
    counts["deadLetters"], counts["replayedDeadLetters"] = _forget_dead_letters(rt, tenant, person)
    counts["outboxEntries"] = _forget_outboxes(rt, tenant, person)
    counts["logs"] = 0  # no log is kept in Redis; process logs mask emails (pipeline.infra.logsafe)
    record = {
        "at": now_iso(),
        "tenant": tenant,
        "subject": subject_hash(rt.redis, tenant, contact_key),
        "email": bool(person.email),
        "counts": dict(counts),
    }
    rt.redis.zadd(keys.erasures(tenant), {json.dumps(record, sort_keys=True): time.time()})
    log.info("erased subject %s of tenant %s: %s", record["subject"][:12], tenant, dict(counts))
    return record


def erasures(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    """The tenant's erasure audit, oldest first."""
    return [json.loads(raw) for raw in r.zrange(keys.erasures(tenant), 0, -1)]
