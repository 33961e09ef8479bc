"""Event jobs against fakeredis and a mocked Rokt: a correction sends only what changed and
nothing the second time, a cancel deletes and archives, a withdrawal removes from each
subscription; outcomes are counted once, a chunk run again does nothing again, a refusal is a
dead letter, and the job's share of the limiter holds while creates wait."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from pipeline.delivery.flush import flush_history
from pipeline.infra import keys
from pipeline.journeys import event_jobs, executions
from pipeline.journeys.templates import create_template, get_template, restore_template, update_template
from pipeline.stores.deadletters import count_dead_letters
from pipeline.stores.ledger import event_id_for
from pipeline.stores.ratelimit import RateLimited
from pipeline.vocabulary import JobKind, JobOutcome, Stage, State
from tests.unit.conftest import claim_execution as claim

ROKT_TOKEN = "https://rokt.test/oauth2/token"
ROKT_CREATE = "https://rokt.test/v1/subscriptionevent/acct"
ROKT_UPDATE = "https://rokt.test/v1/subscriptionevent/acct/update"
FUTURE = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT09:00:00")
PAST = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT09:00:00")
TEMPLATE = {"title": "Sale starts Friday, {{FirstName}}", "start": FUTURE, "timezone": "Europe/London"}


def sent(runtime, template_id, n, **extra):
    """`n` executions of the template whose events Rokt accepted (create mocked)."""
    ids = []
    with rokt() as mock:
        mock.post(ROKT_CREATE, status=202, json={})
        for i in range(n):
            execution = f"e{i}"
            values = {"FirstName": f"N{i}", "subscriptionId": f"s{i}", **extra}
            claim(runtime, execution, templateId=template_id, **values)
            assert executions.render_step(runtime, "default", execution)
            executions.create_step(runtime, "default", execution)
            assert runtime.ledger.get("default", execution).status == State.ACCEPTED
            ids.append(execution)
    return ids


def rokt() -> responses.RequestsMock:
    """Rokt mocked: its token (once; later calls find it cached), then what each test adds."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 3600})
    return mock


def run(runtime, job_id):
    """Every step of the job, in order, as the tasks would send them."""
    todo = [(event_jobs.PLAN, 0)]
    while todo:
        start, end = todo.pop(0)
        todo.extend(event_jobs.step(runtime, "default", job_id, start, end))
    return event_jobs.get_job(runtime.redis, "default", job_id)


def start(runtime, kind, **scope):
    return event_jobs.start_job(runtime, "default", kind, started_by="test", **scope).job_id


@pytest.fixture
def template_id(runtime):
    return create_template(runtime.redis, "default", TEMPLATE)["id"]


def test_a_correction_updates_what_changed_once_and_a_second_run_sends_nothing(runtime, template_id):
    sent(runtime, template_id, 3)
    changed = {**TEMPLATE, "title": "Sale starts Saturday, {{FirstName}}"}
    update_template(runtime.redis, "default", template_id, changed)
    with rokt() as mock:
        update = mock.post(ROKT_UPDATE, status=202, json={})
        job = run(runtime, start(runtime, JobKind.CORRECT, template_id=template_id))
        assert update.call_count == 3
        bodies = [json.loads(call.request.body) for call in mock.calls if call.request.url == ROKT_UPDATE]
    assert sorted(b["title"] for b in bodies) == [f"Sale starts Saturday, N{i}" for i in range(3)]
    assert {b["eventId"] for b in bodies} == {event_id_for(f"e{i}") for i in range(3)}
    shown = job.as_dict()
    assert shown["state"] == "done" and shown["total"] == 3 and shown["outcomes"]["updated"] == 3
    ex = runtime.ledger.get("default", "e0")
    assert ex.status == State.UPDATED and "Saturday" in json.loads(ex.fields["event"])["title"]
    status_rows = [json.loads(f["p"]) for _id, f in runtime.redis.xrange("rsf:default:outbox:status")]
    assert status_rows[-1]["values"]["Status"] == "updated" and status_rows[-1]["values"]["RoktEventId"]

    with responses.RequestsMock() as mock:  # the same correction again: the digests match
        again = run(runtime, start(runtime, JobKind.CORRECT, template_id=template_id))
        assert not mock.calls
    assert again.as_dict()["outcomes"]["unchanged"] == 3


