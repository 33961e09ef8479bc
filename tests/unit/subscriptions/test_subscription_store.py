"""Subscriptions and webhook receipts in the history store (SQLite in memory here): the working copy
leaves Redis once the store holds its version, order and duplicates still end right, a re-send
after the dedupe window is recognised, and old Redis hashes move in place."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from pipeline.delivery.flush import flush_subscription_history
from pipeline.infra import keys
from pipeline.stores import subscription_records
from pipeline.stores.history import HistoryStore
from pipeline.subscriptions.subscription_rows import (
    apply_subscription,
    current_subscription_rows,
    index_entry,
    live_subscriptions,
    merge,
    row_from_state,
)
from pipeline.subscriptions.upgrade import move_subscriptions_to_store
from pipeline.subscriptions.webhooks import claim_webhook, process_webhook
from pipeline.vocabulary import OutboxKind
from tests.unit.samples import RECEIPT_TTL, SUBSCRIBE

T = "default"


def apply(runtime, webhook, event_type, subscription="s1", **attrs):
    values = {"CalendarSubscriptionId": subscription, **attrs}
    return apply_subscription(runtime, T, webhook, event_type, values, "")


def to_store(runtime):
    return flush_subscription_history(runtime, T, consumer="test", max_wait=0)


def stored(runtime, subscription="s1"):
    return subscription_records.load(runtime.history, T, [subscription]).get(subscription)


def test_an_upsert_is_idempotent_and_never_goes_back_to_an_older_version():
    store = HistoryStore("sqlite://")
    store.migrate()

    def row(version, live):
        state = json.dumps({"CalendarSubscriptionId": ["s1", 3 if not live else 1]})
        return {
            "tenant": T,
            "subscription_id": "s1",
            "version": version,
            "live": live,
            "contact_key": "EXT-1",
            "email": "a@x",
            "contact_match": "matched",
            "updated_at": "2026-12-07T10:00:00.000+00:00",
            "state": state,
        }

    subscription_records.upsert_subscriptions(store, [row(2, False)])
    subscription_records.upsert_subscriptions(store, [row(2, False)])
    subscription_records.upsert_subscriptions(store, [row(1, True)])  # a batch retried late
    assert subscription_records.count(store, T) == {"ended": 1}
    assert subscription_records.of_contact(store, T, ["A@X"]) == ["s1"]  # emails: any case
    assert subscription_records.of_contact(store, "other", ["EXT-1"]) == []


def test_the_flush_writes_the_record_and_redis_keeps_only_the_index_by_digest(runtime):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1", Email="a@x")
    assert to_store(runtime).items == 1
    record = stored(runtime)
    assert record["live"] and record["version"] == 1 and record["contact_key"] == "EXT-1"
    assert not runtime.redis.exists(keys.subscription(T, "s1"))  # the working copy went
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s1"]
    names = runtime.redis.keys("*")
    assert not [name for name in names if "EXT-1" in name or "a@x" in name]  # no contact key in a key name
    # SFMC's row is rebuilt from the store now
    row = row_from_state(merge({}, {"CalendarSubscriptionId": "s1"}, 1), "")
    [current] = current_subscription_rows(runtime, T, [row])
    assert current["values"]["SubscriberExternalId"] == "EXT-1" and current["values"]["Email"] == "a@x"


@pytest.mark.parametrize("flush_between", [False, True])
def test_reordered_and_duplicate_events_end_right_whether_or_not_the_store_took_them_between(
    runtime, flush_between
):
    def step(*args, **attrs):
        apply(runtime, *args, **attrs)
        if flush_between:
            to_store(runtime)

    step("w-unsub", "Unsubscribe", "s1")  # overtook its Subscribe
    step("w-sub", "Subscribe", "s1", SubscriberExternalId="EXT-1", optIn1=True)
    step("w-sub", "Subscribe", "s1", SubscriberExternalId="EXT-1", optIn1=True)  # redelivered
    step("w-upd", "SubscriptionDetailsUpdated", "s1", optIn1=False)
    step("w-sub-2", "Subscribe", "s1", SubscriberExternalId="EXT-1", optIn1=True)  # a late re-send
    to_store(runtime)
    record = stored(runtime)
    assert not record["live"] and record["version"] == 4  # the duplicate merged nothing
    assert record["state"]["optIn1"] == [False, 2]  # the update outranks the late Subscribe
    assert live_subscriptions(runtime.redis, T, "EXT-1") == []
    assert not runtime.redis.exists(keys.subscription(T, "s1"))


def test_a_copy_merged_again_while_the_store_wrote_stays_for_the_next_batch(runtime, monkeypatch):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    upsert = subscription_records.upsert_subscriptions

    def upsert_then_unsubscribe(store, rows):
        done = upsert(store, rows)
        monkeypatch.setattr(subscription_records, "upsert_subscriptions", upsert)
        apply(runtime, "w2", "Unsubscribe", "s1")  # lands between the write and the drop
        return done

    monkeypatch.setattr(subscription_records, "upsert_subscriptions", upsert_then_unsubscribe)
    report = to_store(runtime)
    # the first batch wrote version 1 and left version 2 in Redis; the next batch wrote that
    assert report.items == 2 and report.calls == 2
    assert stored(runtime)["version"] == 2 and not stored(runtime)["live"]
    assert not runtime.redis.exists(keys.subscription(T, "s1"))


def test_a_store_away_keeps_the_copy_and_the_entry(runtime, monkeypatch):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")

    def away(store, rows):
        raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("store away"))

    monkeypatch.setattr(subscription_records, "upsert_subscriptions", away)
    with pytest.raises(sa.exc.OperationalError):
        to_store(runtime)
    assert runtime.redis.hget(keys.subscription(T, "s1"), "v") == "1"
    assert runtime.outbox(T, OutboxKind.SUBSCRIPTION_HISTORY).backlog() == 1
    monkeypatch.undo()
    flush_subscription_history(runtime, T, consumer="test", max_wait=0)  # the retried task
    assert (
        stored(runtime)["version"] == 1 and runtime.outbox(T, OutboxKind.SUBSCRIPTION_HISTORY).backlog() == 0
    )


def test_a_row_the_store_refuses_is_dead_lettered_and_its_copy_kept(runtime, monkeypatch):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    apply(runtime, "w2", "Subscribe", "s2", SubscriberExternalId="EXT-2")
    upsert = subscription_records.upsert_subscriptions

    def refuse_s2(store, rows):
        if any(row["subscription_id"] == "s2" for row in rows):
            raise sa.exc.DataError("INSERT", {}, ValueError("value too long"))
        return upsert(store, rows)

    monkeypatch.setattr(subscription_records, "upsert_subscriptions", refuse_s2)
    report = to_store(runtime)
    assert report.rejected == 1 and stored(runtime, "s1") and stored(runtime, "s2") is None
    assert runtime.redis.hexists(keys.dead_letters(T), "subscription-history:s2")
    assert runtime.redis.exists(keys.subscription(T, "s2"))  # what a replay writes


def test_a_webhook_re_sent_after_the_dedupe_window_is_recognised_by_the_store(runtime):
    envelope = copy.deepcopy(SUBSCRIBE)
    envelope["eventType"] = "Unsubscribe"
    event_id = envelope["eventId"]
    assert claim_webhook(runtime.redis, T, envelope, ttl_seconds=RECEIPT_TTL)
    assert OutboxKind.SUBSCRIPTION_HISTORY in process_webhook(runtime, T, event_id)
    to_store(runtime)
    assert subscription_records.receipt_seen(runtime.history, T, event_id)
    runtime.redis.delete(keys.webhook_receipt(T, event_id))  # WEBHOOK_DEDUPE_MINUTES later
    runtime.redis.delete(keys.webhook_applied(T, event_id))
    rows_before = runtime.outbox(T, OutboxKind.SUBSCRIPTION_ROWS).backlog()
    assert claim_webhook(runtime.redis, T, envelope, ttl_seconds=RECEIPT_TTL)  # Rokt's dashboard
    assert process_webhook(runtime, T, event_id) == ()
    assert runtime.outbox(T, OutboxKind.SUBSCRIPTION_ROWS).backlog() == rows_before
    assert runtime.redis.hget(keys.webhook_counts(T), "duplicates") == "1"


# --- upgrade in place ---


def legacy(runtime, subscription, key, *, ended=False, match="matched", ttl=0):
    """A subscription as the previous version kept it: a whole hash, the index by plain key."""
    state = {"CalendarSubscriptionId": [subscription, 3 if ended else 1], "SubscriberExternalId": [key, 1]}
    name = keys.subscription(T, subscription)
    runtime.redis.hset(name, mapping={"state": json.dumps(state), "contactMatch": match})
    if ttl:
        runtime.redis.expire(name, ttl)
    if not ended:
        runtime.redis.sadd(keys.legacy_contact_subscriptions(T, key), subscription)


def test_old_hashes_move_into_the_store_in_bounded_resumable_steps(runtime):
    for n in range(25):
        legacy(runtime, f"old-{n}", f"EXT-{n}")
    legacy(runtime, "old-ended", "EXT-E", ended=True, ttl=10 * 86400)
    apply(runtime, "w1", "Subscribe", "new-1", SubscriberExternalId="EXT-N")  # a working copy
    assert live_subscriptions(runtime.redis, T, "EXT-3") == ["old-3"]  # read before the move too

    steps, moved, skipped, cursor = 0, 0, 0, 0
    while True:
        step = move_subscriptions_to_store(runtime, T, cursor, batch=5)
        steps, moved, skipped, cursor = steps + 1, moved + step.moved, skipped + step.skipped, step.cursor
        if cursor == 0:
            break
    assert steps > 1 and moved == 26 and skipped == 1  # the working copy is the flush's
    assert subscription_records.count(runtime.history, T) == {"live": 25, "ended": 1}
    assert live_subscriptions(runtime.redis, T, "EXT-3") == ["old-3"]
    assert not runtime.redis.keys(keys.legacy_contact_subscriptions(T, "*"))
    assert runtime.redis.keys(keys.subscription(T, "*")) == [keys.subscription(T, "new-1")]
    record = stored(runtime, "old-ended")
    assert not record["live"] and record["updated_at"] < stored(runtime, "old-1")["updated_at"]  # 20 days ago
    assert stored(runtime, "old-7")["contact_match"] == "matched" and stored(runtime, "old-7")["version"] == 0
    again = move_subscriptions_to_store(runtime, T, 0, batch=100)
    assert again.moved == 0 and again.cursor == 0  # nothing read twice


def test_the_upgrade_runs_the_subscriptions_mover_by_itself(runtime):
    """Beat's step and `upkeep move-to-store` run every mover in MOVERS: the old hashes and their
    plain-keyed index leave Redis without anyone calling the subscriptions mover by name."""
    from pipeline.upkeep import store_moves

    for n in range(7):
        legacy(runtime, f"old-{n}", f"EXT-{n}")
    assert "subscriptions" in store_moves.pending(runtime, T)
    reports = store_moves.run_to_end(runtime, T)
    assert reports["subscriptions"].moved == 7 and reports["subscriptions"].done
    assert subscription_records.count(runtime.history, T) == {"live": 7}
    assert not runtime.redis.keys(keys.legacy_contact_subscriptions(T, "*"))
    assert live_subscriptions(runtime.redis, T, "EXT-4") == ["old-4"]
    assert store_moves.pending(runtime, T) == []  # done: a later step costs one read


def test_an_old_hash_merged_and_dropped_while_the_mover_read_it_gets_no_index_entry(runtime, monkeypatch):
    """Between the mover's read and its retire, a webhook unsubscribed the contact and the flush
    wrote and dropped the hash: the retire must not put the ended subscription back in the index."""
    from pipeline.subscriptions import upgrade

    legacy(runtime, "old-1", "EXT-1")
    real_upsert = subscription_records.upsert_subscriptions

    def meanwhile(store, rows):
        real_upsert(store, rows)
        monkeypatch.setattr(upgrade.subscription_records, "upsert_subscriptions", real_upsert)
        apply(runtime, "w1", "Unsubscribe", "old-1")
        to_store(runtime)  # written at version 1 and dropped from Redis

    monkeypatch.setattr(upgrade.subscription_records, "upsert_subscriptions", meanwhile)
    assert move_subscriptions_to_store(runtime, T, 0).moved == 0
    assert live_subscriptions(runtime.redis, T, "EXT-1") == []
    assert not stored(runtime, "old-1")["live"]


def test_a_webhook_for_an_old_hash_moves_it_itself(runtime):
    legacy(runtime, "old-1", "EXT-1")
    apply(runtime, "w1", "Unsubscribe", "old-1")
    assert live_subscriptions(runtime.redis, T, "EXT-1") == []  # the old index lost it too
    assert move_subscriptions_to_store(runtime, T, 0).moved == 0  # a working copy now: not the mover's
    to_store(runtime)
    assert stored(runtime, "old-1")["version"] == 1 and not stored(runtime, "old-1")["live"]


def test_contacts_sharing_an_index_bucket_keep_their_own_entries(runtime):
    by_bucket: dict[str, str] = {}
    for n in range(5000):  # two contact keys whose digests start alike (a birthday: a few hundred)
        key = f"EXT-{n}"
        bucket = index_entry(runtime.redis, T, key)[0]
        if bucket in by_bucket:
            first, second = by_bucket[bucket], key
            break
        by_bucket[bucket] = key
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId=first)
    apply(runtime, "w2", "Subscribe", "s2", SubscriberExternalId=first)
    apply(runtime, "w3", "Subscribe", "s3", SubscriberExternalId=second)
    assert live_subscriptions(runtime.redis, T, first) == ["s1", "s2"]
    assert live_subscriptions(runtime.redis, T, second) == ["s3"]
    assert runtime.redis.hlen(bucket) == 2  # one field per contact
    apply(runtime, "w4", "Unsubscribe", "s1")
    apply(runtime, "w5", "Unsubscribe", "s3")
    assert (
        live_subscriptions(runtime.redis, T, first) == ["s2"]
        and live_subscriptions(runtime.redis, T, second) == []
    )
    assert runtime.redis.hlen(bucket) == 1  # an emptied entry goes


def test_a_store_away_does_not_hold_a_webhook_that_needs_no_record(runtime, monkeypatch):
    """The receipt check is skipped (Redis's marker covers Rokt's retries): a confirmation, say,
    is applied while the store is away; its receipt waits in the outbox."""

    def away(store, tenant, event_id):
        raise sa.exc.OperationalError("SELECT", {}, ConnectionRefusedError("store away"))

    monkeypatch.setattr(subscription_records, "receipt_seen", away)
    envelope = {"eventId": "hook-x", "eventType": "CalendarUpdated", "eventDetails": {}}
    assert claim_webhook(runtime.redis, T, envelope, ttl_seconds=RECEIPT_TTL)
    assert process_webhook(runtime, T, "hook-x") == (OutboxKind.SUBSCRIPTION_HISTORY,)
    assert runtime.outbox(T, OutboxKind.SUBSCRIPTION_HISTORY).backlog() == 1


def test_retention_deletes_nothing_when_the_index_could_not_lose_the_entries(runtime):
    """The render index's entries go before the rows: a Redis failure there leaves the rows, found
    again next pass, instead of rows gone and index entries that keep sending events."""
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    to_store(runtime)

    def redis_away(_found):
        raise ConnectionError("Redis away")

    def expire(on_found):
        store = runtime.history
        return subscription_records.expire(store, T, live=True, before="9999", limit=10, on_found=on_found)

    with pytest.raises(ConnectionError):
        expire(redis_away)
    assert stored(runtime)["live"]
    seen = []
    assert expire(seen.extend)
    assert seen == [("s1", "EXT-1")] and stored(runtime) is None


def test_a_receipt_holding_a_nul_is_stored_without_it():
    store = HistoryStore("sqlite://")
    store.migrate()
    row = {"tenant": T, "event_id": "w\x001", "event_type": "Subscribe", "recorded_at": "2026-12-07"}
    assert subscription_records.record_receipts(store, [row]) == 1
    assert subscription_records.receipt_seen(store, T, "w1")
