"""The API of events after sending: a template edit that corrects the events already sent
(`applyToSent`), the count a correction or a cancel works on, a cancel with the count confirmed,
a restore, one contact's withdrawal and the jobs' progress; every bad input a 400 naming its
field, and who started each job recorded."""

import json
import time

import pytest
import responses

from pipeline.delivery.flush import flush_history
from pipeline.infra.queues import EVENT_JOB_STEP_TASK, EVENT_JOBS_QUEUE
from pipeline.journeys import event_jobs
from pipeline.journeys.templates import get_template
from pipeline.stores.ledger import event_id_for
from pipeline.tenancy import apikeys
from pipeline.vocabulary import JobKind, State
from tests.unit.web.test_api import app, client, key, rt  # noqa: F401  (the API's fixtures)
from tests.unit.web.test_auth import FUEL2TOKEN, OUR_TOKEN, SFMC_CONTEXT, SFMC_TOKEN, context

TEMPLATE = {"title": "Sale starts Friday, {{FirstName}}", "start": "2099-06-05T09:00:00", "timezone": "UTC"}
BASE = "/t/default/api"
ROKT_TOKEN = "https://rokt.test/oauth2/token"


@pytest.fixture
def steps(monkeypatch):
    """The first steps the API sends, as (tenant, job id, start) (no broker)."""
    sent: list[tuple[str, str, int]] = []

    def enqueue(tenant, job_id, start, end=0, countdown=0):
        sent.append((tenant, job_id, start))

    monkeypatch.setattr("pipeline.infra.dispatch.enqueue_event_job_step", enqueue)
    return sent


def create(client, **changes):
    response = client.post(f"{BASE}/templates", json={**TEMPLATE, **changes})
    assert response.status_code == 201, response.json
    return response.json["id"]


def path_to(rt, template_id, n, *states, prefix="e", activity="act-1", **args):
    """`n` executions of the template moved through `states` (by default, accepted by Rokt)."""
    ids = []
    for i in range(n):
        execution = f"{prefix}{i}"
        record = {
            "contactKey": f"{prefix}-contact-{i}",
            "eventId": event_id_for(execution),
            "activityId": activity,
            "subscriptionIds": [f"s-{execution}"],  # what the render found
            "args": {
                "templateId": template_id,
                "FirstName": f"N{i}",
                "subscriptionId": f"s-{execution}",
                **args,
            },
        }
        assert rt.ledger.claim("default", execution, record)
        previous = State.QUEUED
        for state in states or (State.ACCEPTED,):
            assert rt.ledger.transition("default", execution, state, (previous,))[0]
            previous = state
        ids.append(execution)
    return ids


def jobs(rt, tenant="default"):
    return event_jobs.list_jobs(rt.redis, tenant)


def run(rt, job_id):
    """Every step of the job, in order, as the tasks would send them."""
    todo = [(event_jobs.PLAN, 0)]
    while todo:
        start, end = todo.pop(0)
        todo.extend(event_jobs.step(rt, "default", job_id, start, end))