def test_a_contact_who_no_longer_renders_keeps_its_event_and_the_job_says_why(runtime, template_id):
    sent(runtime, template_id, 2)
    strict = {**TEMPLATE, "title": "Hi {{FirstName}} in {{City}}"}  # a new strict placeholder
    update_template(runtime.redis, "default", template_id, strict)
    with responses.RequestsMock():
        job = run(runtime, start(runtime, JobKind.CORRECT, template_id=template_id))
    assert job.as_dict()["outcomes"]["kept"] == 2
    notes = event_jobs.notes(runtime.redis, "default", job.job_id)
    assert set(notes) == {"e0", "e1"} and all("City" in why for why in notes.values())
    assert runtime.ledger.get("default", "e0").status == State.ACCEPTED


def test_events_on_their_way_to_the_history_store_are_not_past_retention(runtime, template_id):
    sent(runtime, template_id, 3)  # their records wait in the history outbox, not yet in the store
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 3, "beyondRetention": 0}
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 3, "beyondRetention": 0}
    runtime.redis.hincrby(keys.template_sent("default"), template_id, 1)  # one whose record is gone
    assert event_jobs.sent_count(runtime, "default", template_id)["beyondRetention"] == 1


def test_events_cancelled_are_not_counted_held_before_the_store_has_the_move(runtime, template_id):
    sent(runtime, template_id, 3)
    flush_history(runtime, "default", consumer="c", max_wait=0)  # the store: 3 accepted
    with rokt() as mock:
        for i in range(3):
            mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(f'e{i}')}", status=202)
        run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id))
    # the moves to `cancelled` wait in the history outbox: Redis's record is the newer
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 0, "beyondRetention": 0}
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 0, "beyondRetention": 0}


def test_events_already_over_are_skipped_not_updated(runtime):
    template_id = create_template(runtime.redis, "default", {**TEMPLATE, "start": PAST})["id"]
    sent(runtime, template_id, 2)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "start": PAST, "title": "New"})
    with responses.RequestsMock():
        job = run(runtime, start(runtime, JobKind.CORRECT, template_id=template_id))
    assert job.as_dict()["outcomes"]["ended"] == 2 and job.as_dict()["skipped"] == {"ended": 2}


def test_a_cancel_deletes_every_held_event_and_archives_the_template(runtime, template_id):
    sent(runtime, template_id, 3)
    with rokt() as mock:
        for i in range(3):
            mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(f'e{i}')}", status=202)
        job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id, reason="legal"))
    assert job.as_dict()["outcomes"]["cancelled"] == 3
    ex = runtime.ledger.get("default", "e1")
    assert ex.status == State.CANCELLED and ex.fields["error"] == "cancelled: legal"
    assert get_template(runtime.redis, "default", template_id)["archivedAt"]
    # a contact reaching the step now is not sent an event: `cancelled`, with the reason
    claim(runtime, "late", templateId=template_id, subscriptionId="s9", FirstName="L")
    assert executions.render_step(runtime, "default", "late") is False
    late = runtime.ledger.get("default", "late")
    assert late.status == State.CANCELLED and "cancelled" in late.fields["error"]
    # restored: future contacts get the event again; cancelled ones stay cancelled
    restore_template(runtime.redis, "default", template_id)
    claim(runtime, "later", templateId=template_id, subscriptionId="s10", FirstName="M")
    assert executions.render_step(runtime, "default", "later") is True
    assert runtime.ledger.get("default", "e1").status == State.CANCELLED


def test_an_execution_rendered_before_the_cancel_is_not_sent_after_it(runtime, template_id):
    claim(runtime, "inflight", templateId=template_id, subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "inflight")
    with responses.RequestsMock():
        job_id = start(runtime, JobKind.CANCEL, template_id=template_id)
        executions.create_step(runtime, "default", "inflight")  # no call: the template is archived
    assert runtime.ledger.get("default", "inflight").status == State.CANCELLED
    with responses.RequestsMock():
        assert run(runtime, job_id).state == "done"


