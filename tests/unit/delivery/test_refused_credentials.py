"""SFMC refusing a tenant's credentials parks its writes: the rows stay in their outboxes, nothing is
dead-lettered, a token is asked for at most once per hold, and everything goes out once an admin
saves new credentials (or signs in again)."""

import json

import pytest
import responses
from celery.exceptions import Retry

from pipeline.clients import tokens
from pipeline.clients.errors import CredentialsRejected
from pipeline.delivery.flush import flush_releases, flush_status_rows, flush_subscription_rows
from pipeline.infra import keys
from pipeline.stores.deadletters import count_dead_letters
from pipeline.subscriptions.subscription_rows import (
    live_subscriptions,
    process_subscription_event,
    retry_parked_matches,
)
from pipeline.vocabulary import OutboxKind
from tasks import flushing
from tests.unit.conftest import COMPLETE

TOKEN = "https://auth.sfmc.test/v2/token"
REST = "https://rest.sfmc.test"
STATUS_ROWSET = f"{REST}/hub/v1/dataevents/key:RoktCalendarEventStatus/rowset"
SUBSCRIPTION_ROWSET = f"{REST}/hub/v1/dataevents/key:RoktCalendarSubscription/rowset"
EVENTS = f"{REST}/interaction/v1/async/events"
GOOD_SECRET = "sfmc-secret-b"


def row(i):
    return {"keys": {"ContactKey": f"C{i}", "ExecutionId": f"e{i}"}, "values": {"Status": "accepted"}}


def release(i):
    return {"eventDefinitionKey": "APIEvent-1", "contactKey": f"C{i}", "data": {"executionId": f"e{i}"}}


def token_endpoint():
    """SFMC's token endpoint: a token for the good secret, 401 for any other. Returns the calls."""

    def answer(request):
        if json.loads(request.body)["client_secret"] == GOOD_SECRET:
            return 200, {}, json.dumps({"access_token": "t", "expires_in": 1079, "rest_instance_url": REST})
        return 401, {}, json.dumps({"error": "invalid_client", "error_description": "bad secret"})

    return responses.add_callback(responses.POST, TOKEN, callback=answer)


@pytest.fixture
def brand(rt):
    """A stored, active tenant (App Settings' kind): its credentials change at run time."""
    return rt.registry.add("brand-b", COMPLETE).name


def mistype_the_secret(rt, name):
    rt.registry.update(name, {"sfmc_client_secret": "a-mistyped-secret"})


def token_requests():
    return [c for c in responses.calls if c.request.url == TOKEN]


def rows_waiting_behind_a_mistyped_secret(rt, brand, count):
    """SFMC's token endpoint and rowset mocked, `count` status rows in the outbox, then the
    secret mistyped: (the rowset mock, the outbox)."""
    token_endpoint()
    rowset = responses.post(STATUS_ROWSET, json=[])
    box = rt.outbox(brand, OutboxKind.STATUS_ROWS)
    for i in range(count):
        box.append(row(i))
    mistype_the_secret(rt, brand)
    return rowset, box


@responses.activate
def test_a_refused_secret_parks_every_row_and_dead_letters_none(rt, brand):
    rowset, box = rows_waiting_behind_a_mistyped_secret(rt, brand, 120)

    first = flush_status_rows(rt, brand, consumer="c1", max_wait=0)
    assert first.parked and first.holding  # the refusal came with its first batch in hand
    assert first.rejected == 0 and rowset.call_count == 0
    assert len(token_requests()) == 1  # not one per row, nor two per bisected half
    for consumer in ("c2", "c3", "c1", "c4"):  # beat's flushes and the holder's retry meanwhile
        again = flush_status_rows(rt, brand, consumer=consumer, max_wait=0)
        assert again.parked and again.items == 0
        assert again.holding == (consumer == "c1")
    assert len(token_requests()) == 1  # held: no token is asked for within the hold
    assert box.backlog() == 120 and count_dead_letters(rt.redis, brand) == 0
    assert 59_000 < rt.redis.pttl(keys.credentials_hold(brand, "sfmc")) <= 60_000
    assert "SFMC refused the client credentials" in tokens.rejection(rt.redis, brand, "sfmc")["reason"]