def rokt() -> responses.RequestsMock:
    """Rokt mocked: its token, then what each test adds."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.post(ROKT_TOKEN, json={"access_token": "t", "expires_in": 3600})
    return mock


# -- auth ------------------------------------------------------------------------------------

ROUTES = [
    ("PUT", "/templates/{t}?applyToSent=true", TEMPLATE),
    ("GET", "/templates/{t}/sent", None),
    ("POST", "/templates/{t}/cancel", {}),
    ("POST", "/templates/{t}/restore", {}),
    ("POST", "/events/remove", {"contactKey": "e-contact-0"}),
    ("GET", "/event-jobs", None),
    ("GET", "/event-jobs/{job}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_needs_a_key_or_session_of_this_tenant(app, client, rt, steps, method, path, body):
    template_id = create(client)
    path_to(rt, template_id, 1)
    # a job to name (a withdrawal: a correction of the template would hold its edits back)
    job = event_jobs.start_job(rt, "default", JobKind.WITHDRAW, started_by="setup", contact_key="e-contact-0")
    url = BASE + path.format(t=template_id, job=job.job_id)
    other_key = apikeys.create_key(rt.redis, "other", "theirs")
    anonymous = app.test_client()
    for headers in (
        {},
        {"Authorization": "Bearer rsk_" + "A" * 43},
        {"Authorization": f"Bearer {other_key}"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        response = anonymous.open(url, method=method, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.json)
        assert response.json["error"] == "unauthorized"
    assert [j.job_id for j in jobs(rt)] == [job.job_id] and steps == []
    assert "archivedAt" not in get_template(rt.redis, "default", template_id)
    # this tenant's key is answered: the 401s were the auth's, not a missing route's
    assert client.open(url, method=method, json=body).status_code in (200, 202)


# -- PUT /templates/<id> with applyToSent ------------------------------------------------------


def test_an_edit_without_apply_to_sent_changes_only_the_template(client, rt, steps):
    template_id = create(client)
    path_to(rt, template_id, 2)
    for n, query in enumerate(({}, {"applyToSent": "false"}, {"applyToSent": "0"})):
        edited = {**TEMPLATE, "title": f"Saturday {n}"}
        response = client.put(f"{BASE}/templates/{template_id}", query_string=query, json=edited)
        assert response.status_code == 200, response.json
        assert "job" not in response.json and response.json["title"] == f"Saturday {n}"
    assert jobs(rt) == [] and steps == []


def test_an_edit_applied_to_sent_events_starts_a_correction_recorded_with_the_keys_id(client, rt, key, steps):
    template_id = create(client)
    path_to(rt, template_id, 2)
    edited = {**TEMPLATE, "title": "Sale starts Saturday, {{FirstName}}"}
    response = client.put(
        f"{BASE}/templates/{template_id}", query_string={"applyToSent": "true"}, json=edited
    )
    assert response.status_code == 200, response.json
    assert response.json["title"] == edited["title"]
    job = response.json["job"]
    assert (job["kind"], job["state"], job["templateId"]) == ("correct", "planning", template_id)
    (key_id,) = [item["id"] for item in apikeys.list_keys(rt.redis, "default")]
    assert job["startedBy"] == f"API key {key_id}" and job["startedAt"]
    assert key not in response.get_data(as_text=True)  # the key's id, never the key
    assert steps == [("default", job["id"], event_jobs.PLAN)]
    assert [j.job_id for j in jobs(rt)] == [job["id"]]
    assert get_template(rt.redis, "default", template_id)["title"] == edited["title"]


def test_apply_to_sent_may_come_in_the_body_and_is_not_stored_with_the_template(client, rt, steps):
    template_id = create(client)
    response = client.put(f"{BASE}/templates/{template_id}", json={**TEMPLATE, "applyToSent": True})
    assert response.status_code == 200, response.json
    assert response.json["job"]["kind"] == "correct" and "applyToSent" not in response.json
    assert "applyToSent" not in get_template(rt.redis, "default", template_id)
    assert [start for _t, _job, start in steps] == [event_jobs.PLAN]


@pytest.mark.parametrize(
    ("query", "body_value"),
    [({"applyToSent": "maybe"}, None), ({"applyToSent": "2"}, None)]
    + [(None, value) for value in ("maybe", 2, None, [True], {"yes": 1})],
)
def test_apply_to_sent_not_a_boolean_is_a_400_naming_it_and_changes_nothing(
    client, rt, steps, query, body_value
):
    template_id = create(client)
    body = {**TEMPLATE, "title": "Changed"}
    if query is None:
        body["applyToSent"] = body_value
    response = client.put(f"{BASE}/templates/{template_id}", query_string=query or {}, json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_payload" and "applyToSent" in response.json["fields"]
    assert get_template(rt.redis, "default", template_id)["title"] == TEMPLATE["title"]
    assert jobs(rt) == [] and steps == []


def test_apply_to_sent_with_an_unknown_or_invalid_template_starts_nothing(client, rt, steps):
    unknown = client.put(f"{BASE}/templates/tpl-nope", query_string={"applyToSent": "true"}, json=TEMPLATE)
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"
    template_id = create(client)
    bad = {**TEMPLATE, "title": "Hi {{Name"}
    invalid = client.put(f"{BASE}/templates/{template_id}", query_string={"applyToSent": "true"}, json=bad)
    assert invalid.status_code == 400 and "title" in invalid.json["fields"]
    assert jobs(rt) == [] and steps == []


@responses.activate
@pytest.mark.parametrize(
    ("user", "started_by"), [(True, "Marketing Cloud user 7"), (False, "Marketing Cloud user (unnamed)")]
)
def test_a_job_started_in_a_session_records_the_marketing_cloud_user(
    app, client, rt, steps, user, started_by
):
    answer = context()  # its user's id is 7
    if not user:
        del answer["user"]
    responses.post(SFMC_TOKEN, json=OUR_TOKEN)
    responses.get(SFMC_CONTEXT, json=answer)
    browser = app.test_client()
    session = browser.post(f"{BASE}/session", json={"fuel2token": FUEL2TOKEN})
    assert session.status_code == 200, session.json
    browser.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {session.json['token']}"
    template_id = create(client)
    response = browser.put(
        f"{BASE}/templates/{template_id}", query_string={"applyToSent": "1"}, json=TEMPLATE
    )
    assert response.status_code == 200, response.json
    assert response.json["job"]["startedBy"] == started_by
    run(rt, response.json["job"]["id"])  # done: the template takes a cancel now
    cancel = browser.post(f"{BASE}/templates/{template_id}/cancel", json={})
    assert cancel.json["startedBy"] == started_by
    assert [j.fields["startedBy"] for j in jobs(rt)] == [started_by, started_by]


def test_the_first_step_goes_to_the_event_jobs_queue_as_a_task_the_worker_accepts(client, rt, sent_tasks):
    template_id = create(client)
    response = client.post(f"{BASE}/templates/{template_id}/cancel", json={})
    assert response.status_code == 202, response.json
    (task,) = sent_tasks  # checked against the registered task's signature by the fixture
    assert task.name == EVENT_JOB_STEP_TASK and task.queue == EVENT_JOBS_QUEUE
    assert task.args == ["default", response.json["id"], event_jobs.PLAN, 0]


# -- GET /templates/<id>/sent ----------------------------------------------------------------


def test_sent_counts_the_events_rokt_holds_of_that_template_alone(client, rt):
    template_id, other = create(client), create(client, title="Other")
    path_to(rt, template_id, 2, prefix="a")
    path_to(rt, template_id, 1, State.ACCEPTED, State.CONFIRMED, prefix="c")
    path_to(rt, template_id, 1, State.ACCEPTED, State.CONFIRMED, State.UPDATED, prefix="u")
    path_to(rt, template_id, 1, State.ACCEPTED, State.REMOVED, prefix="r")  # the subscriber took it out
    path_to(rt, template_id, 1, State.FAILED, prefix="f")
    path_to(rt, template_id, 1, State.NO_SUBSCRIPTION, prefix="n")
    rt.ledger.claim(
        "default", "queued", {"eventId": event_id_for("queued"), "args": {"templateId": template_id}}
    )
    path_to(rt, other, 1, prefix="o")
    before = client.get(f"{BASE}/templates/{template_id}/sent")
    assert before.status_code == 200
    assert before.json == {"templateId": template_id, "archived": False, "held": 4, "beyondRetention": 0}
    flush_history(rt, "default", consumer="c", max_wait=0)  # the records go to the history store
    after = client.get(f"{BASE}/templates/{template_id}/sent").json
    assert after == {"templateId": template_id, "archived": False, "held": 4, "beyondRetention": 0}
    assert client.get(f"{BASE}/templates/{other}/sent").json["held"] == 1
    unknown = client.get(f"{BASE}/templates/tpl-nope/sent")
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"


def test_sent_counts_the_events_whose_record_is_past_retention(client, rt):
    template_id = create(client)
    path_to(rt, template_id, 3, State.ACCEPTED, State.CONFIRMED)
    flush_history(rt, "default", consumer="c", max_wait=0)  # confirmed: Redis keeps a tombstone
    rt.history.forget_executions("default", ["e0"])  # past the store's retention
    body = client.get(f"{BASE}/templates/{template_id}/sent").json
    assert (body["held"], body["beyondRetention"]) == (2, 1)


# -- POST /templates/<id>/cancel, /restore -------------------------------------------------------


def test_a_cancel_archives_the_template_and_starts_a_job(client, rt, steps):
    template_id = create(client)
    path_to(rt, template_id, 3)
    response = client.post(
        f"{BASE}/templates/{template_id}/cancel", json={"reason": "legal asked", "confirmCount": 3}
    )
    assert response.status_code == 202, response.json
    job = response.json
    assert (job["kind"], job["templateId"], job["reason"]) == ("cancel", template_id, "legal asked")
    assert steps == [("default", job["id"], event_jobs.PLAN)]
    stored = get_template(rt.redis, "default", template_id)
    assert stored["archivedAt"] and stored["cancelJob"] == job["id"]
    assert client.get(f"{BASE}/templates/{template_id}/sent").json["archived"] is True


def test_a_cancel_whose_count_changed_is_a_409_with_the_count_now_and_starts_nothing(client, rt, steps):
    template_id = create(client)
    path_to(rt, template_id, 3)
    shown = client.get(f"{BASE}/templates/{template_id}/sent").json["held"]
    path_to(rt, template_id, 1, prefix="late")  # one more reached a calendar meanwhile
    response = client.post(f"{BASE}/templates/{template_id}/cancel", json={"confirmCount": shown})
    assert response.status_code == 409, response.json
    assert response.json["error"] == "count_changed" and response.json["held"] == 4
    assert "archivedAt" not in get_template(rt.redis, "default", template_id)
    assert jobs(rt) == [] and steps == []
    confirmed = client.post(f"{BASE}/templates/{template_id}/cancel", json={"confirmCount": 4})
    assert confirmed.status_code == 202 and len(steps) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"because": "legal"}, "because"),
        ({"confirmCount": -1}, "confirmCount"),
        ({"confirmCount": "three"}, "confirmCount"),
        ({"confirmCount": True}, "confirmCount"),
        ({"reason": "x" * 301}, "reason"),
        ({"reason": 5}, "reason"),
    ],
)
def test_a_bad_cancel_is_a_400_naming_the_field_and_archives_nothing(client, rt, steps, body, field):
    template_id = create(client)
    response = client.post(f"{BASE}/templates/{template_id}/cancel", json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_payload" and field in response.json["fields"]
    assert "archivedAt" not in get_template(rt.redis, "default", template_id)
    assert jobs(rt) == [] and steps == []


def test_a_cancel_without_a_json_object_or_of_an_unknown_template_is_refused(client, rt, steps):
    template_id = create(client)
    no_json = client.post(f"{BASE}/templates/{template_id}/cancel", data="x", content_type="text/plain")
    assert no_json.status_code == 400 and no_json.json["error"] == "invalid_json"
    listed = client.post(f"{BASE}/templates/{template_id}/cancel", json=[])
    assert listed.status_code == 400 and listed.json["fields"] == {"_schema": ["not an object"]}
    unknown = client.post(f"{BASE}/templates/tpl-nope/cancel", json={})
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"
    assert jobs(rt) == [] and steps == []


def test_a_restored_template_serves_future_contacts_and_its_cancelled_events_stay_cancelled(
    client, rt, steps
):
    template_id = create(client)
    (execution,) = path_to(rt, template_id, 1)
    job_id = client.post(f"{BASE}/templates/{template_id}/cancel", json={"reason": "wrong date"}).json["id"]
    with rokt() as mock:
        delete = mock.delete(
            f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(execution)}", status=202
        )
        run(rt, job_id)
        assert delete.call_count == 1
    assert rt.ledger.get("default", execution).status == State.CANCELLED
    response = client.post(f"{BASE}/templates/{template_id}/restore", json={})
    assert response.status_code == 200, response.json
    assert "archivedAt" not in response.json and response.json["id"] == template_id
    assert "archivedAt" not in get_template(rt.redis, "default", template_id)
    assert client.get(f"{BASE}/templates/{template_id}/sent").json | {"templateId": ""} == {
        "templateId": "",
        "archived": False,
        "held": 0,
        "beyondRetention": 0,
    }
    assert rt.ledger.get("default", execution).status == State.CANCELLED
    unknown = client.post(f"{BASE}/templates/tpl-nope/restore", json={})
    assert unknown.status_code == 404 and unknown.json["error"] == "not_found"


# -- POST /events/remove ---------------------------------------------------------------------


def test_a_withdrawal_of_one_contact_starts_a_job_that_names_no_one(client, rt, steps):
    template_id = create(client)
    path_to(rt, template_id, 2)
    body = {"contactKey": "e-contact-0", "reason": "asked by the person"}
    response = client.post(f"{BASE}/events/remove", json=body)
    assert response.status_code == 202, response.json
    job = response.json
    assert (job["kind"], job["contact"], job["total"], job["reason"]) == ("withdraw", True, 1, body["reason"])
    assert "e-contact-0" not in response.get_data(as_text=True)
    assert "e-contact-0" not in json.dumps(rt.redis.hgetall(f"rsf:default:event-job:{job['id']}"))
    assert steps == [("default", job["id"], event_jobs.PLAN)]


def test_a_withdrawal_of_one_templates_events_leaves_the_contacts_others(client, rt, steps):
    first, second = create(client), create(client, title="Another sale")
    path_to(rt, first, 1, prefix="a")
    rt.ledger.claim(
        "default",
        "b0",
        {
            "contactKey": "a-contact-0",
            "eventId": event_id_for("b0"),
            "subscriptionIds": ["s-b0"],
            "args": {"templateId": second, "subscriptionId": "s-b0"},
        },
    )
    rt.ledger.transition("default", "b0", State.ACCEPTED)
    response = client.post(f"{BASE}/events/remove", json={"contactKey": "a-contact-0", "templateId": second})
    assert response.status_code == 202, response.json
    assert response.json["total"] == 1
    with rokt() as mock:
        removes = {
            execution: mock.delete(
                f"https://rokt.test/v2/subscription/acct/s-{execution}/subscriptionevent/{event_id_for(execution)}",
                status=202,
            )
            for execution in ("a0", "b0")
        }
        run(rt, response.json["id"])
    assert {execution: call.call_count for execution, call in removes.items()} == {"a0": 0, "b0": 1}
    assert rt.ledger.get("default", "a0").status == State.ACCEPTED
    assert rt.ledger.get("default", "b0").status == State.WITHDRAWN


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "contactKey"),
        ({"reason": "asked"}, "contactKey"),
        ({"contactKey": ""}, "contactKey"),
        ({"contactKey": 5}, "contactKey"),
        ({"contactKey": "x" * 255}, "contactKey"),
        ({"contactKey": "C1", "templateId": ""}, "templateId"),
        ({"contactKey": "C1", "email": "a@b.test"}, "email"),
        ({"contactKey": "C1", "reason": "x" * 301}, "reason"),
    ],
)
def test_a_bad_withdrawal_is_a_400_naming_the_field(client, rt, steps, body, field):
    response = client.post(f"{BASE}/events/remove", json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_payload" and field in response.json["fields"]
    assert jobs(rt) == [] and steps == []


def test_a_withdrawal_may_name_a_template_no_longer_stored(client, rt, steps):
    """Its events may still be in the contact's calendar after the template was deleted: the
    withdrawal looks for them by the id the executions recorded (here: none)."""
    response = client.post(f"{BASE}/events/remove", json={"contactKey": "C1", "templateId": "tpl-gone"})
    assert response.status_code == 202, response.json
    assert response.json["templateId"] == "tpl-gone" and response.json["total"] == 0
    assert [job.job_id for job in jobs(rt)] == [response.json["id"]]


# -- GET /event-jobs, /event-jobs/<id> -----------------------------------------------------------


def test_jobs_are_listed_newest_first_and_the_running_ones_alone_on_request(client, rt, steps):
    templates = [create(client, title=f"Sale {n}") for n in range(3)]
    started = []
    for template_id in templates:
        started.append(client.post(f"{BASE}/templates/{template_id}/cancel", json={}).json["id"])
        time.sleep(0.002)  # distinct start times
    run(rt, started[0])  # nothing held: its last look ends it
    listed = client.get(f"{BASE}/event-jobs").json["items"]
    assert [j["id"] for j in listed] == started[::-1]
    assert [j["state"] for j in listed] == ["planning", "planning", "done"]
    running = client.get(f"{BASE}/event-jobs", query_string={"running": "true"}).json["items"]
    assert [j["id"] for j in running] == [started[2], started[1]]
    newest = client.get(f"{BASE}/event-jobs", query_string={"limit": 1}).json["items"]
    assert [j["id"] for j in newest] == [started[2]]
    theirs = apikeys.create_key(rt.redis, "other", "theirs")
    other = client.get("/t/other/api/event-jobs", headers={"Authorization": f"Bearer {theirs}"})
    assert other.status_code == 200 and other.json["items"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"running": "maybe"}, "running"),
    ],
)
def test_a_bad_jobs_query_is_a_400_naming_the_field(client, query, field):
    response = client.get(f"{BASE}/event-jobs", query_string=query)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "invalid_payload" and field in response.json["fields"]


def test_a_job_shows_its_progress_and_why_it_kept_executions(client, rt, steps):
    template_id = create(client)
    path_to(rt, template_id, 1, prefix="city", City="Lyon")
    path_to(rt, template_id, 1, prefix="none")
    edited = {**TEMPLATE, "title": "{{FirstName}}, the sale in {{City}} starts Saturday"}
    job_id = client.put(f"{BASE}/templates/{template_id}?applyToSent=true", json=edited).json["job"]["id"]
    with rokt() as mock:
        update = mock.post("https://rokt.test/v1/subscriptionevent/acct/update", status=202, json={})
        run(rt, job_id)
        assert update.call_count == 1
    response = client.get(f"{BASE}/event-jobs/{job_id}")
    assert response.status_code == 200
    job = response.json
    assert (job["state"], job["total"], job["done"], job["toDo"], job["failed"]) == ("done", 2, 2, 0, 0)
    assert job["outcomes"]["updated"] == 1 and job["outcomes"]["kept"] == 1 and job["skipped"] == {"kept": 1}
    assert job["finishedAt"] and list(job["notes"]) == ["none0"] and "City" in job["notes"]["none0"]


def test_an_unknown_job_or_another_tenants_is_a_404(client, rt):
    theirs = event_jobs.start_job(rt, "other", JobKind.CANCEL, started_by="them", activity_id="act-9")
    for job_id in ("job-nope", "j" * 41, theirs.job_id):
        response = client.get(f"{BASE}/event-jobs/{job_id}")
        assert response.status_code == 404, (job_id, response.json)
        assert response.json["error"] == "not_found"


def test_a_restore_waits_for_the_cancel_to_end_so_its_last_look_deletes_nothing_sent_after(client, rt, steps):
    template_id = create(client)
    (cancelled,) = path_to(rt, template_id, 1)
    job_id = client.post(f"{BASE}/templates/{template_id}/cancel", json={}).json["id"]
    early = client.post(f"{BASE}/templates/{template_id}/restore", json={})
    assert early.status_code == 409, early.json
    assert early.json["error"] == "cancel_running" and early.json["jobId"] == job_id
    assert get_template(rt.redis, "default", template_id)["archivedAt"]  # still archived
    with rokt() as mock:
        mock.delete(f"https://rokt.test/v1/subscriptionevent/acct/{event_id_for(cancelled)}", status=202)
        run(rt, job_id)
    assert client.post(f"{BASE}/templates/{template_id}/restore", json={}).status_code == 200
    (later,) = path_to(rt, template_id, 1, prefix="after")  # a contact sent the event after the restore
    with responses.RequestsMock():  # nothing more is deleted: the job is over
        assert event_jobs.step(rt, "default", job_id, event_jobs.PLAN) == []
    assert rt.ledger.get("default", later).status == State.ACCEPTED


def test_a_template_under_a_running_correction_is_neither_edited_nor_corrected_again(client, rt, steps):
    template_id = create(client)
    first = client.put(f"{BASE}/templates/{template_id}?applyToSent=true", json=TEMPLATE)
    assert first.status_code == 200, first.json
    for method, path, body in (
        ("PUT", f"/templates/{template_id}?applyToSent=true", {**TEMPLATE, "title": "Another"}),
        ("PUT", f"/templates/{template_id}", {**TEMPLATE, "title": "Another"}),
        ("POST", f"/templates/{template_id}/cancel", {}),
    ):
        refused = client.open(BASE + path, method=method, json=body)
        assert refused.status_code == 409 and refused.json["error"] == "job_running", (path, refused.json)
        assert refused.json["jobId"] == first.json["job"]["id"]
    assert get_template(rt.redis, "default", template_id)["title"] == TEMPLATE["title"]