def test_a_repeated_delete_finds_the_event_gone_and_is_done(runtime, template_id):
    sent(runtime, template_id, 1)
    gone = {"Code": "EventNotFound", "Reason": "no such event"}  # Rokt's Error Model
    with rokt() as mock:
        mock.delete(
            f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for('e0')}", status=400, json=gone
        )
        job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id))
    assert job.as_dict()["outcomes"]["cancelled"] == 1 and count_dead_letters(runtime.redis, "default") == 0


def test_a_refused_update_is_a_dead_letter_of_its_stage(runtime, template_id):
    sent(runtime, template_id, 2)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "New {{FirstName}}"})
    with rokt() as mock:
        mock.post(ROKT_UPDATE, status=400, json={"Code": "Invalid", "Reason": "bad title"})
        job = run(runtime, start(runtime, JobKind.CORRECT, template_id=template_id))
    assert job.as_dict()["failed"] == 2
    letters = [json.loads(v) for v in runtime.redis.hvals("rsf:default:dlq")]
    assert {letter["stage"] for letter in letters} == {Stage.UPDATE_EVENT}
    assert {letter["payload"]["executionId"] for letter in letters} == {"e0", "e1"}


def test_a_withdrawal_removes_the_contacts_event_from_each_subscription(runtime, template_id):
    sent(runtime, template_id, 1, subscriptionId="s-a,s-b")
    event = event_id_for("e0")
    with rokt() as mock:
        removes = [
            mock.delete(f"https://rokt.test/v2/subscription/acct/{sub}/subscriptionevent/{event}", status=202)
            for sub in ("s-a", "s-b")
        ]
        contact = runtime.ledger.get("default", "e0").contact_key
        job = run(runtime, start(runtime, JobKind.WITHDRAW, contact_key=contact))
    assert [r.call_count for r in removes] == [1, 1]
    assert job.as_dict()["outcomes"]["withdrawn"] == 1
    assert runtime.ledger.get("default", "e0").status == State.WITHDRAWN


def test_a_chunk_run_again_does_nothing_again_and_counts_once(runtime, template_id):
    sent(runtime, template_id, 2)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "New {{FirstName}}"})
    job_id = start(runtime, JobKind.CORRECT, template_id=template_id)
    with rokt() as mock:
        update = mock.post(ROKT_UPDATE, status=202, json={})
        (chunk,) = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)
        assert event_jobs.step(runtime, "default", job_id, *chunk) == [(event_jobs.PLAN, 0)]
        # a redelivered task: nothing sent again, and nothing more sent on from it
        assert event_jobs.step(runtime, "default", job_id, *chunk) == []
        assert update.call_count == 2
    job = event_jobs.get_job(runtime.redis, "default", job_id)
    assert job.counts == {JobOutcome.UPDATED: 2}


def test_a_chunk_still_running_when_its_job_ends_counts_nothing_again(runtime, template_id):
    """Two runs of one chunk (a resent step beside the original): the one behind records its
    items after the other ended the job (and dropped its outcomes)."""
    sent(runtime, template_id, 2)
    with rokt() as mock:
        for i in range(2):
            mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(f'e{i}')}", status=202)
        job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id))
    assert job.state == "done" and job.counts == {JobOutcome.CANCELLED: 2}
    outcome = event_jobs.process_item(runtime, job, "e0", None)  # the run behind: found done
    assert not event_jobs.record_outcome(runtime, job, "e0", outcome)
    assert event_jobs.get_job(runtime.redis, "default", job.job_id).counts == {JobOutcome.CANCELLED: 2}
    assert runtime.redis.hgetall(keys.event_job_totals("default")) == {"cancel:cancelled": "2"}


def test_a_stalled_job_is_sent_its_unfinished_chunks_again(runtime, template_id):
    sent(runtime, template_id, 2)
    job_id = start(runtime, JobKind.CANCEL, template_id=template_id)
    (chunk,) = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)  # its task is then lost
    assert event_jobs.stalled(runtime, "default", idle_seconds=3600) == []
    assert event_jobs.stalled(runtime, "default", idle_seconds=-1) == [(job_id, *chunk)]