@responses.activate
def test_once_the_hold_ends_one_token_request_looks_again_before_any_batch_is_taken(rt, brand):
    token_endpoint()
    box = rt.outbox(brand, OutboxKind.STATUS_ROWS)
    for i in range(10):
        box.append(row(i))
    mistype_the_secret(rt, brand)
    flush_status_rows(rt, brand, consumer="c1", max_wait=0)
    rt.redis.delete(keys.credentials_hold(brand, "sfmc"))  # the minute is over
    report = flush_status_rows(rt, brand, consumer="c2", max_wait=0)
    assert report.parked and not report.holding  # refused again by the probe, before taking a batch
    assert len(token_requests()) == 2
    assert rt.redis.pttl(keys.credentials_hold(brand, "sfmc")) > 59_000  # held again


@responses.activate
def test_a_save_of_the_right_secret_flushes_everything_the_refusal_parked(rt, brand):
    rowset, box = rows_waiting_behind_a_mistyped_secret(rt, brand, 120)
    flush_status_rows(rt, brand, consumer="c1", max_wait=0)  # holds its batch of 50
    flush_status_rows(rt, brand, consumer="c2", max_wait=0)

    rt.registry.update(brand, {"sfmc_client_secret": GOOD_SECRET})  # the admin's Save
    assert tokens.rejection(rt.redis, brand, "sfmc") is None
    holder = flush_status_rows(rt, brand, consumer="c1", max_wait=0)  # the holder's retry
    assert not holder.parked and holder.items == 120
    sent = [r["keys"]["ContactKey"] for call in rowset.calls for r in json.loads(call.request.body)]
    assert sorted(sent) == sorted(f"C{i}" for i in range(120))
    assert box.backlog() == 0 and count_dead_letters(rt.redis, brand) == 0
    assert len(token_requests()) == 2  # the refused one, then the granted one


@responses.activate
def test_subscription_rows_and_releases_park_alike(rt, brand):
    token_endpoint()
    events = responses.post(EVENTS, json={})
    subscriptions = responses.post(SUBSCRIPTION_ROWSET, json=[])
    releases = rt.outbox(brand, OutboxKind.RELEASES)
    rows = rt.outbox(brand, OutboxKind.SUBSCRIPTION_ROWS)
    for i in range(30):
        releases.append(release(i))
        rows.append(
            {"keys": {"CalendarSubscriptionId": f"s{i}"}, "values": {"SubscriberExternalId": f"C{i}"}}
        )
    mistype_the_secret(rt, brand)
    assert flush_releases(rt, brand, consumer="r1", max_wait=0).parked
    assert flush_subscription_rows(rt, brand, consumer="s1", max_wait=0).parked
    assert events.call_count == 0 and subscriptions.call_count == 0
    assert releases.backlog() == 30 and rows.backlog() == 30
    assert count_dead_letters(rt.redis, brand) == 0
    assert len(token_requests()) == 1


@responses.activate
def test_a_subscription_goes_in_while_refused_and_only_its_contact_match_waits(rt, brand):
    """Render must find a subscription that arrives while SFMC refuses the credentials (its
    contacts' events are not held back); its contact match is parked, not dead-lettered, and done
    by the reconciler's pass once a token is granted."""
    token_endpoint()
    found = responses.get(f"{REST}/contacts/v1/contacts/C1", json={})
    mistype_the_secret(rt, brand)
    attrs = {"CalendarSubscriptionId": "s1", "SubscriberExternalId": "C1"}
    assert process_subscription_event(rt, brand, "w1", "Subscribe", attrs)
    assert live_subscriptions(rt.redis, brand, "C1") == ["s1"]
    assert count_dead_letters(rt.redis, brand) == 0 and found.call_count == 0
    assert json.loads(rt.redis.hget(keys.matches_parked(brand), "s1")) == attrs
    assert retry_parked_matches(rt, brand) == 0  # still refused (held: no token request)
    assert len(token_requests()) == 1

    rt.registry.update(brand, {"sfmc_client_secret": GOOD_SECRET})  # the admin's fix
    assert retry_parked_matches(rt, brand) == 1
    assert found.call_count == 1 and not rt.redis.exists(keys.matches_parked(brand))
    rows = [json.loads(f["p"]) for _, f in rt.redis.xrange(keys.outbox(brand, OutboxKind.SUBSCRIPTION_ROWS))]
    assert [r["values"]["ContactMatch"] for r in rows] == ["", "matched"]  # the row, then its match


