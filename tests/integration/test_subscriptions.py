"""Rokt webhooks through the real receiver, workers and both simulators."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest
import requests

from pipeline.infra.redis_clients import redis_client
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.stores import subscription_records
from pipeline.subscriptions.subscription_rows import index_entry
from pipeline.web.webhook_auth import signature_header
from tests.integration.helpers import expected_outcomes, subscription_de

pytestmark = pytest.mark.integration


def test_500_subscriptions_with_duplicates_and_reordered_unsubscribes(stack: Stack):
    stack.webhooks_to("subs", duplicate_rate=0.2, reorder_ms=400)
    rng = random.Random(42)
    existing = [f"EXT{i:04d}" for i in range(0, 400, 2)]  # half the external ids are SFMC contacts
    stack.seed_sfmc_contacts(existing)

    people = []
    for i in range(500):
        if i < 400:
            person = {"subscriberId": f"EXT{i:04d}", "emailAddress": f"p{i}@example.com"}
        else:  # email capture: no external id, the email becomes the contact key
            person = {"emailAddress": f"capture{i}@example.com"}
        person.update(
            utmSource="newsletter",
            marketingAllowed=rng.random() < 0.5,
            calendarTags=[{"internalId": f"tag-{i % 3}", "tagText": f"Team {i % 3}"}],
        )
        people.append(person)
    rokt = stack.rokt_url
    ids = [
        requests.post(f"{rokt}/__sandbox__/subscribe", json={"accountCode": "subs", **p}, timeout=10).json()[
            "subscriptionId"
        ]
        for p in people
    ]
    unsubscribed = set(rng.sample(ids, 100))
    for sub_id in unsubscribed:  # right away: many Unsubscribes overtake their Subscribe
        requests.post(f"{rokt}/__sandbox__/unsubscribe", json={"id": sub_id}, timeout=10)

    def settled() -> bool:
        state = stack.rokt_state()
        return state["webhooks_pending"] == 0 and len(stack.rows("subs", subscription_de("subs"))) == 500

    stack.wait(settled, 120, "500 subscription rows")
    r = redis_client(stack.redis_url)
    stack.wait(lambda: r.xlen("rsf:subs:outbox:subscription") == 0, 30, "the outbox to drain")
    rows = {row["CalendarSubscriptionId"]: row for row in stack.rows("subs", subscription_de("subs"))}

    assert set(rows) == set(ids)
    for sub_id, person in zip(ids, people, strict=True):
        row = rows[sub_id]
        assert bool(row.get("RemovedDateTime")) is (sub_id in unsubscribed), sub_id
        assert row.get("SubscriberExternalId", "") == person.get("subscriberId", "")
        assert row["Email"] == person["emailAddress"]
        assert row["accountCode"] == "subs" and row["UtmSource"] == "newsletter"
        assert row["optIn1"] is person["marketingAllowed"]
        assert row["TagText"] == person["calendarTags"][0]["tagText"]
        key = person.get("subscriberId") or person["emailAddress"]
        expected = "matched" if key in existing else "created"
        assert row["ContactMatch"] == expected, (sub_id, key)

    # the history store is the record; Redis keeps only the live ones' index, named by digest
    def in_store() -> bool:
        return r.xlen("rsf:subs:outbox:subscription-history") == 0 and not r.keys("rsf:subs:sub:*")

    stack.wait(in_store, 30, "the store to hold every subscription")
    assert subscription_records.count(stack.runtime.history, "subs") == {"live": 400, "ended": 100}
    stored = subscription_records.load(stack.runtime.history, "subs", ids)
    assert {sub_id for sub_id, row in stored.items() if not row["live"]} == unsubscribed
    assert r.keys("rsf:subs:contact-subs:*") == []
    assert sum(len(ids.split()) for name in r.keys("rsf:subs:ksubs:*") for ids in r.hvals(name)) == 400
    assert r.keys("rsf:subs:csubs:*") == []  # the unkeyed digest's names: never written
    named = " ".join(r.keys("rsf:subs:*"))
    assert not any((p.get("subscriberId") or p["emailAddress"]) in named for p in people)
    # each live one's entry is where the keyed digest of its contact key names it
    live_keys = {stored[sub_id]["contact_key"] for sub_id in ids if sub_id not in unsubscribed}
    assert all(r.hget(*index_entry(r, "subs", key)) for key in live_keys)

    sfmc = stack.sfmc_state()
    assert sfmc["contacts_created"] == 500 - len(existing)
    assert sfmc["max_rows_per_rowset"] <= 50
    counts = {k: int(v) for k, v in r.hgetall("rsf:subs:webhook-counts").items()}
    sender = stack.rokt_state()
    assert counts["received"] == sender["webhooks_created"] == 600
    assert counts.get("duplicates", 0) >= sender["duplicate_deliveries"] > 0


def test_1000_concurrent_deliveries_of_one_event_write_one_row(stack: Stack):
    envelope = {
        "eventId": "b1c9a8e2-3f0d-4c55-9a2e-5b0d7f6c1e42",
        "eventType": "Subscribe",
        "eventDetails": {
            "accountCode": "hooks",
            "subscription": {
                "calendarSubscriptionId": "06423672-b6ba-4536-aa36-70788a7a0a36",
                "subscriberId": "0031X00000abcDE",
                "emailAddress": "fan@example.com",
            },
        },
    }
    body = json.dumps(envelope).encode()
    url = f"{stack.web_url}/t/hooks/webhooks/rokt"
    statuses: Counter = Counter()
    lock = threading.Lock()

    def deliver(count: int) -> None:
        session = requests.Session()
        for _ in range(count):
            headers = {
                "Content-Type": "application/json",
                "X-Rokt-Signature": signature_header(stack.webhook_secret, body),
            }
            status = session.post(url, data=body, headers=headers, timeout=30).status_code
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=deliver, args=(20,)) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == {200: 1000}

    stack.wait(lambda: len(stack.rows("hooks", subscription_de("hooks"))) == 1, 30, "the row")
    time.sleep(2.5)  # give any (wrong) second write time to arrive
    sfmc = stack.sfmc_state()
    assert sfmc["rows_written"] == 1
    counts = redis_client(stack.redis_url).hgetall("rsf:hooks:webhook-counts")
    assert counts == {"received": "1", "duplicates": "999"}


def test_executions_end_confirmed_when_rokt_reports_the_event_added(stack: Stack):
    stack.webhooks_to("confirm", mode="path")
    payloads = stack.prepare("confirm", jbsim.make_contacts(40, seed=9))
    jbsim.drive(stack.execute_url("confirm"), stack.jwt_secret, payloads)
    accepted = expected_outcomes(payloads)["accepted"]
    assert accepted > 0

    def confirmed() -> bool:
        rows = stack.rows("confirm")
        return sum(1 for row in rows if row["Status"] == "confirmed") == accepted

    stack.wait(confirmed, 60, "confirmed status rows")
    statuses = Counter(row["Status"] for row in stack.rows("confirm"))
    assert statuses["accepted"] == 0 and statuses["confirmed"] == accepted
