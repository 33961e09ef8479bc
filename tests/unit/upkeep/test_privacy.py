"""Retention and erasure (`rokt-sfmc forget`) on fakeredis, with records seeded through the real
paths: a claim in the ledger, a Subscribe webhook claimed and processed, a dead letter, outbox rows."""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any

import pytest

from pipeline import cli
from pipeline.clients.errors import PermanentError
from pipeline.delivery.flush import flush_subscription_history
from pipeline.infra import keys
from pipeline.journeys import executions
from pipeline.journeys.executions import new_execution
from pipeline.settings import DEFAULT_TENANT
from pipeline.stores import subscription_records
from pipeline.stores.deadletters import (
    record_dead_letter,
)
from pipeline.subscriptions.subscription_rows import live_subscriptions
from pipeline.subscriptions.webhooks import claim_webhook, process_webhook
from pipeline.upkeep import privacy
from pipeline.vocabulary import ErrorClass, OutboxKind, Stage, State
from schemas.rokt_webhook import EVENT_ADDED, UNSUBSCRIBE
from tests.unit.samples import RECEIPT_TTL, SUBSCRIBE

T = DEFAULT_TENANT


class FakeSfmc:
    """Contacts SFMC knows; `refuse` makes a contact look-up fail for good."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse

    def contact_exists(self, key: str) -> bool:
        if key in self.refuse:
            raise PermanentError(f"contact key {key} refused")
        return True

    def create_contact(self, key: str, email: str) -> None:  # pragma: no cover - all exist
        raise AssertionError("not expected")


@pytest.fixture
def sfmc(runtime, monkeypatch):
    fake = FakeSfmc(set())
    monkeypatch.setattr(runtime, "sfmc", lambda name: fake)
    return fake


def subscribe(runtime, n: int, key: str, email: str, event_type: str = "Subscribe") -> str:
    """A Subscribe webhook for one person, claimed as the receiver does and processed as the task does."""
    envelope = copy.deepcopy(SUBSCRIBE)
    envelope["eventId"] = f"hook-{event_type}-{n}"
    envelope["eventType"] = event_type
    sub = envelope["eventDetails"]["subscription"]
    sub.update(calendarSubscriptionId=f"sub-{n}", subscriberId=key, emailAddress=email)
    assert claim_webhook(runtime.redis, T, envelope, ttl_seconds=RECEIPT_TTL)
    process_webhook(runtime, T, envelope["eventId"])
    return f"sub-{n}"


def execute(runtime, n: int, key: str, email: str) -> str:
    """An execute claimed in the ledger (as the web does after the JWT check)."""
    payload = {
        "activityId": "act-1",
        "definitionInstanceId": f"def-{n}",
        "journeyId": "journey-1",
        "keyValue": key,
        "args": {"templateId": "tpl-1", "Email": email, "FirstName": "Ava", "subscriptionId": f"sub-{n}"},
    }
    execution, record = new_execution(payload)
    assert runtime.ledger.claim(T, execution, record)
    return execution


def dump(r) -> str:
    """Every key and every value in Redis, as one text."""
    parts = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        parts.append(key)
        if kind == "string":
            parts.append(r.get(key) or "")
        elif kind == "hash":
            parts.append(json.dumps(r.hgetall(key)))
        elif kind == "list":
            parts.append(json.dumps(r.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(json.dumps(sorted(r.smembers(key))))
        elif kind == "zset":
            parts.append(json.dumps(r.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(json.dumps(r.xrange(key)))
    return "\n".join(parts)


def seed(runtime, sfmc) -> dict[str, Any]:
    """Two people through every path; A's contact is refused by SFMC (a dead letter) and A's
    execution fails (another dead letter); B's is accepted."""
    sfmc.refuse.add("EXT-AAAA")
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com")
    subscribe(runtime, 2, "EXT-BBBB", "bob@example.com")
    a = execute(runtime, 1, "EXT-AAAA", "alice@example.com")
    b = execute(runtime, 2, "EXT-BBBB", "bob@example.com")
    executions.fail(runtime, T, a, Stage.CREATE_EVENT, ErrorClass.PERMANENT, "subscription sub-1 not found")
    executions.finish(runtime, T, b, State.ACCEPTED)
    # a confirmation webhook naming A's Rokt event, stored but not processed yet
    event_a = runtime.ledger.get(T, a).event_id
    added = {
        "eventId": "hook-added-1",
        "eventType": EVENT_ADDED,
        "eventDetails": {"subscriptionEvent": {"eventId": event_a}},
    }
    assert claim_webhook(runtime.redis, T, added, ttl_seconds=RECEIPT_TTL)
    # a replayed dead letter of A's, kept for audit
    runtime.redis.hset(
        keys.dead_letters_replayed(T),
        "contact:old",
        json.dumps({"payload": {"Email": "alice@example.com"}, "replayedAt": "x"}),
    )
    return {"a": a, "b": b}


