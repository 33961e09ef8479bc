"""Rokt Calendar subscriptions into SFMC's "Calendar Subscription" data extension.

Mapping (docs/vendors/rokt-calendar-api.md §11): 26 attributes per subscription, primary key
`CalendarSubscriptionId`, plus `ContactMatch` (matched/created). Multi-valued tags are joined
with ";" in `tagID` and `TagText`, in the same order, so a segment filter can use "contains".

Ordering: Rokt's envelope carries no timestamp and deliveries arrive in any order, so each
field remembers the rank of the event that set it (Subscribe 1 < SubscriptionDetailsUpdated 2
< Unsubscribe 3) and an event only sets fields it carries, never over a higher rank. Hence an
Unsubscribe that overtook its Subscribe stays unsubscribed, and a late Subscribe cannot undo
a preference update. Equal ranks (two detail updates): the later arrival wins.
The merged row is appended to the outbox in the same Redis transaction that stores the
merged state, so outbox order is state order and the last row SFMC receives is the newest.

The history store is the record of every subscription (docs/history.md): Redis holds a working
copy (`state`, `contactMatch`, a version `v`) only while an event is merged and until the
subscription-history flush has written that version, and restores it from the store for the
next event. The same transaction keeps the contact index (live subscription ids by the keyed
digest of the contact key, `live_subscriptions`), for executes that carry no `subscriptionId`: the contact
key is the SubscriberExternalId (else the captured email, as `contact_key` decides), and a
subscription is live until an Unsubscribe (or a removal date) is merged into its state, whatever
order they arrived in.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis

from pipeline.clients.errors import CredentialsRejected, PermanentError
from pipeline.infra import keys
from pipeline.infra.cellsafe import neutralise
from pipeline.infra.logsafe import mask
from pipeline.infra.salt import deployment_salt
from pipeline.stores import performance, subscription_records
from pipeline.stores.deadletters import record_exception
from pipeline.stores.ledger import now_iso
from pipeline.stores.performance import Figure
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind, Stage
from schemas.rokt_webhook import DETAILS_UPDATED, SUBSCRIBE, UNSUBSCRIBE

log = logging.getLogger(__name__)

RANKS = {SUBSCRIBE: 1, DETAILS_UPDATED: 2, UNSUBSCRIBE: 3}
DE_COLUMNS = (
    "accountCode",
    "accountId",
    "accountName",
    "calendarCode",
    "calendarId",
    "CalendarSubscriptionId",
    "calendarTitle",
    "countryCode",
    "deviceName",
    "Email",
    "EventId",
    "geoCountry",
    "optIn1",
    "optIn2",
    "Referrer",
    "RemovedDateTime",
    "source",
    "SubscriberExternalId",
    "subscriptionMethod",
    "TimeZoneTag",
    "tagID",
    "TagText",
    "UtmCampaign",
    "UtmContent",
    "UtmMedium",
    "UtmSource",
)
MATCHED = "matched"
CREATED = "created"

# Text values are neutralised against spreadsheet formulas (pipeline.infra.cellsafe) in every row
# we build, webhook or backfill. Never altered: the values that are identities, which must match
# byte for byte across SFMC, Rokt and our Redis keys (the primary key, the contact key
# SubscriberExternalId, Email, Rokt's ids; refused where they enter when they would start like a
# formula) and the values we write ourselves (dates, ContactMatch).
VERBATIM_COLUMNS = frozenset(
    {
        "CalendarSubscriptionId",
        "SubscriberExternalId",
        "Email",
        "EventId",
        "accountId",
        "calendarId",
        "RemovedDateTime",
        "ContactMatch",
        "UpdatedAt",
    }
)
# the identities among them, as they come from Rokt: checked where they enter
IDENTITY_COLUMNS = frozenset(VERBATIM_COLUMNS - {"RemovedDateTime", "ContactMatch", "UpdatedAt"})


def sfmc_date(value: str | None) -> str:
    """Rokt's `2020-05-06 01:18:49.755190` (UTC, space, microseconds) -> `2020-05-06T01:18:49Z`."""
    if not value:
        return ""
    text = value.strip().replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.isoformat(timespec="seconds") + "Z"


