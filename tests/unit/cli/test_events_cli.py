"""`rokt-sfmc events ...` on fakeredis: a cancel says how many events it would delete and stops
without --yes, with it starts a job; correct, remove and restore do what they say; show,
history and jobs print JSON; jobs --watch follows a job to its end."""

from __future__ import annotations

import json

import pytest

from pipeline import cli
from pipeline.cli import events as events_command
from pipeline.infra import keys
from pipeline.journeys import event_jobs
from pipeline.journeys.templates import archive_template, create_template, get_template
from pipeline.settings import DEFAULT_TENANT, load_settings
from pipeline.stores.ledger import event_id_for
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import JobKind, State
from tests.unit.conftest import ENV

T = DEFAULT_TENANT  # the unit settings' tenant, pinned from the environment
TEMPLATE = {"title": "Sale starts Friday, {{FirstName}}", "start": "2099-06-05T09:00:00", "timezone": "UTC"}


@pytest.fixture
def rt(monkeypatch, fake_redis, tmp_path):
    """Every command reads these settings and talks to fakeredis; the history store is a file
    the commands and the test share. Returns the test's runtime over both."""
    settings = load_settings({**ENV, "HISTORY_URL": f"sqlite:///{tmp_path}/history.db"})
    monkeypatch.setattr("pipeline.settings.get_settings", lambda: settings)
    monkeypatch.setattr("pipeline.tenancy.handles.redis_client", lambda url: fake_redis)
    monkeypatch.setattr("pipeline.infra.redis_clients.redis_client", lambda url: fake_redis)
    return Runtime(settings, fake_redis)


@pytest.fixture
def steps(monkeypatch):
    """The first steps the commands send, as (tenant, job id, start) (no broker)."""
    sent: list[tuple[str, str, int]] = []
    monkeypatch.setattr(
        "pipeline.infra.dispatch.enqueue_event_job_step",
        lambda tenant, job_id, start, end=0, countdown=0: sent.append((tenant, job_id, start)),
    )
    return sent


@pytest.fixture
def template_id(rt):
    return create_template(rt.redis, T, TEMPLATE)["id"]


def held(rt, template_id, n, prefix="e"):
    """`n` executions of the template whose event Rokt accepted, contacts `<prefix>-contact-<i>`."""
    for i in range(n):
        execution = f"{prefix}{i}"
        record = {
            "contactKey": f"{prefix}-contact-{i}",
            "eventId": event_id_for(execution),
            "activityId": "act-1",
            "subscriptionIds": [f"s-{execution}"],
            "args": {"templateId": template_id, "FirstName": f"N{i}"},
        }
        assert rt.ledger.claim(T, execution, record)
        assert rt.ledger.transition(T, execution, State.ACCEPTED)[0]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def jobs(rt):
    return event_jobs.list_jobs(rt.redis, T)


def test_sent_prints_the_count_as_json(rt, template_id, capsys):
    held(rt, template_id, 3)
    code, out, _err = _run(capsys, "events", "sent", "--tenant", T, "--template", template_id)
    assert code == 0
    assert json.loads(out) == {"templateId": template_id, "held": 3, "beyondRetention": 0}


def test_sent_of_an_unknown_template_says_so(rt, capsys):
    code, out, err = _run(capsys, "events", "sent", "--tenant", T, "--template", "tpl-nope")
    assert code == 1 and out == "" and "tpl-nope" in err and "not found" in err


def test_cancel_without_yes_says_the_count_and_starts_nothing(rt, template_id, steps, capsys):
    held(rt, template_id, 2)
    code, out, err = _run(capsys, "events", "cancel", "--tenant", T, "--template", template_id)
    assert code == 1 and out == ""
    assert f"2 event(s) of {template_id}" in err and "--yes" in err
    assert jobs(rt) == [] and steps == []
    assert "archivedAt" not in get_template(rt.redis, T, template_id)


def test_cancel_of_an_unknown_template_says_so_with_or_without_yes(rt, steps, capsys):
    for yes in ((), ("--yes",)):
        code, out, err = _run(capsys, "events", "cancel", "--tenant", T, "--template", "tpl-nope", *yes)
        assert code == 1 and out == "" and "tpl-nope" in err and "not found" in err, (yes, err)
    assert jobs(rt) == [] and steps == []


def test_cancel_with_yes_archives_the_template_and_starts_a_job(rt, template_id, steps, capsys):
    held(rt, template_id, 2)
    argv = ("events", "cancel", "--tenant", T, "--template", template_id, "--reason", "legal", "--yes")
    code, out, _err = _run(capsys, *argv)
    assert code == 0
    job = json.loads(out)
    assert (job["kind"], job["templateId"], job["reason"]) == ("cancel", template_id, "legal")
    assert job["startedBy"].startswith("CLI")
    assert steps == [(T, job["id"], event_jobs.PLAN)]
    assert get_template(rt.redis, T, template_id)["cancelJob"] == job["id"]