def test_forget_erases_every_trace_of_one_person_and_nothing_of_another(runtime, sfmc):
    ids = seed(runtime, sfmc)
    r = runtime.redis
    before = dump(r)
    assert "EXT-AAAA" in before and "alice@example.com" in before
    assert r.hlen(keys.dead_letters(T)) == 2  # A's contact match and A's execution

    record = privacy.forget_contact(runtime, T, "EXT-AAAA", "Alice@Example.com")

    after = dump(r)
    assert "EXT-AAAA" not in after
    assert "alice@example.com" not in after.lower()
    assert ids["a"] not in after  # no status row, release or dead letter names A's execution
    # B untouched
    assert runtime.ledger.get(T, ids["b"]).contact_key == "EXT-BBBB"
    assert r.hget(keys.subscription(T, "sub-2"), "state")
    assert "bob@example.com" in after and live_subscriptions(r, T, "EXT-BBBB") == ["sub-2"]
    # a redelivery of A's webhooks is still a duplicate (nothing comes back)
    assert not claim_webhook(
        r,
        T,
        {"eventId": "hook-added-1", "eventType": EVENT_ADDED, "eventDetails": {}},
        ttl_seconds=RECEIPT_TTL,
    )
    # the audit: when, tenant, a salted hash, counts; never the key or email
    audit = privacy.erasures(r, T)
    assert len(audit) == 1 and audit[0]["subject"] == privacy.subject_hash(r, T, "EXT-AAAA")
    assert audit[0]["counts"] == record["counts"]
    assert "EXT-AAAA" not in json.dumps(audit) and "alice" not in json.dumps(audit)


def test_forget_counts(runtime, sfmc):
    seed(runtime, sfmc)
    counts = privacy.forget_contact(runtime, T, "EXT-AAAA", "alice@example.com")["counts"]
    assert counts["executions"] == 1
    assert counts["subscriptions"] == 1
    assert counts["webhooks"] == 1  # the unprocessed confirmation; the processed Subscribe holds no data
    assert counts["deadLetters"] == 2
    assert counts["replayedDeadLetters"] == 1
    assert counts["outboxEntries"] >= 2
    assert counts["logs"] == 0
    # forgetting again finds nothing, and is audited again
    again = privacy.forget_contact(runtime, T, "EXT-AAAA", "alice@example.com")["counts"]
    assert sum(again.values()) == 0
    assert len(privacy.erasures(runtime.redis, T)) == 2


def test_forget_keeps_the_ledger_counters_consistent(runtime, sfmc):
    queued = execute(runtime, 7, "EXT-QQQQ", "q@example.com")
    assert runtime.ledger.open_count_for_template(T, "tpl-1") == 1
    failed = execute(runtime, 8, "EXT-QQQQ", "q@example.com")
    executions.fail(runtime, T, failed, Stage.RENDER, ErrorClass.PERMANENT, "bad")
    assert runtime.ledger.activity_stats(T, "act-1")["topFailures"] == [{"reason": "bad", "count": 1}]
    assert runtime.ledger.executions_of_contact(T, "EXT-QQQQ") == sorted([queued, failed])
    privacy.forget_contact(runtime, T, "EXT-QQQQ", scan=False)  # the contact index alone finds them
    assert runtime.ledger.get(T, queued) is None and runtime.ledger.get(T, failed) is None
    assert runtime.ledger.open_count(T) == 0
    assert runtime.ledger.open_count_for_template(T, "tpl-1") == 0
    assert runtime.ledger.activity_stats(T, "act-1")["topFailures"] == []
    assert runtime.ledger.executions_of_contact(T, "EXT-QQQQ") == []