def attributes(event_id: str, details: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
    """The DE attributes one webhook (or backfill record) carries; absent ones are left out."""
    tags = sub.get("calendarTags") or []
    values: dict[str, Any] = {
        "accountCode": details.get("accountCode"),
        "accountId": details.get("accountId"),
        "accountName": details.get("accountName"),
        "calendarCode": sub.get("calendarCode"),
        "calendarId": sub.get("calendarId"),
        "CalendarSubscriptionId": sub["calendarSubscriptionId"],
        "calendarTitle": sub.get("calendarTitle"),
        "countryCode": sub.get("countryCode"),
        "deviceName": sub.get("deviceName"),
        "Email": sub.get("emailAddress"),
        "EventId": event_id,
        "geoCountry": sub.get("geoCountry"),
        "optIn1": sub.get("optIn1"),
        "optIn2": sub.get("optIn2"),
        "Referrer": sub.get("referrer"),
        "RemovedDateTime": sfmc_date(sub.get("removedDateTimeUtc")),
        "source": sub.get("source"),
        "SubscriberExternalId": sub.get("subscriberId"),
        "subscriptionMethod": str(sub.get("subscriptionMethod") or ""),
        "TimeZoneTag": sub.get("timeZoneId"),
        "tagID": ";".join(t["tagId"] for t in tags if t.get("tagId")),
        "TagText": ";".join(t["tagText"] for t in tags if t.get("tagText")),
        "UtmCampaign": sub.get("utmCampaign"),
        "UtmContent": sub.get("utmContent"),
        "UtmMedium": sub.get("utmMedium"),
        "UtmSource": sub.get("utmSource"),
    }
    return {k: v for k, v in values.items() if v is not None and v != ""}


def merge(state: dict[str, list[Any]], incoming: dict[str, Any], rank: int) -> dict[str, list[Any]]:
    """Per field: keep [value, rank]; a value replaces another only at the same or higher rank."""
    merged = dict(state)
    for name, value in incoming.items():
        current = merged.get(name)
        if current is None or rank >= current[1]:
            merged[name] = [value, rank]
    return merged


def row_from_state(state: dict[str, list[Any]], contact_match: str) -> dict[str, Any]:
    """The DE row of a merged state; text values neutralised against formula injection (the
    stored state keeps them as received)."""
    values = {
        name: value if name in VERBATIM_COLUMNS else neutralise(value)
        for name, (value, _rank) in state.items()
        if name != "CalendarSubscriptionId"
    }
    values["ContactMatch"] = contact_match
    values["UpdatedAt"] = datetime.now(UTC).isoformat(timespec="seconds")
    return {"keys": {"CalendarSubscriptionId": state["CalendarSubscriptionId"][0]}, "values": values}


def current_subscription_rows(rt: Runtime, tenant: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the merged subscription state has them now: Redis's working copy while one is
    held, else the history store's record (one query for the batch)."""
    ids = [row["keys"]["CalendarSubscriptionId"] for row in rows]
    pipe = rt.redis.pipeline(transaction=False)
    for subscription_id in ids:
        pipe.hmget(keys.subscription(tenant, subscription_id), "state", "contactMatch")
    held = dict(zip(ids, pipe.execute(), strict=True))
    stored = subscription_records.load(rt.history, tenant, [i for i in ids if not held[i][0]])
    current = []
    for row, subscription_id in zip(rows, ids, strict=True):
        raw, stored_match = held[subscription_id]
        if raw:
            state = json.loads(raw)
        elif subscription_id in stored:
            state, stored_match = stored[subscription_id]["state"], stored[subscription_id]["contact_match"]
        else:
            current.append(row)
            continue
        match = stored_match if stored_match in (MATCHED, CREATED) else row["values"].get("ContactMatch", "")
        current.append(row_from_state(state, match))
    return current


def contact_key(attrs: dict[str, Any]) -> tuple[str, bool]:
    """(key, is_email_capture): the external id, else the captured email (the guide's rule)."""
    external = str(attrs.get("SubscriberExternalId") or "").strip()
    if external:
        return external, False
    return str(attrs.get("Email") or "").strip(), True


def indexed_as(state: dict[str, list[Any]]) -> tuple[str, bool]:
    """(contact key, live) of a merged subscription state. Every event carries the
    CalendarSubscriptionId, so its rank is the highest rank merged: an Unsubscribe, even
    one that overtook its Subscribe, leaves it at the Unsubscribe's rank for good."""
    values = {name: value for name, (value, _rank) in state.items()}
    key, _email_capture = contact_key(values)
    rank = state.get("CalendarSubscriptionId", [None, 0])[1]
    live = rank < RANKS[UNSUBSCRIBE] and not values.get("RemovedDateTime")
    return key, live


# One contact's entry in its index bucket gains (ARGV[3] == '1') or loses a subscription id; an
# entry left empty goes. KEYS: the bucket; ARGV: the contact's field, the id, 1 to add or 0.
_INDEX_CHANGE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
local kept = {}
if held then
  for id in string.gmatch(held, '%S+') do
    if id ~= ARGV[2] then kept[#kept + 1] = id end
  end
end
if ARGV[3] == '1' then kept[#kept + 1] = ARGV[2] end
if #kept == 0 then return redis.call('HDEL', KEYS[1], ARGV[1]) end
table.sort(kept)
return redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, ' '))
"""


def index_entry(r: redis.Redis | redis.client.Pipeline, tenant: str, key: str) -> tuple[str, str]:
    """(bucket, field) of one contact's entry in the index, named by the keyed digest of its key."""
    digest = keys.personal_digest(deployment_salt(r), tenant, key)
    return keys.contact_subscriptions(tenant, digest), keys.contact_subscriptions_field(digest)


def unkeyed_index_entry(tenant: str, key: str) -> tuple[str, str]:
    """(bucket, field) of the contact's entry as an older version named it (the plain sha256)."""
    digest = keys.unkeyed_contact_digest(key)
    return keys.unkeyed_contact_subscriptions(tenant, digest), keys.contact_subscriptions_field(digest)


def index_change_in(
    pipe: redis.client.Pipeline, tenant: str, key: str, subscription_id: str, live: bool
) -> None:
    """Queue one contact's index entry gaining (live) or losing a subscription id (inside the
    caller's transaction, or on its own with a plain client). The entry as an older version
    named it only loses the id (until the `contact-subscriptions` mover has emptied it, render reads
    it too, so an id that ends must leave it as well)."""
    script = pipe.register_script(_INDEX_CHANGE)
    bucket, field = index_entry(pipe, tenant, key)
    script(keys=[bucket], args=[field, subscription_id, int(live)], client=pipe)
    old_bucket, old_field = unkeyed_index_entry(tenant, key)
    script(keys=[old_bucket], args=[old_field, subscription_id, 0], client=pipe)


def index_drop(r: redis.Redis, tenant: str, names: list[str]) -> None:
    """These contacts' index entries go whole (an erasure), under every name they had."""
    pipe = r.pipeline(transaction=False)
    for key in names:
        for bucket, field in (index_entry(r, tenant, key), unkeyed_index_entry(tenant, key)):
            pipe.hdel(bucket, field)
        pipe.delete(keys.legacy_contact_subscriptions(tenant, key))
    pipe.execute()


def _index_in(
    pipe: redis.client.Pipeline, tenant: str, before: dict[str, list[Any]], after: dict[str, list[Any]]
) -> None:
    """Queue the index changes from one state to the next (inside the caller's transaction).
    The index as it was once named (by the plain contact key) only loses members."""
    subscription_id = after["CalendarSubscriptionId"][0]
    old_key, _ = indexed_as(before) if before else ("", False)
    new_key, live = indexed_as(after)
    for key in sorted({old_key, new_key} - {""}):
        pipe.srem(keys.legacy_contact_subscriptions(tenant, key), subscription_id)
    if old_key and old_key != new_key:
        index_change_in(pipe, tenant, old_key, subscription_id, live=False)
    if new_key:
        index_change_in(pipe, tenant, new_key, subscription_id, live)


def live_subscriptions(r: redis.Redis, tenant: str, key: str) -> list[str]:
    """The contact's live calendar subscription ids, as the webhooks and the backfill left them,
    and the index under the names older versions gave it (the unkeyed digest, until the
    `contact-subscriptions` mover has emptied it; the plain key, until `move_subscriptions_to_store`
    has run), in the same round trip and one MULTI (a mover's rename between two reads would hide
    the id from both): an upgrade never hides a subscription from render."""
    if not key:
        return []
    pipe = r.pipeline(transaction=True)
    pipe.hget(*index_entry(r, tenant, key))
    pipe.hget(*unkeyed_index_entry(tenant, key))
    pipe.smembers(keys.legacy_contact_subscriptions(tenant, key))
    current, unkeyed, legacy = pipe.execute()
    return sorted(set((current or "").split()) | set((unkeyed or "").split()) | set(legacy))


def working_copy(
    rt: Runtime, tenant: str, subscription_id: str, held: dict[str, str]
) -> tuple[dict[str, list[Any]], str, int]:
    """(state, contact match, version) of a subscription: Redis's working copy (`held`, its hash)
    when one is held, else the history store's record, else nothing yet."""
    match = held.get("contactMatch", "")
    match = match if match in (MATCHED, CREATED) else ""
    if held.get("state"):
        return json.loads(held["state"]), match, int(held.get("v") or 0)
    stored = subscription_records.load(rt.history, tenant, [subscription_id]).get(subscription_id)
    if stored is None:
        return {}, match, 0
    return stored["state"], match or stored["contact_match"], int(stored["version"])


def _save_in(
    pipe: redis.client.Pipeline,
    rt: Runtime,
    tenant: str,
    before: dict[str, list[Any]],
    state: dict[str, list[Any]],
    version: int,
    match: str,
) -> None:
    """Queue the working copy's next version, its index changes and its store outbox entry
    (inside the caller's transaction): the flush writes it to the store, then drops the copy."""
    subscription_id = state["CalendarSubscriptionId"][0]
    sub_key = keys.subscription(tenant, subscription_id)
    fields = {"state": json.dumps(state, sort_keys=True), "v": version + 1, "at": now_iso()}
    if match in (MATCHED, CREATED):
        fields["contactMatch"] = match
    pipe.hset(sub_key, mapping=fields)
    pipe.persist(sub_key)
    _index_in(pipe, tenant, before, state)
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).append_in(pipe, {"subscriptionId": subscription_id})


def store_row(tenant: str, subscription_id: str, held: dict[str, str]) -> dict[str, Any]:
    """The history store's row of one working copy (its Redis hash, as read)."""
    state = json.loads(held["state"])
    key, live = indexed_as(state)
    match = held.get("contactMatch", "")
    return {
        "tenant": tenant,
        "subscription_id": subscription_id,
        "version": int(held.get("v") or 0),
        "live": live,
        "contact_key": key,
        "email": str(state.get("Email", [""])[0] or "").strip().lower(),
        "contact_match": match if match in (MATCHED, CREATED) else "",
        "updated_at": held.get("at") or now_iso(),
        "state": held["state"],
    }


def match_contact(
    rt: Runtime, tenant: str, subscription_id: str, attrs: dict[str, Any], again: bool = False
) -> str:
    """Find the SFMC contact by key or create it; the outcome is decided once per subscription
    (`again`: decided anew, a dead letter's replay).

    A `creating` marker is stored before the create call, so a redelivered task that finds
    the contact knows it was created by us, not matched.

    The outcome is stored and counted (`contacts_matched`/`contacts_created`) in one
    transaction, and counted only when it is the subscription's first decision (nothing, or
    `creating`, stored before, in Redis or in the store): two tasks of the same new
    subscription, or a replay of one decided since, count it once. Without `again`, the first
    decision stored stands and is the answer.
    """
    key, email_capture = contact_key(attrs)
    if not key:
        return ""
    sub_key = keys.subscription(tenant, subscription_id)
    held = rt.redis.hget(sub_key, "contactMatch")
    decided = "" if again else held
    if decided in (MATCHED, CREATED):
        return decided
    earlier = held in (MATCHED, CREATED)  # decided before (counted then), whatever `again` says
    if not held:  # no working copy: the store's record says
        stored = subscription_records.load(rt.history, tenant, [subscription_id]).get(subscription_id)
        earlier = stored is not None and stored["contact_match"] in (MATCHED, CREATED)
        if earlier and not again:
            return stored["contact_match"]
    client = rt.sfmc(tenant)
    exists = client.contact_exists(key)
    if exists and decided != "creating" and not email_capture:
        outcome = MATCHED
    else:
        if not exists:
            rt.redis.hset(sub_key, "contactMatch", "creating")
            client.create_contact(key, str(attrs.get("Email") or ""))
        outcome = CREATED
    outcome = _decide(rt, tenant, sub_key, outcome, again, earlier)
    log.info("subscription %s: contact %s %s", subscription_id, mask(key), outcome)
    return outcome


def _decide(rt: Runtime, tenant: str, sub_key: str, outcome: str, again: bool, earlier: bool) -> str:
    """Store the contact match and count it, in one transaction (see match_contact); returns the
    outcome stored."""
    day = rt.reporting_days.today(tenant)

    def decide(pipe: redis.client.Pipeline) -> str:
        current = pipe.hget(sub_key, "contactMatch")
        pipe.multi()
        if current in (MATCHED, CREATED) and not again:
            return current  # another task decided first (and counted it): its outcome stands
        decided = CREATED if current == "creating" and not again else outcome  # created by us
        pipe.hset(sub_key, "contactMatch", decided)
        if current not in (MATCHED, CREATED) and not earlier:
            figure = Figure.CONTACTS_MATCHED if decided == MATCHED else Figure.CONTACTS_CREATED
            performance.count(pipe, tenant, day, figure, rt.settings.performance_days)
        return decided

    return str(rt.redis.transaction(decide, sub_key, value_from_callable=True))


def apply_subscription(
    rt: Runtime, tenant: str, webhook_id: str, event_type: str, attrs: dict[str, Any], contact_match: str
) -> bool:
    """Merge one event into the subscription's state and buffer the resulting DE row.

    Returns False when this webhook was applied before (a redelivered task).
    """
    subscription_id = attrs["CalendarSubscriptionId"]
    sub_key = keys.subscription(tenant, subscription_id)
    applied_key = keys.webhook_applied(tenant, webhook_id)
    box = rt.outbox(tenant, OutboxKind.SUBSCRIPTION_ROWS)
    box.ensure_group()
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).ensure_group()
    rank = RANKS[event_type]
    day = rt.reporting_days.today(tenant)

    def apply(pipe: redis.client.Pipeline) -> bool:
        if pipe.exists(applied_key):
            return False
        before, stored_match, version = working_copy(rt, tenant, subscription_id, pipe.hgetall(sub_key))
        state = merge(before, attrs, rank)
        match = contact_match or stored_match
        pipe.multi()
        _save_in(pipe, rt, tenant, before, state, version, match)
        pipe.set(applied_key, "1", ex=int(rt.settings.webhook_dedupe_minutes) * 60)
        box.append_in(pipe, row_from_state(state, match))
        figure = {SUBSCRIBE: Figure.SUBSCRIBED, UNSUBSCRIBE: Figure.UNSUBSCRIBED}.get(event_type)
        if figure is not None:
            performance.count(pipe, tenant, day, figure, rt.settings.performance_days)
        return True

    return bool(rt.redis.transaction(apply, sub_key, applied_key, value_from_callable=True))


