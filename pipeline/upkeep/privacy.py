"""Privacy: how long each kind of contact record is kept, and erasing people on request.

Retention (RETENTION below, the table in SECURITY.md): the ledger and stored webhooks expire by
Redis TTL from their last write; the history store's executions, subscriptions and webhook
receipts, dead letters, replayed dead letters and the erasure audit are trimmed by the
reconciler (`apply_retention`, every beat run, in bounded steps); outbox entries are deleted
once flushed.

Erasure (`rokt-sfmc forget`): `forget_contacts` finds every record of a batch of people (a
contact key and optionally an email each; `forget_contact` is the batch of one) in the tenant's
keys and the history store (ledger executions (through the contact index, and a SCAN of the
tenant's execution hashes for executions claimed before the index), subscriptions (the store's
rows, working copies, the index), stored webhooks, dead letters (pending and replayed), outbox
entries not yet flushed, intake entries not yet pumped (by the id the claim recorded: the stream
is read only for records an older version claimed)),
removes them, and records the erasure without the data: when, the tenant, a salted hash of the
contact key, and the counts, one entry per person. With `scan=False` no step walks the
keyspace. Records are matched by each person's identifiers: the contact key and email, then the
ids found on the way (execution ids, Rokt event ids, calendar subscription ids), so a webhook or
a row that names only an id goes too. Each walk (the keyspace SCANs, the dead-letter hashes, the
outbox streams, the stored letters) is made once per batch, every record matched against every
person at once (`_People`): a batch of a thousand erasure requests costs about one walk, not a
thousand.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy.exc import SQLAlchemyError

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.journeys import event_jobs
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
# key), templates, activity counts and the day figures (docs/reporting.md: PERFORMANCE_DAYS), the
# webhook-applied markers (WEBHOOK_DEDUPE_MINUTES), the history store's webhook receipts (eventId,
# type, time: WEBHOOK_RECEIPT_DAYS), open/awaiting sets (execution keys), Celery messages (tenant
# and ids only). No logs are kept in Redis.


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


class _People:
    """The identifiers of a batch of people: each one's contact key and email, and the ids found
    on the way. A text is matched against every person at once: one look-up per token (the
    text, each `:`-separated part) and, for emails (matched as a substring of the lower-cased
    text), one per `@` and local-part length, so a walk of the keyspace costs the same for one
    person or thousands."""

    def __init__(self, people: Sequence[tuple[str, str | None]]) -> None:
        self.contact_keys = [key.strip() for key, _email in people]
        self.emails = [(email or "").strip().lower() for _key, email in people]
        self.ids: list[set[str]] = [set() for _ in people]
        self._holders: dict[str, set[int]] = {}  # identifier -> the people it names
        self._by_local: dict[str, list[int]] = {}  # an email's part before its first "@" -> people
        self._odd: list[int] = []  # emails without "@": a plain substring test each
        for i, (key, email) in enumerate(zip(self.contact_keys, self.emails, strict=True)):
            self.add(i, key, email)
            if "@" in email:
                self._by_local.setdefault(email[: email.index("@")], []).append(i)
            elif email:
                self._odd.append(i)
        self._local_lengths = sorted({len(local) for local in self._by_local})

    def __len__(self) -> int:
        return len(self.contact_keys)

    def names(self, i: int) -> list[str]:
        """The contact key and email of person `i` (the names indexes and the store know)."""
        return sorted({self.contact_keys[i], self.emails[i]} - {""})

    def add(self, i: int, *values: str) -> None:
        for value in values:
            if value:
                self.ids[i].add(value)
                self._holders.setdefault(value, set()).add(i)

    def holding(self, value: str | None) -> set[int]:
        """The people one of whose identifiers is exactly `value`."""
        return set(self._holders.get(value, ())) if value else set()

    def _emails_in(self, text: str) -> set[int]:
        lower, found = text.lower(), set()
        at = lower.find("@")
        while at >= 0:
            for length in self._local_lengths:
                if length > at:
                    break
                for i in self._by_local.get(lower[at - length : at], ()):
                    if lower.startswith(self.emails[i][length:], at):
                        found.add(i)
            at = lower.find("@", at + 1)
        found.update(i for i in self._odd if self.emails[i] in lower)
        return found

    def _text_names(self, text: str) -> set[int]:
        found = self.holding(text)
        if self._by_local or self._odd:
            found |= self._emails_in(text)
        if ":" in text:
            for part in text.split(":"):
                found |= self._holders.get(part, set())
        return found

    def who(self, value: Any) -> set[int]:
        """The people any string in `value` names (JSON text is looked into)."""
        if isinstance(value, str):
            found = self._text_names(value)
            if value[:1] in "{[":
                with contextlib.suppress(ValueError):  # not JSON: its text was all there was
                    found |= self.who(json.loads(value))
            return found
        if isinstance(value, dict):
            found = set()
            for k, v in value.items():
                found |= self.who(k) | self.who(v)
            return found
        if isinstance(value, (list, tuple)):
            found = set()
            for v in value:
                found |= self.who(v)
            return found
        return set()

    def first(self, value: Any) -> int | None:
        """The first person of the batch `value` names (a record naming several goes with the
        first, as when they are forgotten one by one in that order), or None."""
        return min(self.who(value), default=None)


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


def _owned(found: list[set[str]]) -> list[list[str]]:
    """Each person's records, a record found for several going with the first of them (as when
    they are forgotten one by one in that order: the first erases it, the others find it gone)."""
    taken: set[str] = set()
    owned = []
    for mine in found:
        owned.append(sorted(mine - taken))
        taken |= mine
    return owned


def _forget_executions(
    rt: Runtime, tenant: str, people: _People, scan: bool, remove_events: bool = True
) -> tuple[list[int], list[int]]:
    """The people's executions erased (counts per person), and, with `remove_events`, the
    events Rokt holds of them removed from their subscriptions first (counts per person)."""
    r, ledger = rt.redis, rt.ledger
    # the contact index (by contact key, and email: email-capture contact keys)
    found = [
        {x for name in people.names(i) for x in ledger.executions_of_contact(tenant, name)}
        for i in range(len(people))
    ]
    if scan:  # executions claimed before the contact index existed: one walk for the batch
        prefix = keys.execution(tenant, "")
        for batch in _chunks(_scan(r, prefix + "*")):
            pipe = r.pipeline(transaction=False)
            for key in batch:
                pipe.hmget(key, "contactKey", "args")
            for key, (stored_key, args) in zip(batch, pipe.execute(), strict=True):
                for i in people.holding(stored_key) | (people.who(args) if args else set()):
                    found[i].add(key[len(prefix) :])
    for i in range(len(people)):  # finished ones: in the history store
        for name in people.names(i):
            found[i].update(rt.history.executions_of_contact(tenant, name))
    owned = _owned(found)
    # the events first: once the records go, nothing says which events are theirs; a Rokt that
    # cannot take the removals now fails the erasure before anything is erased
    events = [
        event_jobs.forget_contact_events(rt, tenant, sorted(mine)) if remove_events else 0 for mine in owned
    ]
    removed = [0] * len(people)
    unrecorded: set[str] = set()  # claimed by an older version: their intake entries, one pass
    for i, mine in enumerate(owned):
        for execution in mine:
            ex = ledger.get(tenant, execution)
            archived = rt.history.record(tenant, execution) if ex is None or "archived" in ex.fields else None
            event_id = (ex.event_id if ex else "") or (archived or {}).get("eventId", "")
            people.add(i, execution, event_id)
            contact_key = ex.contact_key if ex else people.contact_keys[i]
            stored = ledger.forget(tenant, execution, contact_key, unrecorded)
            removed[i] += int(stored or archived is not None)
            r.zrem(keys.release_due(tenant), execution)
    ledger.drop_intake_entries(tenant, unrecorded)
    for chunk in _chunks(sorted(set().union(*found))):  # a bounded IN list per statement
        rt.history.forget_executions(tenant, chunk)
    for i in range(len(people)):
        for name in people.names(i):
            ledger.drop_contact_index(tenant, name)
            rt.history.forget_contact(tenant, name)
    return removed, events


def _forget_subscriptions(rt: Runtime, tenant: str, people: _People, scan: bool) -> list[int]:
    """The people's subscriptions: found by the contact index (and the index as it was once
    named), the history store (contact key or email) and, with `scan`, the working copies
    Redis holds; erased from all of them."""
    r = rt.redis
    found = []
    for i in range(len(people)):
        names = people.names(i)
        mine = {sub_id for key in names for sub_id in subscription_rows.live_subscriptions(r, tenant, key)}
        mine.update(subscription_records.of_contact(rt.history, tenant, names))
        found.append(mine)
    prefix = keys.subscription(tenant, "")
    if scan:  # working copies not yet in the store (and hashes from before the store)
        for batch in _chunks(_scan(r, prefix + "*")):
            pipe = r.pipeline(transaction=False)
            for key in batch:
                pipe.hget(key, "state")
            for key, raw in zip(batch, pipe.execute(), strict=True):
                for i in _state_names(json.loads(raw), people) if raw else ():
                    found[i].add(key[len(prefix) :])
    parked = keys.matches_parked(tenant)  # contact matches waiting for SFMC's credentials
    for i, fields in enumerate(_hash_matching(r, parked, people)):
        found[i].update(fields)
    every = set().union(*found)
    if every:
        r.hdel(parked, *every)
    for i, mine in enumerate(found):
        people.add(i, *mine)
    stored: dict[str, Any] = {}
    for chunk in _chunks(sorted(every)):  # a bounded IN list per statement
        stored.update(subscription_records.load(rt.history, tenant, chunk))
    removed = [0] * len(people)
    for i, mine in enumerate(_owned(found)):
        for sub_id in mine:
            removed[i] += int(r.delete(prefix + sub_id) or sub_id in stored)
    for chunk in _chunks(sorted(every)):
        subscription_records.forget(rt.history, tenant, chunk)
    subscription_rows.index_drop(r, tenant, sorted({n for i in range(len(people)) for n in people.names(i)}))
    return removed


def _state_names(state: dict[str, list[Any]], people: _People) -> set[int]:
    """The people a subscription's state names: by its contact key, or its email."""
    values = {name: value for name, (value, _rank) in state.items()}
    key, _ = subscription_rows.contact_key(values)
    return people.holding(key) | people.who(values.get("Email") or "")