def test_forget_scan_finds_executions_claimed_before_the_contact_index(runtime, sfmc):
    execution = execute(runtime, 9, "EXT-OLD", "old@example.com")
    runtime.redis.delete(runtime.ledger.contact_index(T, "EXT-OLD"))  # as claimed by an older version
    assert privacy.forget_contact(runtime, T, "EXT-OLD", scan=False)["counts"]["executions"] == 0
    assert privacy.forget_contact(runtime, T, "EXT-OLD")["counts"]["executions"] == 1
    assert runtime.ledger.get(T, execution) is None


def test_forget_deletes_waiting_intake_entries_by_id_and_reads_the_stream_only_for_older_records(
    runtime, sfmc, monkeypatch
):
    """During a broker outage the person's executions wait in the intake stream: each goes by the
    id its claim recorded, so erasure does not read the stream; a record an older version claimed
    (no id kept) is looked for in one pass."""
    r, stream = runtime.redis, keys.intake(T)
    mine = [execute(runtime, n, "EXT-AAAA", "alice@example.com") for n in (1, 2)]
    theirs = execute(runtime, 3, "EXT-BBBB", "bob@example.com")
    reads: list[str] = []
    xrange = r.xrange
    monkeypatch.setattr(r, "xrange", lambda name, *a, **kw: reads.append(name) or xrange(name, *a, **kw))
    assert privacy.forget_contact(runtime, T, "EXT-AAAA", scan=False)["counts"]["executions"] == 2
    assert stream not in reads
    assert [values["x"] for _id, values in xrange(stream)] == [theirs]
    assert not set(mine) & {values["x"] for _id, values in xrange(stream)}
    older = execute(runtime, 4, "EXT-CCCC", "carol@example.com")
    r.hdel(keys.execution(T, older), "intakeId")  # as an older version claimed it
    assert privacy.forget_contact(runtime, T, "EXT-CCCC", scan=False)["counts"]["executions"] == 1
    assert reads.count(stream) == 1  # one page: the whole stream once
    assert [values["x"] for _id, values in xrange(stream)] == [theirs]


def test_forget_without_scan_finds_unprocessed_webhooks_through_the_open_set(runtime, sfmc, monkeypatch):
    """The only receipts that keep an envelope are the unprocessed ones, all in the open set:
    `--index-only` reads those and never walks the keyspace."""
    ids = seed(runtime, sfmc)
    r = runtime.redis
    scans: list[str] = []
    scan_iter = r.scan_iter
    monkeypatch.setattr(r, "scan_iter", lambda *a, **kw: scans.append(kw.get("match")) or scan_iter(*a, **kw))
    counts = privacy.forget_contact(runtime, T, "EXT-AAAA", "alice@example.com", scan=False)["counts"]
    assert counts["webhooks"] == 1 and scans == []
    assert json.loads(r.get(keys.webhook_receipt(T, "hook-added-1")))["stripped"] == "erased"
    assert r.zscore(keys.webhooks_open(T), "hook-added-1") is None
    assert runtime.ledger.get(T, ids["b"]) is not None


