"""Upgrade in place: the contact indexes an older version named by the plain sha256 of the contact
key (`contact-execs:<digest>`, `csubs:<4 hex>`) move under the keyed names, through the movers
of pipeline/upkeep/store_moves.py; render and forget miss nothing before, during or after."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from pipeline.delivery.flush import flush_subscription_history
from pipeline.infra import keys
from pipeline.stores import subscription_records
from pipeline.stores.ledger import event_id_for
from pipeline.subscriptions import upgrade
from pipeline.subscriptions.subscription_rows import (
    apply_subscription,
    index_entry,
    live_subscriptions,
    unkeyed_index_entry,
)
from pipeline.upkeep import privacy, store_moves

T = "default"


def apply(runtime, webhook: str, event_type: str, subscription: str, **attrs: str) -> None:
    values = {"CalendarSubscriptionId": subscription, **attrs}
    apply_subscription(runtime, T, webhook, event_type, values, "")


def claim(runtime, execution: str, key: str) -> None:
    record = {"contactKey": key, "eventId": event_id_for(execution), "activityId": "a"}
    assert runtime.ledger.claim(T, execution, record)


def to_store(runtime) -> None:
    flush_subscription_history(runtime, T, consumer="test", max_wait=0)


def as_older_version(runtime, key: str) -> list[str]:
    """The contact's index entry as the version before named it: the same ids, under the unkeyed
    digest (nothing under the keyed name)."""
    r = runtime.redis
    bucket, field = index_entry(r, T, key)
    ids = r.hget(bucket, field)
    assert ids, key
    r.hdel(bucket, field)
    r.hset(*unkeyed_index_entry(T, key), ids)
    return ids.split()


def old_subscription_names(runtime) -> list[str]:
    return runtime.redis.keys(keys.unkeyed_contact_subscriptions_match(T))


def keyed_entries(runtime) -> dict[str, str]:
    """Every field -> ids of the index under the keyed names."""
    found: dict[str, str] = {}
    for bucket in runtime.redis.keys(keys.contact_subscriptions(T, "*")):
        found.update(runtime.redis.hgetall(bucket))
    return found


def seed_subscriptions(runtime, contacts: int) -> dict[str, list[str]]:
    """`contacts` contacts with two live subscriptions each, one in the store and one a working
    copy, all indexed as the older version named them; returns contact key -> ids."""
    held = {}
    for n in range(contacts):
        key = f"EXT-{n:03d}"
        apply(runtime, f"w{n}a", "Subscribe", f"s{n}a", SubscriberExternalId=key)
        held[key] = [f"s{n}a", f"s{n}b"]
    to_store(runtime)  # the first of each in the store, their working copies dropped
    for n in range(contacts):
        apply(runtime, f"w{n}b", "Subscribe", f"s{n}b", SubscriberExternalId=f"EXT-{n:03d}")
    for key in held:
        assert sorted(as_older_version(runtime, key)) == held[key]
    return held


def test_render_finds_the_old_names_and_the_mover_renames_them_in_bounded_resumable_steps(
    runtime, monkeypatch
):
    held = seed_subscriptions(runtime, 40)
    old_buckets = len(old_subscription_names(runtime))
    assert keyed_entries(runtime) == {} and old_buckets > 3
    for key, ids in held.items():  # before the mover: render sees every one
        assert live_subscriptions(runtime.redis, T, key) == ids
    monkeypatch.setattr(store_moves, "SCAN_COUNT", 3)
    steps = 0
    while not store_moves.rename_contact_subscriptions(runtime, T, budget_seconds=0).done:
        steps += 1  # a zero budget: one batch per call
        for key, ids in held.items():  # during: nothing hidden
            assert live_subscriptions(runtime.redis, T, key) == ids
    assert steps > 1
    assert old_subscription_names(runtime) == []
    for key, ids in held.items():  # after: under the keyed name alone
        assert runtime.redis.hget(*index_entry(runtime.redis, T, key)) == " ".join(ids)
        assert live_subscriptions(runtime.redis, T, key) == ids
    assert not [name for name in runtime.redis.keys("*") if "EXT-" in name]
    assert store_moves.rename_contact_subscriptions(runtime, T).done  # done: nothing read


def test_an_ended_subscription_leaves_the_old_name_at_once_and_is_not_renamed(runtime):
    """After the upgrade a webhook ends a subscription the old name still holds: render stops
    returning it (before the mover has run), and the mover does not put it back."""
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    apply(runtime, "w2", "Subscribe", "s2", SubscriberExternalId="EXT-1")
    to_store(runtime)
    as_older_version(runtime, "EXT-1")
    apply(runtime, "w3", "Unsubscribe", "s1")
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s2"]
    store_moves.run_to_end(runtime, T, ["contact-subscriptions"])
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s2"]
    assert old_subscription_names(runtime) == []


def test_a_change_between_the_movers_read_and_its_rename_wins(runtime, monkeypatch):
    """Between the mover's read (the store says s1 is live for EXT-1) and its rename, a webhook
    ends s1 and another moves s2 to another contact key: neither is renamed as it was read (s3,
    untouched, keeps the old entry there until its own rename)."""
    for sub in ("s1", "s2", "s3"):
        apply(runtime, f"w-{sub}", "Subscribe", sub, SubscriberExternalId="EXT-1")
    to_store(runtime)
    as_older_version(runtime, "EXT-1")
    real_load = subscription_records.load

    def meanwhile(store, tenant, ids):
        found = real_load(store, tenant, ids)
        monkeypatch.setattr(upgrade.subscription_records, "load", real_load)
        apply(runtime, "w-end", "Unsubscribe", "s1")
        apply(runtime, "w-move", "SubscriptionDetailsUpdated", "s2", SubscriberExternalId="EXT-2")
        return found

    monkeypatch.setattr(upgrade.subscription_records, "load", meanwhile)
    report = store_moves.rename_contact_subscriptions(runtime, T)
    assert report.done and report.moved == 1
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s3"]
    assert live_subscriptions(runtime.redis, T, "EXT-2") == ["s2"]
    assert old_subscription_names(runtime) == []


def test_an_id_nothing_holds_any_more_only_leaves_and_the_store_away_keeps_the_checkpoint(
    runtime, monkeypatch
):
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    to_store(runtime)
    as_older_version(runtime, "EXT-1")
    runtime.redis.hset(*unkeyed_index_entry(T, "EXT-9"), "s-gone")  # no working copy, no row

    def away(store, tenant, ids):
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(upgrade.subscription_records, "load", away)
    with pytest.raises(OperationalError):
        store_moves.rename_contact_subscriptions(runtime, T)
    assert runtime.redis.hget(keys.store_moves(T), "contact-subscriptions") is None
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s1"]  # nothing lost meanwhile
    monkeypatch.undo()
    assert store_moves.rename_contact_subscriptions(runtime, T).done
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s1"]
    assert live_subscriptions(runtime.redis, T, "EXT-9") == []
    assert old_subscription_names(runtime) == []


def old_execution_index(runtime, key: str, executions: list[str], ttl: int = 3600) -> str:
    """The contact index of executions as the version before named it."""
    name = keys.unkeyed_contact_executions(T, keys.unkeyed_contact_digest(key))
    runtime.redis.sadd(name, *executions)
    runtime.redis.expire(name, ttl)
    return name


def test_old_execution_indexes_move_under_the_keyed_name_keeping_the_longer_ttl(runtime, monkeypatch):
    ledger, r = runtime.ledger, runtime.redis
    for n in range(12):
        claim(runtime, f"e{n}", f"EXT-{n}")
        r.delete(ledger.contact_index(T, f"EXT-{n}"))
        old_execution_index(runtime, f"EXT-{n}", [f"e{n}"], ttl=7200)
    claim(runtime, "e-new", "EXT-0")  # after the upgrade: the keyed name (30 days)
    old_execution_index(runtime, "EXT-GONE", ["e-expired"])  # its executions all gone
    assert ledger.executions_of_contact(T, "EXT-0") == ["e-new", "e0"]  # both names read
    monkeypatch.setattr(store_moves, "SCAN_COUNT", 4)
    total = store_moves.MoveReport()
    while not total.done:
        total.add(store_moves.rename_contact_executions(runtime, T, budget_seconds=0))
    assert total.moved == 13
    assert r.keys(keys.unkeyed_contact_executions(T, "*")) == []
    assert ledger.executions_of_contact(T, "EXT-0") == ["e-new", "e0"]
    assert ledger.executions_of_contact(T, "EXT-5") == ["e5"]
    assert r.ttl(ledger.contact_index(T, "EXT-0")) > 7200  # the new claim's, not the old set's
    assert 0 < r.ttl(ledger.contact_index(T, "EXT-5")) <= 7200
    assert not [name for name in r.keys("*") if "EXT-" in name]


def test_forget_finds_and_deletes_what_the_old_names_hold(runtime):
    """An erasure before the movers ran: the contact's executions and subscriptions are found
    through the old names, and nothing under either name is left."""
    claim(runtime, "e1", "EXT-1")
    runtime.redis.delete(runtime.ledger.contact_index(T, "EXT-1"))
    old_execution_index(runtime, "EXT-1", ["e1"])
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    to_store(runtime)
    as_older_version(runtime, "EXT-1")
    erased = privacy.forget_contact(runtime, T, "EXT-1", scan=False)
    assert erased["counts"]["executions"] == 1 and erased["counts"]["subscriptions"] == 1
    assert runtime.redis.keys(keys.unkeyed_contact_executions(T, "*")) == []
    assert old_subscription_names(runtime) == [] and keyed_entries(runtime) == {}
    assert runtime.ledger.get(T, "e1") is None
    assert live_subscriptions(runtime.redis, T, "EXT-1") == []


def test_every_mover_runs_by_itself_in_beats_step(runtime):
    for name in ("contact-executions", "contact-subscriptions"):
        assert name in store_moves.MOVERS and name in store_moves.pending(runtime, T)
    apply(runtime, "w1", "Subscribe", "s1", SubscriberExternalId="EXT-1")
    to_store(runtime)
    as_older_version(runtime, "EXT-1")
    old_execution_index(runtime, "EXT-1", ["e-expired"])
    store_moves.step(runtime, T, budget_seconds=5)
    assert store_moves.pending(runtime, T) == []
    assert old_subscription_names(runtime) == []
    assert live_subscriptions(runtime.redis, T, "EXT-1") == ["s1"]