def test_a_job_takes_its_share_apart_from_the_line_only_while_creates_wait(runtime, monkeypatch):
    asked: list[str] = []
    limiter = runtime.limiter("default", "rokt")
    monkeypatch.setattr(type(limiter), "acquire", lambda self, max_sleep=1.0: asked.append(self.key))
    event_jobs.job_gate(runtime, "default")
    assert asked == [limiter.key] and runtime.redis.get(limiter.reserved_key) is None
    runtime.redis.set(limiter.line_key, 10**12)  # creates hold tickets far ahead
    asked.clear()
    event_jobs.job_gate(runtime, "default")
    # its own limiter at its share, and the share reserved: the line's slots spaced for the rest
    assert asked == ["rsf:default:ratelimit:rokt-jobs"]
    assert float(runtime.redis.get(limiter.reserved_key)) == runtime.settings.event_job_share
    limiter.pause(5)  # Rokt's 429 pauses the job too
    with pytest.raises(RateLimited):
        event_jobs.job_gate(runtime, "default")


SFMC_TOKEN = "https://auth.sfmc.test/v2/token"
DEFINITION = "c0b22824-c4db-441b-a8e2-7aea9bfca439"


def sfmc(status, activities=("a",)):
    """SFMC mocked: its token, and the journey version with its status and activities' ids."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.post(
        SFMC_TOKEN,
        json={"access_token": "s", "expires_in": 3600, "rest_instance_url": "https://rest.sfmc.test/"},
    )
    journey = {"status": status, "activities": [{"id": a} for a in activities]}
    mock.get(f"https://rest.sfmc.test/interaction/v1/interactions/{DEFINITION}", json=journey)
    return mock


@pytest.mark.parametrize("opted_in", [True, False])
def test_a_confirmed_stop_cancels_the_activitys_events_not_yet_started_when_opted_in(
    runtime, template_id, opted_in
):
    sent(runtime, template_id, 2, cancelOnStop="true" if opted_in else "false")
    activity = runtime.ledger.get("default", "e0").fields["activityId"]
    with sfmc("Stopped", activities=[activity]):
        job = event_jobs.cancel_on_stop(runtime, "default", activity, DEFINITION, 2)
        again = event_jobs.cancel_on_stop(runtime, "default", activity, DEFINITION, 2)  # a redelivery
    if not opted_in:
        assert job is None and again is None
        return
    shown = job.as_dict()
    assert shown["kind"] == "cancel" and shown["activityId"] == activity and shown["futureOnly"]
    assert shown["startedBy"] == event_jobs.STOPPED_BY
    assert again.job_id == job.job_id and len(event_jobs.list_jobs(runtime.redis, "default")) == 1


def test_a_stop_sfmc_does_not_confirm_cancels_nothing(runtime, template_id):
    sent(runtime, template_id, 1, cancelOnStop=True)
    activity = runtime.ledger.get("default", "e0").fields["activityId"]
    with sfmc("Published", activities=[activity]), pytest.raises(event_jobs.StopNotConfirmed):
        event_jobs.cancel_on_stop(runtime, "default", activity, DEFINITION, 2)
    assert event_jobs.list_jobs(runtime.redis, "default") == []


def test_a_stopped_journey_the_activity_is_not_part_of_cancels_nothing(runtime, template_id):
    """The stop call is unauthenticated: naming some stopped journey must not cancel the events
    of a journey still running."""
    sent(runtime, template_id, 1, cancelOnStop=True)
    activity = runtime.ledger.get("default", "e0").fields["activityId"]
    with sfmc("Stopped", activities=["another-activity"]), pytest.raises(event_jobs.NotThisJourney):
        event_jobs.cancel_on_stop(runtime, "default", activity, DEFINITION, 2)
    assert event_jobs.list_jobs(runtime.redis, "default") == []


@pytest.mark.parametrize("remove_events", [True, False])
def test_an_erasure_removes_the_persons_events_at_rokt_first_unless_kept(runtime, template_id, remove_events):
    from pipeline.upkeep.privacy import forget_contact

    sent(runtime, template_id, 1, subscriptionId="s-a")
    remove_url = f"https://rokt.test/v2/subscription/acct/s-a/subscriptionevent/{event_id_for('e0')}"
    with rokt() as mock:
        removal = mock.delete(remove_url, status=202)
        record = forget_contact(runtime, "default", "C1", remove_events=remove_events, scan=False)
    assert removal.call_count == (1 if remove_events else 0)
    assert record["counts"]["eventsRemovedAtRokt"] == (1 if remove_events else 0)
    assert record["counts"]["executions"] == 1 and runtime.ledger.get("default", "e0") is None


def test_an_erasure_rokt_refuses_erases_nothing(runtime, template_id):
    from pipeline.clients.errors import RetryableError
    from pipeline.upkeep.privacy import forget_contact

    sent(runtime, template_id, 1, subscriptionId="s-a")
    remove_url = f"https://rokt.test/v2/subscription/acct/s-a/subscriptionevent/{event_id_for('e0')}"
    with rokt() as mock:
        mock.delete(remove_url, status=503)
        with pytest.raises(RetryableError):
            forget_contact(runtime, "default", "C1", scan=False)
    assert runtime.ledger.get("default", "e0").status == State.ACCEPTED


def test_a_withdrawal_of_one_template_leaves_the_contacts_other_events(runtime, template_id):
    other = create_template(runtime.redis, "default", {**TEMPLATE, "title": "Other"})["id"]
    sent(runtime, template_id, 1, subscriptionId="s-a")
    with rokt() as mock:
        mock.post(ROKT_CREATE, status=202, json={})
        claim(runtime, "o1", templateId=other, subscriptionId="s-a", FirstName="A")
        assert executions.render_step(runtime, "default", "o1")
        executions.create_step(runtime, "default", "o1")
        event = event_id_for("e0")
        removal = mock.delete(
            f"https://rokt.test/v2/subscription/acct/s-a/subscriptionevent/{event}", status=202
        )
        job = run(runtime, start(runtime, JobKind.WITHDRAW, contact_key="C1", template_id=template_id))
    assert removal.call_count == 1 and job.as_dict()["total"] == 1
    assert runtime.ledger.get("default", "o1").status == State.ACCEPTED


def test_429s_do_not_use_up_an_items_attempts(runtime, template_id, monkeypatch):
    """Rokt throttling for a while, then one 500, then accepting: the event is deleted, not
    dead-lettered (429s wait, as for creates; only the 500 counts as a failed attempt)."""
    sent(runtime, template_id, 1)
    monkeypatch.setattr(event_jobs, "job_gate", lambda rt, tenant: None)  # no waiting out the pauses
    job_id = start(runtime, JobKind.CANCEL, template_id=template_id)
    (chunk,) = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)
    delete = f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for('e0')}"
    with rokt() as mock:
        for _ in range(8):
            mock.delete(delete, status=429, headers={"Retry-After": "1"})
        mock.delete(delete, status=500)
        mock.delete(delete, status=202)
        for _attempt in range(20):  # the step task retries the chunk until it goes through
            try:
                event_jobs.step(runtime, "default", job_id, *chunk)
                break
            except Exception:  # Throttled, RetryableError: the step task retries it
                continue
    assert count_dead_letters(runtime.redis, "default") == 0
    assert runtime.ledger.get("default", "e0").status == State.CANCELLED


def test_one_run_of_a_chunk_at_a_time_a_second_comes_back_later(runtime, template_id):
    sent(runtime, template_id, 2)
    job_id = start(runtime, JobKind.CANCEL, template_id=template_id)
    (chunk,) = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)
    runtime.redis.set(f"rsf:default:event-job:{job_id}:lease:{chunk[0]}", "another run", px=5000)
    with rokt() as mock, pytest.raises(event_jobs.ChunkBusy) as busy:
        event_jobs.step(runtime, "default", job_id, *chunk)
    assert not [c for c in mock.calls if "subscriptionevent" in c.request.url]  # nothing sent twice
    assert 1.0 <= busy.value.retry_after <= 5.0


def test_events_on_their_way_to_the_history_store_are_not_counted_past_its_retention(runtime, template_id):
    """Until a flush, the events just sent are in the history outbox only: they are held (what
    a correction or a cancel works on), not past the retention; once the store holds them
    and then forgets them (its retention), they are."""
    ids = sent(runtime, template_id, 3)
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 3, "beyondRetention": 0}
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert event_jobs.sent_count(runtime, "default", template_id) == {"held": 3, "beyondRetention": 0}
    runtime.history.forget_executions("default", ids[:2])
    assert event_jobs.sent_count(runtime, "default", template_id)["beyondRetention"] == 2


def test_an_event_cancelled_since_the_last_flush_is_not_counted_held(runtime, template_id):
    """The store still says `accepted` until the next flush; the backlog says what became of it."""
    sent(runtime, template_id, 3)
    flush_history(runtime, "default", consumer="c", max_wait=0)
    with rokt() as mock:
        for i in range(3):
            mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(f'e{i}')}", status=202)
        job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id))
    assert job.as_dict()["outcomes"]["cancelled"] == 3
    assert event_jobs.sent_count(runtime, "default", template_id)["held"] == 0  # before any flush
    flush_history(runtime, "default", consumer="c", max_wait=0)
    assert event_jobs.sent_count(runtime, "default", template_id)["held"] == 0


@pytest.mark.parametrize("kind", [JobKind.WITHDRAW, JobKind.CANCEL])
def test_an_event_a_subscriber_removed_from_one_calendar_is_still_taken_from_the_others(
    runtime, template_id, kind
):
    """Rokt's Removed webhook (one subscription) moves the execution to `removed`, whichever
    calendar it came from; its other subscriptions may still hold the event."""
    sent(runtime, template_id, 1, subscriptionId="s-a,s-b")
    event = event_id_for("e0")
    runtime.ledger.transition("default", "e0", State.REMOVED, (State.ACCEPTED,))
    with rokt() as mock:
        if kind == JobKind.WITHDRAW:
            gone = {"Code": "EventNotFound", "Reason": "not in this subscription"}
            url = "https://rokt.test/v2/subscription/acct/{}/subscriptionevent/" + event
            first = mock.delete(url.format("s-a"), status=400, json=gone)
            other = mock.delete(url.format("s-b"), status=202)
            job = run(runtime, start(runtime, JobKind.WITHDRAW, contact_key="C1"))
            assert (first.call_count, other.call_count) == (1, 1)
        else:
            delete = mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event}", status=202)
            job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id))
            assert delete.call_count == 1
    assert job.as_dict()["failed"] == 0 and job.as_dict()["outcomes"]["not_held"] == 0
    assert runtime.ledger.get("default", "e0").status == event_jobs.TARGETS[kind]


def test_a_correction_ends_while_the_journey_still_sends_the_template(runtime, template_id):
    """Contacts who reach the step after the correction started render the new content: its
    last look leaves them out, or a journey still sending would keep the job from ending."""
    sent(runtime, template_id, 1)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "New {{FirstName}}"})
    job_id = start(runtime, JobKind.CORRECT, template_id=template_id)
    with rokt() as mock:
        mock.post(ROKT_UPDATE, status=202, json={})
        mock.post(ROKT_CREATE, status=202, json={})
        todo = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)
        claim(runtime, "late", templateId=template_id, subscriptionId="s9", FirstName="L")  # after the start
        assert executions.render_step(runtime, "default", "late")
        executions.create_step(runtime, "default", "late")
        while todo:
            todo = [s for step in todo for s in event_jobs.step(runtime, "default", job_id, *step)]
    job = event_jobs.get_job(runtime.redis, "default", job_id)
    assert job.state == "done" and job.as_dict()["total"] == 1 and job.counts == {"updated": 1}


def test_a_template_under_a_running_correction_or_cancel_takes_no_second_one(runtime, template_id):
    sent(runtime, template_id, 1)
    running = start(runtime, JobKind.CORRECT, template_id=template_id)
    for kind in (JobKind.CORRECT, JobKind.CANCEL):
        with pytest.raises(event_jobs.TemplateJobRunning) as refused:
            start(runtime, kind, template_id=template_id)
        assert refused.value.job_id == running
    with rokt() as mock:
        mock.post(ROKT_UPDATE, status=202, json={})
        run(runtime, running)
    assert start(runtime, JobKind.CANCEL, template_id=template_id)  # once it is done


def test_a_create_whose_answer_was_lost_is_deleted_when_its_template_is_cancelled_since(runtime, template_id):
    """A 504 may hide an event Rokt took; the template cancelled before the retry: the retry
    deletes it (the cancel's job cannot see an execution that never got Rokt's 202)."""
    from pipeline.clients.errors import RetryableError

    claim(runtime, "lost", templateId=template_id, subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "lost")
    with rokt() as mock:
        mock.post(ROKT_CREATE, status=504)
        with pytest.raises(RetryableError):
            executions.create_step(runtime, "default", "lost")
    start(runtime, JobKind.CANCEL, template_id=template_id)  # archives the template
    with rokt() as mock:
        delete = mock.delete(
            f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for('lost')}", status=202
        )
        executions.create_step(runtime, "default", "lost")  # the retry
    assert delete.call_count == 1
    assert runtime.ledger.get("default", "lost").status == State.CANCELLED


def test_the_job_scripts_spell_the_done_state_as_the_vocabulary_does():
    from pipeline.vocabulary import JobState

    for script in (event_jobs._RECORD, event_jobs._CLAIM, event_jobs._CHUNK_DONE):
        assert f"'state') == '{JobState.DONE}'" in script


# -- our own change and Rokt's webhook for it -------------------------------------------------


def rokt_webhook(runtime, kind, execution, hook_id, subscription="s-a"):
    """Rokt's webhook about the execution's event, received and processed as the task does."""
    from pipeline.subscriptions.webhooks import claim_webhook, process_webhook
    from schemas.rokt_webhook import EnvelopeSchema
    from tests.unit.samples import RECEIPT_TTL

    envelope = {
        "eventId": hook_id,
        "eventType": kind,
        "eventDetails": {
            "accountId": "acct",
            "subscription": {"calendarSubscriptionId": subscription},
            "subscriptionEvent": {"eventId": event_id_for(execution)},
        },
    }
    assert EnvelopeSchema().validate(envelope) == {}
    assert claim_webhook(runtime.redis, "default", envelope, ttl_seconds=RECEIPT_TTL)
    return process_webhook(runtime, "default", hook_id)


def today(runtime):
    """Activity `a`'s figures today (UTC) that are not zero."""
    from pipeline.stores import performance

    (day,) = performance.read_days(runtime.redis, "default", [performance.local_day("UTC")], "a")
    return {name: n for name, n in day.figures.items() if n}