def test_the_forget_command_prints_the_counts(runtime, sfmc, monkeypatch, capsys, settings):
    seed(runtime, sfmc)
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: runtime.redis)
    code = cli.main(["forget", "--tenant", T, "--contact", "EXT-AAAA", "--email", "alice@example.com"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["counts"]["executions"] == 1 and out["tenant"] == T
    assert "EXT-AAAA" not in json.dumps(out)


# -- retention --------------------------------------------------------------------------------


def _aged_letter(r, item_id: str, days_ago: float) -> None:
    record_dead_letter(
        r, T, item_id, stage=Stage.RENDER, error_class="permanent", reason="r", attempts=1, payload={}
    )
    r.zadd(keys.dead_letters_by_time(T), {item_id: time.time() - days_ago * 86400})


def test_dead_letters_older_than_the_retention_are_trimmed(runtime):
    r = runtime.redis
    _aged_letter(r, "old", 31)
    _aged_letter(r, "new", 1)
    r.sadd(keys.dead_letters_auto_retried(T), "old", "new")
    trimmed = privacy.apply_retention(runtime, T)
    assert trimmed["deadLetters"] == 1
    assert set(r.hkeys(keys.dead_letters(T))) == {"new"}
    assert r.smembers(keys.dead_letters_auto_retried(T)) == {"new"}
    assert r.zrange(keys.dead_letters_by_time(T), 0, -1) == ["new"]


def test_dead_letters_written_before_the_index_are_indexed_then_trimmed(runtime):
    r = runtime.redis
    old = {"id": "legacy", "failedAt": "2020-01-01T00:00:00.000+00:00", "stage": "render"}
    r.hset(keys.dead_letters(T), "legacy", json.dumps(old))
    _aged_letter(r, "new", 0)
    assert privacy.apply_retention(runtime, T)["deadLetters"] == 1
    assert set(r.hkeys(keys.dead_letters(T))) == {"new"}


def test_replayed_letters_and_the_erasure_audit_are_trimmed(runtime):
    r = runtime.redis
    r.hset(keys.dead_letters_replayed(T), "old", json.dumps({"replayedAt": "2020-01-01T00:00:00.000+00:00"}))
    r.hset(keys.dead_letters_replayed(T), "new", json.dumps({"replayedAt": "2999-01-01T00:00:00.000+00:00"}))
    r.zadd(keys.erasures(T), {"old": time.time() - 800 * 86400, "new": time.time()})
    trimmed = privacy.apply_retention(runtime, T)
    assert trimmed == {
        "executions": 0,
        "deadLetters": 0,
        "replayedDeadLetters": 1,
        "erasureAudit": 1,
        "endedSubscriptions": 0,
        "liveSubscriptions": 0,
        "webhookReceipts": 0,
    }
    assert r.hkeys(keys.dead_letters_replayed(T)) == ["new"]
    assert r.zrange(keys.erasures(T), 0, -1) == ["new"]


def test_the_reconciler_runs_the_retention(runtime):
    from pipeline.upkeep.reconcile import reconcile

    _aged_letter(runtime.redis, "old", 40)
    report = reconcile(runtime, T, lambda *a: None, lambda *a: None)
    assert report.retention_trimmed == 1
    assert runtime.redis.hlen(keys.dead_letters(T)) == 0


def test_a_history_store_away_leaves_its_retention_for_later_and_trims_redis(runtime, monkeypatch, caplog):
    from sqlalchemy.exc import OperationalError

    def away(self, day):
        raise OperationalError("DELETE", {}, Exception("connection refused"))

    monkeypatch.setattr(type(runtime.history), "drop_before", away)
    _aged_letter(runtime.redis, "old", 40)
    with caplog.at_level(logging.WARNING, logger="pipeline.upkeep.privacy"):
        assert privacy.apply_retention(runtime, T)["deadLetters"] == 1
    assert "history store of default is unavailable" in caplog.text


def test_retention_settings_are_read_with_defaults(runtime, monkeypatch):
    r = runtime.redis
    _aged_letter(r, "five-days", 5)
    monkeypatch.setattr(runtime, "settings", _With(runtime.settings, dead_letter_retention_days=3))
    assert privacy.apply_retention(runtime, T)["deadLetters"] == 1


class _With:
    """Settings with extra fields (the new retention settings, before Settings has them)."""

    def __init__(self, settings: Any, **extra: Any) -> None:
        self._settings, self._extra = settings, extra

    def __getattr__(self, name: str) -> Any:
        return self._extra[name] if name in self._extra else getattr(self._settings, name)


def to_store(runtime) -> None:
    """What the subscription-history flush does a moment later: the store gets the record."""
    flush_subscription_history(runtime, T, consumer="test", max_wait=0)


def test_an_ended_subscription_expires_and_a_live_one_is_kept(runtime, sfmc):
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com")
    subscribe(runtime, 2, "EXT-BBBB", "bob@example.com")
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com", event_type=UNSUBSCRIBE)
    to_store(runtime)
    assert not runtime.redis.exists(keys.subscription(T, "sub-1"), keys.subscription(T, "sub-2"))
    assert subscription_records.count(runtime.history, T) == {"live": 1, "ended": 1}
    assert privacy.apply_retention(runtime, T, now=time.time() + 29 * 86400)["endedSubscriptions"] == 0
    trimmed = privacy.apply_retention(runtime, T, now=time.time() + 31 * 86400)
    assert trimmed["endedSubscriptions"] == 1 and trimmed["liveSubscriptions"] == 0
    assert subscription_records.count(runtime.history, T) == {"live": 1}  # live: kept while live (default)


def test_a_live_subscription_expires_after_the_idle_retention_when_set(runtime, sfmc, monkeypatch):
    monkeypatch.setattr(runtime, "settings", _With(runtime.settings, subscription_retention_days=400))
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com")
    to_store(runtime)
    assert privacy.apply_retention(runtime, T, now=time.time() + 399 * 86400)["liveSubscriptions"] == 0
    assert privacy.apply_retention(runtime, T, now=time.time() + 401 * 86400)["liveSubscriptions"] == 1
    assert subscription_records.count(runtime.history, T) == {}
    assert live_subscriptions(runtime.redis, T, "EXT-AAAA") == []


def test_a_processed_webhook_keeps_only_its_dedupe_marker_and_the_store_its_receipt(runtime, sfmc):
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com")
    marker = keys.webhook_receipt(T, "hook-Subscribe-1")
    stored = json.loads(runtime.redis.get(marker))
    assert stored == {"eventId": "hook-Subscribe-1", "eventType": "Subscribe", "stripped": "processed"}
    assert 119 * 60 < runtime.redis.ttl(marker) <= 120 * 60  # WEBHOOK_DEDUPE_MINUTES
    assert process_webhook(runtime, T, "hook-Subscribe-1") == ()  # a redelivered task: nothing to do
    to_store(runtime)
    assert subscription_records.receipt_seen(runtime.history, T, "hook-Subscribe-1")
    # retention: WEBHOOK_RECEIPT_DAYS
    assert privacy.apply_retention(runtime, T, now=time.time() + 8 * 86400)["webhookReceipts"] == 1
    assert not subscription_records.receipt_seen(runtime.history, T, "hook-Subscribe-1")


def test_forget_finds_a_subscription_only_the_store_holds(runtime, sfmc):
    subscribe(runtime, 1, "EXT-AAAA", "alice@example.com")
    subscribe(runtime, 2, "EXT-BBBB", "bob@example.com")
    subscribe(runtime, 3, "", "carol@example.com")  # an email capture, ended
    subscribe(runtime, 3, "", "carol@example.com", event_type=UNSUBSCRIBE)
    to_store(runtime)
    assert privacy.forget_contact(runtime, T, "EXT-AAAA", scan=False)["counts"]["subscriptions"] == 1
    assert (
        privacy.forget_contact(runtime, T, "x", "Carol@Example.com", scan=False)["counts"]["subscriptions"]
        == 1
    )
    assert sorted(subscription_records.load(runtime.history, T, ["sub-1", "sub-2", "sub-3"])) == ["sub-2"]
    assert live_subscriptions(runtime.redis, T, "EXT-AAAA") == []
    assert live_subscriptions(runtime.redis, T, "EXT-BBBB") == ["sub-2"]


def test_the_retention_table_names_every_contact_record(runtime):
    kinds = {row.kind for row in privacy.RETENTION}
    assert {
        "Execution (ledger)",
        "Subscription (history store)",
        "Subscription working copy",
        "Dead letter",
        "Outbox entry",
        "Erasure audit",
    } <= kinds
    for row in privacy.RETENTION:
        assert (
            row.key.startswith(("rsf:<t>:", "history store: ")) and row.kept and row.setting and row.default
        )
    # "Outbox entry" covers the outbox of every kind: its key names each one's stream
    [outbox] = [row for row in privacy.RETENTION if row.kind == "Outbox entry"]
    pattern = outbox.key.split()[0].replace("<t>", "default").replace("<kind>", "{kind}")
    assert {runtime.outbox("default", kind).key for kind in OutboxKind} == {
        pattern.format(kind=kind) for kind in OutboxKind
    }


def test_forget_erases_a_contact_match_parked_for_refused_credentials(runtime):
    parked = keys.matches_parked(DEFAULT_TENANT)
    mine = {"CalendarSubscriptionId": "s-parked", "SubscriberExternalId": "ERASE-ME", "Email": "e@x.example"}
    other = {"CalendarSubscriptionId": "s-other", "SubscriberExternalId": "KEEP", "Email": "k@x.example"}
    runtime.redis.hset(parked, mapping={"s-parked": json.dumps(mine), "s-other": json.dumps(other)})
    privacy.forget_contact(runtime, DEFAULT_TENANT, "ERASE-ME", scan=False)
    assert runtime.redis.hkeys(parked) == ["s-other"]
