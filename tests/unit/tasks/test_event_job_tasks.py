"""The event-job tasks as a worker runs them: a step sends the next steps, and a dead letter's
replay (`rsf.event_job_item`) moves the job's counts once, whether Rokt accepts it this time or
refuses it again."""

from __future__ import annotations

import os

import pytest
import responses

from pipeline.journeys import event_jobs
from pipeline.journeys.templates import create_template
from pipeline.stores.deadletters import count_dead_letters
from pipeline.stores.ledger import event_id_for
from pipeline.tenancy import handles as runtime_module
from pipeline.vocabulary import JobKind, State
from tasks.event_jobs import event_job_item_task, event_job_step_task
from tests.unit.tasks.test_retries import run

ROKT_TOKEN = "https://rokt.test/oauth2/token"
TEMPLATE = {"title": "Sale starts Friday", "start": "2099-06-05T09:00:00", "timezone": "UTC"}
DELETE = f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for('e0')}"
REFUSED = {"status": 400, "json": {"Code": "ValidationFailed", "Reason": "not today"}}


@pytest.fixture
def worker(runtime, monkeypatch):
    """The process-wide runtime the tasks look up, on fakeredis."""
    monkeypatch.setattr(runtime_module, "_runtime", (os.getpid(), runtime))
    return runtime


def steps_of(sent_tasks, job_id):
    return [
        task.args[2:]
        for task in sent_tasks
        if task.name == event_job_step_task.name and task.args[1] == job_id
    ]


@pytest.fixture
def failed_job(worker, sent_tasks):
    """A cancel of one event that Rokt refused, run to its end by its tasks: one failed item."""
    template_id = create_template(worker.redis, "default", TEMPLATE)["id"]
    record = {
        "contactKey": "C1",
        "eventId": event_id_for("e0"),
        "activityId": "a",
        "args": {"templateId": template_id},
    }
    worker.ledger.claim("default", "e0", record)
    worker.ledger.transition("default", "e0", State.ACCEPTED)
    job = event_jobs.start_job(worker, "default", JobKind.CANCEL, started_by="test", template_id=template_id)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 3600})
        mock.delete(DELETE, **REFUSED)
        todo, done = [[event_jobs.PLAN, 0]], 0
        while todo:
            run(event_job_step_task, "default", job.job_id, *todo.pop(0))
            sent = steps_of(sent_tasks, job.job_id)
            todo.extend(sent[done:])
            done = len(sent)
    job = event_jobs.get_job(worker.redis, "default", job.job_id)
    assert job.state == "done" and job.counts == {"failed": 1}
    assert count_dead_letters(worker.redis, "default") == 1
    return job.job_id


def test_a_replay_accepted_moves_the_failed_item_to_its_outcome(worker, failed_job):
    with responses.RequestsMock() as mock:
        mock.delete(DELETE, status=202)
        run(event_job_item_task, "default", failed_job, "e0")
    job = event_jobs.get_job(worker.redis, "default", failed_job)
    assert job.counts == {"failed": 0, "cancelled": 1}
    assert worker.ledger.get("default", "e0").status == State.CANCELLED


def test_a_replay_refused_again_is_a_dead_letter_again_and_still_one_failed_item(worker, failed_job):
    with responses.RequestsMock() as mock:
        mock.delete(DELETE, **REFUSED)
        run(event_job_item_task, "default", failed_job, "e0")
    job = event_jobs.get_job(worker.redis, "default", failed_job)
    assert job.counts == {"failed": 1}
    assert count_dead_letters(worker.redis, "default") == 1
    assert "not today" in event_jobs.notes(worker.redis, "default", failed_job)["e0"]  # Rokt's reason