def _forget_webhooks(rt: Runtime, tenant: str, people: _People, scan: bool) -> list[int]:
    """Stored envelopes naming a person become bare dedupe markers (a redelivery stays a
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
    removed = [0] * len(people)
    for batch in _chunks(receipts):
        for key, raw in zip(batch, r.mget(batch), strict=True):
            if raw is None or '"stripped"' in raw:
                continue
            i = people.first(json.loads(raw).get("eventDetails"))
            if i is not None:
                event_id = key[len(prefix) :]
                people.add(i, event_id)
                removed[i] += webhooks.strip_receipt(r, tenant, event_id, "erased")
                r.zrem(keys.webhooks_open(tenant), event_id)
    return removed


def _hash_matching(r: redis.Redis, key: str, people: _People) -> list[list[str]]:
    """Each person's fields of a hash whose value names them (one walk of the hash)."""
    owned: list[list[str]] = [[] for _ in range(len(people))]
    for field, raw in r.hscan_iter(key, count=SCAN_COUNT):
        i = people.first(raw)
        if i is not None:
            owned[i].append(field)
    return owned


def _forget_dead_letters(rt: Runtime, tenant: str, people: _People) -> list[tuple[int, int]]:
    r = rt.redis
    pending = _hash_matching(r, keys.dead_letters(tenant), people)
    removed = [deadletters.remove_dead_letters(r, tenant, mine) if mine else 0 for mine in pending]
    replayed = _hash_matching(r, keys.dead_letters_replayed(tenant), people)  # an older version's
    for mine in replayed:
        deadletters.remove_replayed(r, tenant, mine)
    stored = [0] * len(people)

    def names_someone(record: str) -> bool:
        i = people.first(record)
        if i is not None:
            stored[i] += 1
        return i is not None

    rt.history.forget_dead_letters(tenant, names_someone)
    retried = [m for m in r.sscan_iter(keys.dead_letters_auto_retried(tenant)) if people.who(m)]
    if retried:
        r.srem(keys.dead_letters_auto_retried(tenant), *retried)
    return [(removed[i], len(replayed[i]) + stored[i]) for i in range(len(people))]