def matched_or_failed(rt: Runtime, tenant: str, attrs: dict[str, Any], again: bool = False) -> str:
    """match_contact, except that a contact SFMC refuses for good is dead-lettered (with the
    subscription's attributes, for replay) and the row still goes in, marked `failed`. A refused
    token (CredentialsRejected) is no contact's fault: it is raised, and the caller waits."""
    try:
        return match_contact(rt, tenant, attrs["CalendarSubscriptionId"], attrs, again)
    except CredentialsRejected:
        raise
    except PermanentError as exc:
        item = f"contact:{attrs['CalendarSubscriptionId']}"
        record_exception(rt.redis, tenant, item, Stage.MATCH_CONTACT, exc, attrs)
        return "failed"


def process_subscription_event(
    rt: Runtime, tenant: str, webhook_id: str, event_type: str, attrs: dict[str, Any]
) -> bool:
    """Match (Subscribe/DetailsUpdated carrying an identity), then merge and buffer the row. While
    SFMC refuses the tenant's credentials the subscription is merged all the same (render finds it:
    its contacts' events are not held back) and only its contact match is parked."""
    match = ""
    if event_type != UNSUBSCRIBE:
        try:
            match = matched_or_failed(rt, tenant, attrs)
        except CredentialsRejected:
            rt.redis.hset(keys.matches_parked(tenant), attrs["CalendarSubscriptionId"], json.dumps(attrs))
    return apply_subscription(rt, tenant, webhook_id, event_type, attrs, match)