@responses.activate
def test_a_hold_binds_only_the_credentials_refused(rt, brand):
    """A process still on the old secret (its registry copy not yet refreshed) that meets the
    refusal after the fix must not hold back a process that reads the fixed secret."""
    token_endpoint()
    stale = rt.sfmc(brand)  # built with the good secret
    rt.registry.update(brand, {"sfmc_client_secret": "a-mistyped-secret"})
    with pytest.raises(CredentialsRejected):
        rt.sfmc(brand).token.get()
    rt.registry.update(brand, {"sfmc_client_secret": GOOD_SECRET})  # fixed
    stale.refusals.credentials = "the old secret's digest"  # as a process reading a stale copy
    stale.refusals.refused("refused meanwhile with a stale secret")
    assert rt.sfmc(brand).token.get()["access_token"] == "t"  # not held: other credentials
    assert tokens.rejection(rt.redis, brand, "sfmc") is None  # granted: the mark goes


@responses.activate
def test_test_connection_asks_sfmc_even_within_the_hold(rt, brand):
    token_endpoint()
    mistype_the_secret(rt, brand)
    with pytest.raises(CredentialsRejected):
        rt.sfmc(brand).token.get()
    with pytest.raises(CredentialsRejected):
        rt.sfmc(brand).check_credentials()
    assert len(token_requests()) == 2


@responses.activate
def test_the_flush_task_retries_only_a_flush_that_holds_a_batch(rt, brand, monkeypatch):
    token_endpoint()
    box = rt.outbox(brand, OutboxKind.STATUS_ROWS)
    for i in range(60):
        box.append(row(i))
    mistype_the_secret(rt, brand)
    monkeypatch.setattr(flushing, "get_runtime", lambda: rt)
    monkeypatch.setattr("tasks.base.get_runtime", lambda: rt)
    retried = []

    def retry(**options):
        retried.append(options)
        return Retry()

    task = flushing.flush_status_rows_task
    monkeypatch.setattr(task, "retry", retry)
    task.push_request(id="first", retries=0, kwargs={})
    try:
        with pytest.raises(Retry):
            task.run(brand)
    finally:
        task.pop_request()
    assert retried[0]["countdown"] == flushing.HOLDING_RETRY_SECONDS
    task.push_request(id="second", retries=0, kwargs={})
    try:
        assert task.run(brand)["parked"] == 1  # ended: beat's next flush_all looks again
    finally:
        task.pop_request()
    assert len(retried) == 1 and box.backlog() == 60


@responses.activate
def test_the_reconciler_clears_a_refusal_of_an_idle_tenant_once_the_credentials_work(rt, brand):
    """No flush asks again for a tenant with nothing to write: the reconciler asks once the hold
    is over, so the mark (and the reconnect alert) does not outlive the cause."""
    from pipeline.upkeep.reconcile import reconcile

    token_endpoint()
    refusals = rt.sfmc(brand).refusals
    refusals.refused("SFMC refused the client credentials (401)")  # a refusal met earlier
    reconcile(rt, brand, lambda *a: None, lambda *a: None)
    assert tokens.rejection(rt.redis, brand, "sfmc") is not None and token_requests() == []  # held
    rt.redis.delete(keys.credentials_hold(brand, "sfmc"))  # the minute is over
    reconcile(rt, brand, lambda *a: None, lambda *a: None)
    assert len(token_requests()) == 1 and tokens.rejection(rt.redis, brand, "sfmc") is None