def _forget_outboxes(rt: Runtime, tenant: str, people: _People) -> list[int]:
    """Entries not yet flushed (waiting, or read by a flush and not yet acknowledged)."""
    from pipeline.stores.outbox import GROUP

    r = rt.redis
    removed = [0] * len(people)
    for kind in OutboxKind:
        key = keys.outbox(tenant, kind)
        start = "-"
        while True:
            entries = r.xrange(key, min=start, count=500)
            doomed: dict[int, list[str]] = {}
            for entry_id, fields in entries:
                i = people.first(fields.get("p", ""))
                if i is not None:
                    doomed.setdefault(i, []).append(entry_id)
            if doomed:
                pipe = r.pipeline()
                for ids in doomed.values():
                    pipe.xack(key, GROUP, *ids)
                    pipe.xdel(key, *ids)
                for i, (_acked, deleted) in zip(doomed, _pairs(pipe.execute()), strict=True):
                    removed[i] += int(deleted)
            if len(entries) < 500:
                break
            start = "(" + entries[-1][0]
    return removed


def _pairs(results: list[Any]) -> Iterator[tuple[Any, Any]]:
    return zip(results[::2], results[1::2], strict=True)


def forget_contacts(
    rt: Runtime,
    tenant: str,
    people: Sequence[tuple[str, str | None]],
    *,
    scan: bool = True,
    remove_events: bool = True,
) -> list[dict[str, Any]]:
    """Erase a batch of people (contact key, email or None) from everything the tenant's keys
    hold, walking the keyspace (`scan`), each hash and each stream once for the whole batch, and
    (`remove_events`, the default) their events from their calendars at Rokt first;
    returns one record per person, in order (counts per kind), each also recorded (without the
    data) in the audit. A record naming several of them is counted for the first."""
    if not people:
        return []
    if not all(key.strip() for key, _email in people):
        raise ValueError("a contact key is required")
    batch = _People(people)
    counts: list[Counter[str]] = [Counter() for _ in people]

    def put(kind: str, found: list[int]) -> None:
        for mine, n in zip(counts, found, strict=True):
            mine[kind] = n

    # in this order: each step matches by the ids the steps before it found
    erased, events = _forget_executions(rt, tenant, batch, scan, remove_events)
    put("executions", erased)
    put("eventsRemovedAtRokt", events)
    put("subscriptions", _forget_subscriptions(rt, tenant, batch, scan))
    put("webhooks", _forget_webhooks(rt, tenant, batch, scan))
    letters = _forget_dead_letters(rt, tenant, batch)
    put("deadLetters", [pending for pending, _replayed in letters])
    put("replayedDeadLetters", [replayed for _pending, replayed in letters])
    put("outboxEntries", _forget_outboxes(rt, tenant, batch))
    put(
        "logs", [0] * len(batch)
    )  # no log is kept in Redis; process logs mask emails (pipeline.infra.logsafe)
    at = now_iso()
    records = [
        {
            "at": at,
            "tenant": tenant,
            "subject": subject_hash(rt.redis, tenant, batch.contact_keys[i]),
            "email": bool(batch.emails[i]),
            "counts": dict(counts[i]),
        }
        for i in range(len(batch))
    ]
    now = time.time()
    rt.redis.zadd(keys.erasures(tenant), {json.dumps(record, sort_keys=True): now for record in records})
    for record in records:
        log.info("erased subject %s of tenant %s: %s", record["subject"][:12], tenant, record["counts"])
    return records


def forget_contact(
    rt: Runtime,
    tenant: str,
    contact_key: str,
    email: str | None = None,
    *,
    scan: bool = True,
    remove_events: bool = True,
) -> dict[str, Any]:
    """Erase one person (the batch of one); returns what was removed (counts per kind) and
    records the erasure (without the data) in the audit."""
    return forget_contacts(rt, tenant, [(contact_key, email)], scan=scan, remove_events=remove_events)[0]


def erasures(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    """The tenant's erasure audit, oldest first."""
    return [json.loads(raw) for raw in r.zrange(keys.erasures(tenant), 0, -1)]
