"""Every task's retry branch, over the error classes a vendor or Redis can produce.

Each task runs as a worker would run it (a request context, not `called_directly`), so a
retry goes through Celery's own `retry()` and its re-sent message is checked by the
`sent_tasks` fixture (name, signature, JSON, queue). Vendors are mocked at the HTTP layer.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import redis
import requests
import responses
from celery import Task
from celery.exceptions import Retry

from pipeline.delivery.retry_policy import MAX_FAILED_ATTEMPTS
from pipeline.infra import queues
from pipeline.journeys import executions
from pipeline.journeys.templates import create_template
from pipeline.stores.ledger import event_id_for
from pipeline.stores.ratelimit import RateLimited
from pipeline.subscriptions import webhooks
from pipeline.tenancy import handles as runtime_module
from pipeline.vocabulary import ErrorClass, OutboxKind, Stage, State
from tasks.execution import TICKET_JITTER_SECONDS, create_rokt_event_task, render_event_task
from tasks.flushing import flush_status_rows_task
from tasks.webhooks import process_webhook_task
from tests.unit.samples import RECEIPT_TTL, SUBSCRIBE

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
SFMC_TOKEN = "https://auth.sfmc.test/v2/token"
SFMC_REST = "https://rest.sfmc.test"
ROWSET = f"{SFMC_REST}/hub/v1/dataevents/key:RoktCalendarEventStatus/rowset"
TEMPLATE = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/London"}

# (name, how the vendor answers, error class raised, retried?, counts as an attempt?)
# A 429 without Retry-After waits the client's default (Rokt's create: 1 s; SFMC: 5 s).
VENDOR_ANSWERS: list[tuple[str, dict[str, Any], bool]] = [
    ("429 with Retry-After", {"status": 429, "headers": {"Retry-After": "3"}}, True),
    ("429 without Retry-After", {"status": 429}, True),
    ("500", {"status": 500}, True),
    ("timeout", {"body": requests.ReadTimeout("read timed out")}, True),
    ("401 after a refresh", {"status": 401}, True),
    ("400", {"status": 400, "json": {"Code": "ValidationFailed", "Reason": "bad"}}, False),
]


@pytest.fixture
def worker(runtime, monkeypatch):
    """The process-wide runtime the tasks look up, on fakeredis."""
    monkeypatch.setattr(runtime_module, "_runtime", (os.getpid(), runtime))
    return runtime


def run(
    task: Task, *args: Any, retries: int = 0, queue: str = "", kwargs: dict[str, Any] | None = None
) -> Any:
    """Run `task` as a worker does, for the `retries`-th time, as delivered from `queue`."""
    task.push_request(
        id=f"{task.name}-test",
        args=list(args),
        kwargs=dict(kwargs or {}),
        retries=retries,
        called_directly=False,
        delivery_info={"exchange": "", "routing_key": queue or queues.ALL_QUEUES[0]},
    )
    try:
        return task.run(*args, **(kwargs or {}))
    finally:
        task.pop_request()


def retried(sent_tasks, task: Task):
    """The message Celery sent to retry `task` (the last one of that name)."""
    mine = [s for s in sent_tasks if s.name == task.name]
    assert mine, f"{task.name} was not sent again"
    return mine[-1]


def dead_letters(runtime) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in runtime.redis.hgetall("rsf:default:dlq").items()}


def answer(method: str, url: str, **how: Any) -> None:
    responses.add(method, url, **how)


# -- create_rokt_event ------------------------------------------------------------------


@pytest.fixture
def rendered(worker):
    """A queued execution whose event is rendered and waits for its Rokt call."""
    template = create_template(worker.redis, "default", TEMPLATE)["id"]
    record = {
        "contactKey": "C1",
        "eventId": event_id_for("e1"),
        "activityId": "a",
        "args": {"templateId": template, "subscriptionId": "s1", "FirstName": "Ava"},
    }
    worker.ledger.claim("default", "e1", record)
    assert executions.render_step(worker, "default", "e1") is True
    return "e1"


@responses.activate
@pytest.mark.parametrize(("name", "how", "retry"), VENDOR_ANSWERS, ids=[a[0] for a in VENDOR_ANSWERS])
def test_create_rokt_event_retries_only_what_can_succeed_later(
    worker, rendered, sent_tasks, name, how, retry
):
    answer("POST", ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    answer("POST", ROKT_CREATE, **how)
    queue = queues.rokt_queue("default")
    if retry:
        with pytest.raises(Retry):
            run(create_rokt_event_task, "default", rendered, queue=queue)
        again = retried(sent_tasks, create_rokt_event_task)
        assert again.queue == queue and again.args == ["default", rendered]
        countdown = again.options["countdown"]
        ex = worker.ledger.get("default", rendered)
        assert ex.status == State.QUEUED
        if name.startswith("429"):
            wait = 3 if "with" in name.split()[1:2] else 1
            assert wait <= countdown <= wait + 1
            assert ex.fields.get("attempts", "0") == "0"  # throttling is a delay, not a failure
            assert worker.redis.pttl("rsf:default:cooldown:rokt") > 0  # the whole account waits
        else:
            assert 1 <= countdown <= 2  # backoff after the first failed attempt
            assert ex.fields["attempts"] == "1"
    else:
        run(create_rokt_event_task, "default", rendered, queue=queue)
        assert worker.ledger.get("default", rendered).status == State.FAILED
        letter = dead_letters(worker)[rendered]
        assert (letter["stage"], letter["errorClass"]) == (Stage.CREATE_EVENT, ErrorClass.PERMANENT)
        assert not [s for s in sent_tasks if s.name == create_rokt_event_task.name]
        # the failed row goes out, and the execution to the history store
        assert [s.name for s in sent_tasks] == [queues.FLUSH_STATUS_TASK, queues.FLUSH_HISTORY_TASK]


@responses.activate
def test_create_rokt_event_gives_up_after_the_last_counted_attempt(worker, rendered, sent_tasks):
    answer("POST", ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    answer("POST", ROKT_CREATE, status=503)
    worker.redis.hset(f"rsf:default:exec:{rendered}", "attempts", MAX_FAILED_ATTEMPTS - 1)
    run(create_rokt_event_task, "default", rendered, retries=MAX_FAILED_ATTEMPTS - 1)
    assert worker.ledger.get("default", rendered).status == State.FAILED
    letter = dead_letters(worker)[rendered]
    assert letter["errorClass"] == ErrorClass.RETRYABLE and letter["attempts"] == MAX_FAILED_ATTEMPTS


@responses.activate
def test_a_long_429_storm_is_not_cut_short_by_celerys_retry_count(worker, rendered, sent_tasks):
    """Throttled retries are bounded by the execution's time budget, not by the task's
    max_retries (20): Celery reads retry(max_retries=None) as that default."""
    answer("POST", ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    answer("POST", ROKT_CREATE, status=429, headers={"Retry-After": "1"})
    with pytest.raises(Retry):
        run(create_rokt_event_task, "default", rendered, retries=create_rokt_event_task.max_retries + 5)
    assert worker.ledger.get("default", rendered).status == State.QUEUED
    retries = create_rokt_event_task.max_retries + 6
    assert retried(sent_tasks, create_rokt_event_task).options["retries"] == retries


@responses.activate
def test_a_call_the_limiter_cannot_admit_soon_is_sent_back_to_its_ticket_not_slept(
    worker, rendered, sent_tasks, monkeypatch
):
    """The Rokt stage runs on threads: a slot further away than ROKT_LIMIT_SLEEP_MS is a ticket
    in the account's line; the task comes back at it, carrying it, and then takes the slot."""
    answer("POST", ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    answer("POST", ROKT_CREATE, status=202)
    limiter = worker.limiter("default", "rokt")
    before = time.time()
    limiter.admit(0)
    for _ in range(4):  # four calls already wait in line
        with pytest.raises(RateLimited):
            limiter.admit(0)
    queue = queues.rokt_queue("default")
    slept: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", slept.append)
    with pytest.raises(Retry):
        run(create_rokt_event_task, "default", rendered, queue=queue)
    assert slept == []  # not slept in its pool slot
    monkeypatch.setattr(time, "sleep", real_sleep)
    after = time.time()
    again = retried(sent_tasks, create_rokt_event_task)
    ticket, countdown = again.kwargs["ticket"], again.options["countdown"]
    assert again.queue == queues.ROKT_WAIT_QUEUE and ticket > 0  # not behind rokt.<t>'s backlog
    # behind the four: the ticket is a place in time, so a slow host shortens the countdown, not the
    # place; the task comes back its sleep budget before the ticket, to sleep into the slot
    budget = worker.settings.rokt_limit_sleep_ms / 1000
    assert ticket - before > 4 * limiter.emission - 0.02 and ticket - after < 5 * limiter.emission + 0.02
    assert ticket - after - budget < countdown < ticket - before - budget + TICKET_JITTER_SECONDS
    ex = worker.ledger.get("default", rendered)
    assert ex.status == State.QUEUED and ex.fields.get("attempts", "0") == "0"
    assert len([c for c in responses.calls if c.request.url == ROKT_CREATE]) == 0
    time.sleep(countdown)
    run(create_rokt_event_task, "default", rendered, queue=queue, kwargs={"ticket": ticket})
    assert worker.ledger.get("default", rendered).status == State.ACCEPTED


@responses.activate
def test_a_retry_for_another_reason_drops_the_ticket(worker, rendered, sent_tasks):
    """A ticket is a place in line for one moment: a task that held one and then met a 429 comes
    back later without it, and joins the line afresh instead of cutting ahead of it."""
    answer("POST", ROKT_TOKEN, json={"access_token": "t", "expires_in": 300})
    answer("POST", ROKT_CREATE, status=429, headers={"Retry-After": "2"})
    with pytest.raises(Retry):
        run(create_rokt_event_task, "default", rendered, kwargs={"ticket": time.time() - 5})
    again = retried(sent_tasks, create_rokt_event_task)
    assert "ticket" not in again.kwargs and again.queue != queues.ROKT_WAIT_QUEUE


def test_create_rokt_event_retries_while_redis_is_down(worker, rendered, sent_tasks, monkeypatch):
    def down(*_args: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(executions, "create_step", down)
    with pytest.raises(Retry):
        run(create_rokt_event_task, "default", rendered, retries=3)
    assert 4 <= retried(sent_tasks, create_rokt_event_task).options["countdown"] <= 8  # 2^3 with jitter
    with pytest.raises(redis.ConnectionError):  # bounded: the task's max_retries
        run(create_rokt_event_task, "default", rendered, retries=create_rokt_event_task.max_retries)


# -- render_event ------------------------------------------------------------------------


def test_render_event_hands_over_to_the_tenants_rokt_queue(worker, sent_tasks):
    template = create_template(worker.redis, "default", TEMPLATE)["id"]
    args = {"templateId": template, "subscriptionId": "s1", "FirstName": "Ava"}
    worker.ledger.claim("default", "e2", {"contactKey": "C2", "eventId": event_id_for("e2"), "args": args})
    run(render_event_task, "default", "e2", queue=queues.render_queue("default"))
    (create,) = sent_tasks
    assert create.name == queues.CREATE_EVENT_TASK and create.queue == queues.rokt_queue("default")
    assert create.options["task_id"] == "e2:create"


def test_render_event_retries_while_redis_is_down(worker, sent_tasks, monkeypatch):
    monkeypatch.setattr(executions, "render_step", lambda *_a: (_ for _ in ()).throw(redis.TimeoutError()))
    with pytest.raises(Retry):
        run(render_event_task, "default", "e3", queue=queues.render_queue("default"))
    again = retried(sent_tasks, render_event_task)
    assert again.queue == queues.render_queue("default") and 0.5 <= again.options["countdown"] <= 1


# -- flush tasks -------------------------------------------------------------------------

SFMC_ANSWERS: list[tuple[str, dict[str, Any], bool]] = [
    (
        "429 with Retry-After",
        {"status": 429, "headers": {"Retry-After": "3"}, "json": {"errorcode": 50100}},
        True,
    ),
    ("429 without Retry-After", {"status": 429, "json": {"errorcode": 50100}}, True),
    ("500", {"status": 500}, True),
    ("timeout", {"body": requests.ConnectTimeout("connect timed out")}, True),
    ("401 after a refresh", {"status": 401}, True),
    ("400", {"status": 400, "json": {"message": "bad row", "errorcode": 10000}}, False),
]


@responses.activate
@pytest.mark.parametrize(("name", "how", "retry"), SFMC_ANSWERS, ids=[a[0] for a in SFMC_ANSWERS])
def test_flush_keeps_the_batch_and_retries_without_limit(worker, sent_tasks, name, how, retry):
    answer("POST", SFMC_TOKEN, json={"access_token": "t", "expires_in": 1079, "rest_instance_url": SFMC_REST})
    answer("POST", ROWSET, **how)
    row = {"keys": {"ContactKey": "C1", "ExecutionId": "gone"}, "values": {"Status": "accepted"}}
    box = worker.outbox("default", OutboxKind.STATUS_ROWS)
    box.ensure_group()
    worker.redis.xadd(box.key, {"p": json.dumps(row)}, id="1-1")  # long waiting: goes out now
    retries = flush_status_rows_task.max_retries + 5  # never dropped, however long SFMC is down
    if retry:
        with pytest.raises(Retry):
            run(flush_status_rows_task, "default", retries=retries, queue=queues.SFMC_QUEUE)
        again = retried(sent_tasks, flush_status_rows_task)
        assert again.queue == queues.SFMC_QUEUE and again.args == ["default"]
        if name.startswith("429"):
            wait = 3 if "with" in name.split()[1:2] else 5
            assert wait <= again.options["countdown"] <= wait + 1
        assert box.backlog() == 1 and not dead_letters(worker)  # pending for the retry
    else:
        report = run(flush_status_rows_task, "default", retries=retries, queue=queues.SFMC_QUEUE)
        assert report["rejected"] == 1 and box.backlog() == 0
        letter = dead_letters(worker)["status-row:C1:gone"]
        assert (letter["stage"], letter["errorClass"]) == (Stage.RECORD_STATUS, ErrorClass.PERMANENT)


def test_flush_retries_while_redis_is_down(worker, sent_tasks, monkeypatch):
    from pipeline.delivery import flush

    def down(*_args: Any, **_kwargs: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setitem(flush.FLUSHERS, OutboxKind.STATUS_ROWS, down)
    with pytest.raises(Retry):
        run(flush_status_rows_task, "default", queue=queues.SFMC_QUEUE)
    assert retried(sent_tasks, flush_status_rows_task).queue == queues.SFMC_QUEUE


# -- process_webhook ---------------------------------------------------------------------


@pytest.fixture
def stored_subscribe(worker):
    envelope = {**SUBSCRIBE, "eventDetails": {**SUBSCRIBE["eventDetails"]}}
    assert webhooks.claim_webhook(worker.redis, "default", envelope, ttl_seconds=RECEIPT_TTL)
    return envelope["eventId"]


@responses.activate
@pytest.mark.parametrize(("name", "how", "retry"), SFMC_ANSWERS, ids=[a[0] for a in SFMC_ANSWERS])
def test_process_webhook_retries_what_can_succeed_later(
    worker, stored_subscribe, sent_tasks, name, how, retry
):
    """A Subscribe matches its contact at SFMC first; a contact SFMC refuses for good is
    dead-lettered and the row still goes in (no retry)."""
    answer("POST", SFMC_TOKEN, json={"access_token": "t", "expires_in": 1079, "rest_instance_url": SFMC_REST})
    answer("GET", f"{SFMC_REST}/contacts/v1/contacts/0031X00000abcDE", **how)
    if retry:
        with pytest.raises(Retry):
            run(process_webhook_task, "default", stored_subscribe, queue=queues.WEBHOOKS_QUEUE)
        again = retried(sent_tasks, process_webhook_task)
        assert again.queue == queues.WEBHOOKS_QUEUE and again.args == ["default", stored_subscribe]
        assert worker.outbox("default", OutboxKind.SUBSCRIPTION_ROWS).backlog() == 0
    else:
        run(process_webhook_task, "default", stored_subscribe, queue=queues.WEBHOOKS_QUEUE)
        letter = dead_letters(worker)["contact:06423672-b6ba-4536-aa36-70788a7a0a36"]
        assert letter["stage"] == Stage.MATCH_CONTACT
        assert worker.outbox("default", OutboxKind.SUBSCRIPTION_ROWS).backlog() == 1


def test_a_confirmation_that_overtook_the_202_is_retried_shortly(worker, sent_tasks):
    worker.ledger.claim("default", "e4", {"contactKey": "C4", "eventId": event_id_for("e4"), "args": {}})
    envelope = {
        "eventId": "added-1",
        "eventType": "SubscriptionEventAdded",
        "eventDetails": {"subscriptionEvent": {"eventId": event_id_for("e4")}},
    }
    assert webhooks.claim_webhook(worker.redis, "default", envelope, ttl_seconds=RECEIPT_TTL)
    with pytest.raises(Retry):
        run(process_webhook_task, "default", "added-1", queue=queues.WEBHOOKS_QUEUE)
    assert retried(sent_tasks, process_webhook_task).options["countdown"] == 2


def test_process_webhook_retries_while_redis_is_down_then_dead_letters(worker, sent_tasks, monkeypatch):
    def down(*_args: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(webhooks, "process_webhook", down)
    with pytest.raises(Retry):
        run(process_webhook_task, "default", "evt-9", queue=queues.WEBHOOKS_QUEUE)
    with pytest.raises(redis.ConnectionError) as caught:
        run(process_webhook_task, "default", "evt-9", retries=process_webhook_task.max_retries)
    # what Celery does with a task that raised: on_failure keeps it as a dead letter
    process_webhook_task.push_request(args=["default", "evt-9"], retries=process_webhook_task.max_retries)
    try:
        process_webhook_task.on_failure(caught.value, "t", ["default", "evt-9"], {}, None)
    finally:
        process_webhook_task.pop_request()
    letter = dead_letters(worker)["webhook:evt-9"]
    assert (letter["stage"], letter["payload"]) == (Stage.WEBHOOK, {"eventId": "evt-9"})
    assert letter["attempts"] == process_webhook_task.max_retries + 1