def status_values(runtime):
    return [json.loads(f["p"])["values"] for _id, f in runtime.redis.xrange("rsf:default:outbox:status")]


def test_a_withdrawal_whose_removed_webhook_lands_mid_job_counts_withdrawn_once(runtime, template_id):
    """The job removes the event from the first subscription; Rokt's Removed for it arrives
    while the job still calls Rokt for the second. It is the echo of our own removal: the
    execution goes to `withdrawn` once, never `removed` by the subscriber."""
    from schemas.rokt_webhook import EVENT_REMOVED

    sent(runtime, template_id, 1, subscriptionId="s-a,s-b")
    rows_before = len(status_values(runtime))
    url = "https://rokt.test/v2/subscription/acct/{}/subscriptionevent/" + event_id_for("e0")

    def removed_then_answered(request):
        rokt_webhook(runtime, EVENT_REMOVED, "e0", "hook-1", subscription="s-a")
        return 202, {}, ""

    with rokt() as mock:
        mock.add_callback("DELETE", url.format("s-a"), callback=removed_then_answered)
        second = mock.delete(url.format("s-b"), status=202)
        job = run(runtime, start(runtime, JobKind.WITHDRAW, contact_key="C1"))
    assert second.call_count == 1 and job.as_dict()["outcomes"]["withdrawn"] == 1
    ex = runtime.ledger.get("default", "e0")
    assert ex.status == State.WITHDRAWN and ex.fields["error"].startswith("withdrawn")
    figures = today(runtime)
    assert figures.get("withdrawn") == 1 and "removed" not in figures
    assert [row["Status"] for row in status_values(runtime)[rows_before:]] == ["withdrawn"]


