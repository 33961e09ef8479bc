"""The history store on a real PostgreSQL (Debian's, a cluster of our own on a free port): finished
executions leave Redis for it, a PostgreSQL killed mid-run loses nothing, and executions an older
version left whole in Redis move there after an upgrade in place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from pipeline.delivery.flush import flush_subscription_history
from pipeline.infra import keys
from pipeline.journeys.executions import new_execution
from pipeline.sandbox import jbsim
from pipeline.sandbox.postgres import Postgres, PostgresUnavailable
from pipeline.sandbox.stack import Stack
from pipeline.stores import subscription_records
from pipeline.stores.history import HistoryStore
from pipeline.stores.ledger import execution_id, now_iso
from pipeline.subscriptions.subscription_rows import apply_subscription, live_subscriptions
from pipeline.vocabulary import ARCHIVED_STATES, OutboxKind
from schemas.jb_execute import ExecuteSchema
from tests.integration.helpers import LIMITER_ENV, _own, expected_outcomes

pytestmark = pytest.mark.integration

TENANT = "history"
# accepted events are confirmed at the Rokt simulator soon, so they finish (and leave Redis) too
ENV = {"LOG_LEVEL": "INFO", "RECONCILE_CONFIRM_AFTER": "3", **LIMITER_ENV}


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on a stack of its own."""


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory) -> Iterator[tuple[Postgres, Stack]]:
    run_dir = tmp_path_factory.mktemp("history")
    try:
        postgres = Postgres(run_dir).start()
    except PostgresUnavailable as exc:
        pytest.skip(f"{exc} (make test installs it)")
    try:
        env = {**ENV, "HISTORY_URL": postgres.url}
        with Stack(run_dir, {TENANT: _own(TENANT)}, web="thread", env=env, worker_name="hw") as stack:
            stack.start_workers(1)
            stack.start_beat()
            yield postgres, stack
    finally:
        postgres.stop()


def _store(postgres: Postgres) -> HistoryStore:
    return HistoryStore(postgres.url)


def _archived(stack: Stack, store: HistoryStore, payloads: list[dict], timeout: float = 120) -> Counter:
    """Wait until every execution is in the store, finished, and its Redis record a tombstone."""
    want = expected_outcomes(payloads)
    want["confirmed"], want["accepted"] = want["accepted"], 0
    want = +want

    def done() -> bool:
        counts = Counter(store.counts(TENANT))
        return counts == want and stack.runtime.outbox(TENANT, OutboxKind.HISTORY).backlog() == 0

    stack.wait(done, timeout, f"{sum(want.values())} executions archived")
    return Counter(store.counts(TENANT))


def _redis_bytes_of_executions(stack: Stack) -> tuple[int, int, Counter]:
    """Bytes Redis holds for the tenant's executions (records, eventId and contact indexes)."""
    r = stack.redis
    total, count, kinds = 0, 0, Counter()
    patterns = (keys.execution(TENANT, "*"), keys.event(TENANT, "*"), keys.contact_executions(TENANT, "*"))
    for pattern in patterns:
        for key in r.scan_iter(pattern, count=1000):
            total += int(r.memory_usage(key, samples=0) or 0)
            kinds[pattern.rsplit(":", 2)[-2]] += 1
            count += pattern == keys.execution(TENANT, "*")
    return total, count, kinds


def test_finished_executions_leave_redis_for_postgresql(pg_stack):
    postgres, stack = pg_stack
    store = _store(postgres)
    payloads = stack.prepare(TENANT, jbsim.make_contacts(80, seed=31))
    result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=8)
    assert result.ok == len(payloads)
    stack.wait_terminal(TENANT, len(payloads))
    counts = _archived(stack, store, payloads)
    assert set(counts) <= {state.value for state in ARCHIVED_STATES} | {"failed"}
    total, records, kinds = _redis_bytes_of_executions(stack)
    finished = sum(n for state, n in counts.items() if state != "failed")
    # what is left of each finished execution in Redis: a tombstone, no index
    assert records == len(payloads) and kinds["event"] == counts.get("failed", 0), kinds
    assert total / len(payloads) < 400, (total, finished)
    first = execution_id(payloads[0]["activityId"], payloads[0]["definitionInstanceId"])
    tombstone = stack.redis.hgetall(keys.execution(TENANT, first))
    assert tombstone.get("archived") == "1" or tombstone.get("status") == "failed"
    # Journey Builder retrying every execute now: all duplicates, nothing sent again
    again = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=8)
    assert again.ok == len(payloads)
    assert stack.rokt_state()["duplicate_calendar_entries"] == 0
    assert Counter(store.counts(TENANT)) == counts


def test_postgresql_killed_mid_run_loses_nothing(pg_stack):
    postgres, stack = pg_stack
    store = _store(postgres)
    before = sum(store.counts(TENANT).values())
    payloads = stack.prepare(TENANT, jbsim.make_contacts(60, seed=32), journey_id="journey-pg-kill")
    postgres.kill()
    try:
        result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=8)
        assert result.ok == len(payloads)  # execute never waits for the store
        stack.wait_terminal(TENANT, before + len(payloads))
        # finished, sent to SFMC, and waiting for the store in Redis: nothing dropped
        assert stack.runtime.outbox(TENANT, OutboxKind.HISTORY).backlog() > 0
    finally:
        postgres.restart()
    stack.wait(
        lambda: (
            sum(store.counts(TENANT).values()) == before + len(payloads)
            and stack.runtime.outbox(TENANT, OutboxKind.HISTORY).backlog() == 0
        ),
        180,
        "every execution in the store after PostgreSQL came back",
    )
    assert stack.rokt_state()["duplicate_calendar_entries"] == 0