def test_correct_starts_a_correction(rt, template_id, steps, capsys):
    code, out, _err = _run(capsys, "events", "correct", "--tenant", T, "--template", template_id)
    assert code == 0
    job = json.loads(out)
    assert (job["kind"], job["templateId"], job["state"]) == ("correct", template_id, "planning")
    assert steps == [(T, job["id"], event_jobs.PLAN)]
    code, _out, err = _run(capsys, "events", "correct", "--tenant", T, "--template", "tpl-nope")
    assert code == 1 and "tpl-nope" in err and len(steps) == 1


def test_remove_needs_a_contact(rt, steps, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["events", "remove", "--tenant", T])
    assert exit_.value.code == 2 and "--contact" in capsys.readouterr().err
    assert jobs(rt) == [] and steps == []


def test_remove_starts_a_withdrawal_of_the_contacts_events_and_prints_no_contact_key(
    rt, template_id, steps, capsys
):
    held(rt, template_id, 2)
    code, out, _err = _run(capsys, "events", "remove", "--tenant", T, "--contact", "e-contact-1")
    assert code == 0
    job = json.loads(out)
    assert (job["kind"], job["contact"], job["total"]) == ("withdraw", True, 1)
    assert "e-contact-1" not in out
    assert steps == [(T, job["id"], event_jobs.PLAN)]
    # a template no longer stored may still have events in calendars: none of this contact here
    code, out, _err = _run(
        capsys, "events", "remove", "--tenant", T, "--contact", "e-contact-1", "--template", "tpl-gone"
    )
    assert code == 0 and json.loads(out)["total"] == 0 and len(steps) == 2


def test_restore_serves_future_contacts_again(rt, template_id, capsys):
    archive_template(rt.redis, T, template_id, "job-1")
    code, out, _err = _run(capsys, "events", "restore", "--tenant", T, "--template", template_id)
    assert code == 0 and f"restored {template_id}" in out
    assert "archivedAt" not in get_template(rt.redis, T, template_id)
    code, _out, err = _run(capsys, "events", "restore", "--tenant", T, "--template", "tpl-nope")
    assert code == 1 and "tpl-nope" in err


def test_show_history_and_jobs_print_json(rt, template_id, steps, capsys):
    first = event_jobs.start_job(
        rt, T, JobKind.CANCEL, started_by="Marketing Cloud user 7", template_id=template_id
    )
    second = event_jobs.start_job(rt, T, JobKind.WITHDRAW, started_by="API key abc", contact_key="nobody")
    for start, end in event_jobs.step(rt, T, second.job_id, event_jobs.PLAN):  # nothing to do: it ends
        event_jobs.step(rt, T, second.job_id, start, end)
    rt.redis.hset(keys.event_job_notes(T, first.job_id), "e0", "Rokt said no")

    code, out, _err = _run(capsys, "events", "show", "--tenant", T, first.job_id)
    shown = json.loads(out)
    assert code == 0 and shown["id"] == first.job_id and shown["notes"] == {"e0": "Rokt said no"}
    assert shown["startedBy"] == "Marketing Cloud user 7" and shown["kind"] == "cancel"

    code, out, _err = _run(capsys, "events", "history", "--tenant", T)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [line["id"] for line in lines] == [second.job_id, first.job_id]
    assert [line["startedBy"] for line in lines] == ["API key abc", "Marketing Cloud user 7"]
    assert [line["state"] for line in lines] == ["done", "planning"]
    code, out, _err = _run(capsys, "events", "history", "--tenant", T, "--limit", "1")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [second.job_id]

    code, out, _err = _run(capsys, "events", "jobs", "--tenant", T)  # the running ones only
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [first.job_id]


def test_show_of_an_unknown_job_and_jobs_with_none_running_say_so(rt, capsys):
    code, out, err = _run(capsys, "events", "show", "--tenant", T, "job-nope")
    assert code == 1 and out == "" and "job-nope" in err
    code, out, err = _run(capsys, "events", "jobs", "--tenant", T)
    assert code == 0 and out == "" and "no event job running" in err


def test_jobs_watch_follows_a_job_to_its_end(rt, template_id, monkeypatch, capsys):
    job = event_jobs.start_job(rt, T, JobKind.CANCEL, started_by="test", template_id=template_id)
    waits = []

    def wait(_seconds):  # while the watch waits, the job's one step runs (nothing held: it ends)
        waits.append(event_jobs.get_job(rt.redis, T, job.job_id).state)
        event_jobs.step(rt, T, job.job_id, event_jobs.PLAN)

    monkeypatch.setattr(events_command.time, "sleep", wait)
    code, out, _err = _run(capsys, "events", "jobs", "--tenant", T, "--watch")
    assert code == 0 and waits == ["planning"]
    assert f"cancel {job.job_id}" in out
    assert event_jobs.get_job(rt.redis, T, job.job_id).state == "done"


def test_restore_refuses_while_the_cancel_runs(rt, template_id, steps, capsys):
    held(rt, template_id, 1)
    argv = ("events", "cancel", "--tenant", T, "--template", template_id, "--yes")
    job_id = json.loads(_run(capsys, *argv)[1])["id"]
    code, out, err = _run(capsys, "events", "restore", "--tenant", T, "--template", template_id)
    assert code == 1 and out == "" and job_id in err and "still running" in err
    assert get_template(rt.redis, T, template_id)["archivedAt"]