def test_a_correction_whose_answer_was_lost_counts_updated_once(runtime, template_id):
    """Rokt applies the update but its answer is lost; Rokt's Updated arrives before the job's
    retry, which updates again: one correction, `updated` counted once."""
    from pipeline.clients.errors import RetryableError
    from schemas.rokt_webhook import EVENT_UPDATED

    sent(runtime, template_id, 1)
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "New {{FirstName}}"})
    job_id = start(runtime, JobKind.CORRECT, template_id=template_id)
    (chunk,) = event_jobs.step(runtime, "default", job_id, event_jobs.PLAN)

    def applied_answer_lost(request):
        rokt_webhook(runtime, EVENT_UPDATED, "e0", "hook-1")
        return 504, {}, ""

    with rokt() as mock:
        mock.add_callback("POST", ROKT_UPDATE, callback=applied_answer_lost)
        with pytest.raises(RetryableError):
            event_jobs.step(runtime, "default", job_id, *chunk)
    with rokt() as mock:
        update = mock.post(ROKT_UPDATE, status=202, json={})
        todo = event_jobs.step(runtime, "default", job_id, *chunk)  # the step task's retry
        while todo:
            todo = [s for step in todo for s in event_jobs.step(runtime, "default", job_id, *step)]
        assert update.call_count == 1
    job = event_jobs.get_job(runtime.redis, "default", job_id)
    assert job.state == "done" and job.counts == {JobOutcome.UPDATED: 1}
    assert runtime.ledger.get("default", "e0").status == State.UPDATED
    assert today(runtime).get("updated") == 1