def _write_as_the_older_version(stack: Stack, payloads: list[dict], status: str) -> list[str]:
    """Executions finished before the upgrade: each record whole in Redis with its eventId and
    contact indexes, as the ledger kept them then, and nothing in the history outbox."""
    r, ttl, ids = stack.redis, 30 * 86400, []
    for payload in payloads:
        execution, record = new_execution(ExecuteSchema().load(payload))
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}
        fields.update(status=status, createdAt=now_iso(), updatedAt=now_iso(), tracked="1")
        r.hset(keys.execution(TENANT, execution), mapping=fields)
        r.expire(keys.execution(TENANT, execution), ttl)
        r.set(keys.event(TENANT, record["eventId"]), execution, ex=ttl)
        old_index = keys.unkeyed_contact_executions(TENANT, keys.unkeyed_contact_digest(record["contactKey"]))
        r.sadd(old_index, execution)
        ids.append(execution)
    return ids


def test_an_upgrade_in_place_moves_what_the_older_version_finished_into_the_store(pg_stack):
    postgres, stack = pg_stack
    store = _store(postgres)
    payloads = stack.prepare(TENANT, jbsim.make_contacts(30, seed=33), journey_id="journey-upgrade")
    ids = _write_as_the_older_version(stack, payloads[:20], "confirmed")
    ids += _write_as_the_older_version(stack, payloads[20:], "no_subscription")
    posts = stack.rokt_state()["event_posts"]
    # the documented command (beat's reconciliation takes the same steps by itself); --again:
    # the module's earlier tests let beat walk this tenant to its end already
    command = [sys.executable, "-m", "pipeline.cli", "upkeep", "move-to-store", "--tenant", TENANT, "--again"]
    done = subprocess.run(command, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    moved = json.loads(done.stdout)["executions"]
    assert moved["done"] and moved["moved"] >= len(ids), moved
    # their contact indexes, named by the plain sha256 of the contact key, went (under the keyed name)
    assert not stack.redis.keys(keys.unkeyed_contact_executions(TENANT, "*"))
    want = {e: "confirmed" for e in ids[:20]} | {e: "no_subscription" for e in ids[20:]}

    def moved_into_the_store() -> bool:
        stored = {e: record["status"] for e, record in store.records(TENANT, ids).items()}
        return stored == want and all(
            stack.redis.hget(keys.execution(TENANT, e), "archived") == "1" for e in ids
        )

    try:
        stack.wait(moved_into_the_store, 90, "the older version's executions in the store, tombstones left")
    except TimeoutError as exc:
        box = stack.runtime.outbox(TENANT, OutboxKind.HISTORY)
        first = stack.redis.hmget(keys.execution(TENANT, ids[0]), "status", "archived")
        stored = len(store.records(TENANT, ids))
        raise TimeoutError(f"{exc}: {stored} in the store, outbox {box.backlog()}, first {first}") from exc
    assert not any(stack.redis.exists(keys.event(TENANT, store.record(TENANT, e)["eventId"])) for e in ids)
    # Journey Builder retrying one after the move: a duplicate (the tombstone is the claim)
    again = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads[:1], concurrency=1)
    assert again.ok == 1
    stored_at = store.record(TENANT, ids[0])["updatedAt"]  # the tombstone keeps the version archived
    assert stack.redis.hgetall(keys.execution(TENANT, ids[0])) == {
        "status": "confirmed",
        "archived": "1",
        "updatedAt": stored_at,
    }
    assert stack.rokt_state()["event_posts"] == posts
    assert {e: record["status"] for e, record in store.records(TENANT, ids).items()} == want


def test_subscriptions_and_receipts_on_postgresql(pg_stack):
    """The subscription path on PostgreSQL and a real Redis (no workers: the flush is called as its
    task does): the version guard, the working copy dropped, retention, receipts, erasure."""
    postgres, stack = pg_stack
    rt, tenant = stack.runtime, "pg-subs"
    store = _store(postgres)

    def merge(webhook: str, event_type: str, **attrs: str) -> None:
        values = {"CalendarSubscriptionId": "s1", **attrs}
        apply_subscription(rt, tenant, webhook, event_type, values, "matched")

    def flush() -> None:
        flush_subscription_history(rt, tenant, consumer="test", max_wait=0)

    merge("w-unsub", "Unsubscribe")  # overtook its Subscribe
    flush()
    merge("w-sub", "Subscribe", SubscriberExternalId="EXT-PG", Email="Pg@Example.com")
    rt.outbox(tenant, OutboxKind.SUBSCRIPTION_HISTORY).append({"webhook": "w-sub", "eventType": "Subscribe"})
    flush()
    [row] = subscription_records.load(store, tenant, ["s1"]).values()
    assert row["version"] == 2 and not row["live"] and row["contact_match"] == "matched"
    assert not stack.redis.exists(keys.subscription(tenant, "s1"))
    assert live_subscriptions(stack.redis, tenant, "EXT-PG") == []
    older = {**row, "version": 1, "live": True, "state": json.dumps(row["state"])}
    subscription_records.upsert_subscriptions(store, [older])  # a batch retried late
    assert subscription_records.count(store, tenant) == {"ended": 1}
    assert subscription_records.receipt_seen(store, tenant, "w-sub")
    assert subscription_records.of_contact(store, tenant, ["pg@example.com"]) == ["s1"]
    assert subscription_records.expire(store, tenant, live=False, before="0000", limit=10) == []
    expired = subscription_records.expire(store, tenant, live=False, before="9999", limit=10)
    assert expired == [("s1", "EXT-PG")]
    assert subscription_records.drop_receipts_before(store, tenant, "9999") == 1
    assert subscription_records.count(store, tenant) == {}