# Drop a parked match once done, unless a newer webhook parked the subscription again meanwhile.
# KEYS: matches_parked. ARGV: the subscription id, the attributes (JSON) that were matched.
_UNPARK = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


def retry_parked_matches(rt: Runtime, tenant: str, batch: int = 200) -> int:
    """Match the contacts of subscriptions parked while SFMC refused the credentials, and rewrite
    their rows with the outcome (as a contact match's replay does); stops at the first refusal
    (the tokens' hold makes that free: no request while it lives). Returns how many were done."""
    parked = keys.matches_parked(tenant)
    done = 0
    for subscription_id, raw in list(rt.redis.hscan_iter(parked, count=batch))[:batch]:
        attrs = json.loads(raw)
        try:
            match = matched_or_failed(rt, tenant, attrs, again=True)
        except CredentialsRejected:
            break
        rt.outbox(tenant, OutboxKind.SUBSCRIPTION_ROWS).append(merge_backfill(rt, tenant, attrs, match))
        rt.redis.eval(_UNPARK, 1, parked, subscription_id, raw)
        done += 1
    return done


BACKFILL_RANK = 0  # state that existed before go-live: any webhook overrides it


def merge_backfill(rt: Runtime, tenant: str, attrs: dict[str, Any], contact_match: str) -> dict[str, Any]:
    """Merge an existing subscription into the stored state (below every webhook) and return
    the row to write; re-running it gives the same row."""
    subscription_id = attrs["CalendarSubscriptionId"]
    sub_key = keys.subscription(tenant, subscription_id)
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).ensure_group()

    def apply(pipe: redis.client.Pipeline) -> dict[str, Any]:
        before, stored_match, version = working_copy(rt, tenant, subscription_id, pipe.hgetall(sub_key))
        state = merge(before, attrs, BACKFILL_RANK)
        pipe.multi()
        _save_in(pipe, rt, tenant, before, state, version, contact_match or stored_match)
        return row_from_state(state, contact_match)

    return rt.redis.transaction(apply, sub_key, value_from_callable=True)