def test_a_cancel_whose_deleted_webhook_lands_first_counts_deleted_once_with_the_jobs_reason(
    runtime, template_id
):
    from schemas.rokt_webhook import EVENT_DELETED

    sent(runtime, template_id, 1)

    def deleted_then_answered(request):
        rokt_webhook(runtime, EVENT_DELETED, "e0", "hook-1")
        return 202, {}, ""

    with rokt() as mock:
        mock.add_callback(
            "DELETE",
            f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for('e0')}",
            callback=deleted_then_answered,
        )
        job = run(runtime, start(runtime, JobKind.CANCEL, template_id=template_id, reason="legal"))
    assert job.as_dict()["outcomes"]["cancelled"] == 1
    ex = runtime.ledger.get("default", "e0")
    assert ex.status == State.CANCELLED and ex.fields["error"] == "cancelled: legal"
    assert today(runtime).get("deleted") == 1


def test_a_subscribers_removal_with_no_job_of_ours_still_counts_removed(runtime, template_id):
    from schemas.rokt_webhook import EVENT_REMOVED

    sent(runtime, template_id, 1)
    rokt_webhook(runtime, EVENT_REMOVED, "e0", "hook-1")
    ex = runtime.ledger.get("default", "e0")
    assert ex.status == State.REMOVED and ex.fields["error"] == "removed from the calendar by the subscriber"
    assert today(runtime).get("removed") == 1


def test_an_item_that_fails_for_good_leaves_rokts_later_webhooks_their_own_meaning(runtime, template_id):
    """A withdrawal Rokt refuses: its change in progress leaves the record with the dead letter,
    so a subscriber's removal afterwards is counted as one."""
    from pipeline.stores.ledger import PENDING_FIELD
    from schemas.rokt_webhook import EVENT_REMOVED

    sent(runtime, template_id, 1, subscriptionId="s-a")
    url = f"https://rokt.test/v2/subscription/acct/s-a/subscriptionevent/{event_id_for('e0')}"
    with rokt() as mock:
        mock.delete(url, status=400, json={"Code": "Invalid", "Reason": "no"})
        job = run(runtime, start(runtime, JobKind.WITHDRAW, contact_key="C1"))
    assert job.as_dict()["failed"] == 1 and count_dead_letters(runtime.redis, "default") == 1
    assert runtime.ledger.get("default", "e0").fields[PENDING_FIELD] == ""
    rokt_webhook(runtime, EVENT_REMOVED, "e0", "hook-1")
    assert runtime.ledger.get("default", "e0").status == State.REMOVED and today(runtime)["removed"] == 1
