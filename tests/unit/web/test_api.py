"""The activity UI's API: auth on every route, templates CRUD with search and paging, preview,
and an activity's live counts from the ledger."""

from dataclasses import replace

import pytest

from pipeline.journeys.render import render_event
from pipeline.stores.ledger import execution_id
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import State
from pipeline.web import create_app

TEMPLATE = {
    "name": "Winter sale",
    "title": "🎉 {{FirstName}}, the Acme winter sale now 🎉",
    "description": "Shop at https://acme.test/sale",
    "location": "Swipe now: https://acme.test/s",
    "start": "2026-12-01T09:00:00",
    "end": '{{End | default: "2026-12-01T10:00:00"}}',
    "timezone": "Europe/Paris",
}
BASE = "/t/default/api"


def _never(*_args):
    raise AssertionError("the API enqueues nothing")


@pytest.fixture
def rt(settings, fake_redis):
    """The unit tenant `default` and a second one, `other`, on the same Redis."""
    other = replace(settings.tenants["default"], name="other")
    return Runtime(replace(settings, tenants={**settings.tenants, "other": other}), fake_redis)


@pytest.fixture
def app(rt):
    return create_app(rt, enqueue_webhook=_never)


@pytest.fixture
def key(rt):
    return apikeys.create_key(rt.redis, "default", "test")


@pytest.fixture
def client(app, key):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def create(client, **changes):
    response = client.post(f"{BASE}/templates", json={**TEMPLATE, **changes})
    assert response.status_code == 201, response.json
    return response.json


ROUTES = [
    ("get", "/templates"),
    ("post", "/templates"),
    ("get", "/templates/tpl-x"),
    ("put", "/templates/tpl-x"),
    ("delete", "/templates/tpl-x"),
    ("post", "/preview"),
    ("get", "/activities/act-1/stats"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_key_or_session_of_this_tenant(app, rt, method, path):
    client = app.test_client()
    other_key = apikeys.create_key(rt.redis, "other", "theirs")
    for headers in (
        {},
        {"Authorization": "Bearer rsk_" + "A" * 43},
        {"Authorization": f"Bearer {other_key}"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        response = getattr(client, method)(f"{BASE}{path}", json={}, headers=headers)
        assert response.status_code == 401, (headers, response.json)
        assert response.json["error"] == "unauthorized"
    # the other tenant's key opens the other tenant's API
    response = client.get("/t/other/api/templates", headers={"Authorization": f"Bearer {other_key}"})
    assert response.status_code == 200


def test_a_tenant_never_reads_another_tenants_templates(client, rt):
    mine = create(client)
    theirs_key = apikeys.create_key(rt.redis, "other", "theirs")
    theirs = client.get("/t/other/api/templates", headers={"Authorization": f"Bearer {theirs_key}"})
    assert theirs.json["total"] == 0
    got = client.get(
        f"/t/other/api/templates/{mine['id']}", headers={"Authorization": f"Bearer {theirs_key}"}
    )
    assert got.status_code == 404


def test_create_get_and_list_items_carry_placeholders(client):
    created = create(client)
    assert created["id"].startswith("tpl-")
    assert created["createdAt"] == created["updatedAt"]
    assert created["placeholders"] == [
        {"name": "FirstName", "default": None},
        {"name": "End", "default": "2026-12-01T10:00:00"},
    ]
    got = client.get(f"{BASE}/templates/{created['id']}")
    assert got.status_code == 200 and got.json == created
    assert client.get(f"{BASE}/templates/tpl-nope").status_code == 404
    assert client.get(f"{BASE}/templates/tpl-nope").json["error"] == "not_found"


def test_list_is_newest_first_searchable_and_paged(client):
    ids = [create(client, name=f"Campaign {i}", title=f"Event {i} {{{{FirstName}}}}")["id"] for i in range(5)]
    create(client, name="other", title="The SPRING launch")
    listed = client.get(f"{BASE}/templates", query_string={"perPage": 2, "page": 1}).json
    assert listed["total"] == 6 and listed["page"] == 1 and listed["perPage"] == 2
    assert [t["title"] for t in listed["items"]] == ["The SPRING launch", "Event 4 {{FirstName}}"]
    page3 = client.get(f"{BASE}/templates", query_string={"perPage": 2, "page": 3}).json
    assert [t["id"] for t in page3["items"]] == [ids[1], ids[0]]
    assert client.get(f"{BASE}/templates", query_string={"page": 9}).json["items"] == []

    by_title = client.get(f"{BASE}/templates", query_string={"q": "spring"}).json
    assert by_title["total"] == 1 and by_title["items"][0]["name"] == "other"
    by_name = client.get(f"{BASE}/templates", query_string={"q": "CAMPAIGN 3"}).json
    assert [t["id"] for t in by_name["items"]] == [ids[3]]
    defaults = client.get(f"{BASE}/templates").json
    assert defaults["page"] == 1 and defaults["perPage"] == 20 and len(defaults["items"]) == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page": 0}, "page"),
        ({"perPage": 101}, "perPage"),
        ({"perPage": 0}, "perPage"),
        ({"page": "x"}, "page"),
    ],
)
def test_bad_paging_names_the_field(client, query, field):
    response = client.get(f"{BASE}/templates", query_string=query)
    assert response.status_code == 400
    assert field in response.json["fields"]


def test_create_and_update_name_the_bad_field(client):
    response = client.post(f"{BASE}/templates", json={**TEMPLATE, "timezone": "Mars/Base"})
    assert response.status_code == 400 and "timezone" in response.json["fields"]
    response = client.post(f"{BASE}/templates", json={"title": "x"})
    assert response.status_code == 400 and {"start", "timezone"} <= set(response.json["fields"])
    assert client.post(f"{BASE}/templates", data="nope", content_type="application/json").status_code == 400
    assert client.post(f"{BASE}/templates", json=[1]).json["fields"] == {"_schema": ["not an object"]}
    created = create(client)
    response = client.put(f"{BASE}/templates/{created['id']}", json={**TEMPLATE, "title": "Hi {{Name"})
    assert response.status_code == 400 and "title" in response.json["fields"]


def test_update_keeps_id_and_created_at(client):
    created = create(client)
    response = client.put(f"{BASE}/templates/{created['id']}", json={**TEMPLATE, "title": "New {{Who}}"})
    assert response.status_code == 200
    updated = response.json
    assert updated["id"] == created["id"] and updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] > created["updatedAt"]
    assert updated["title"] == "New {{Who}}"
    assert updated["placeholders"][0] == {"name": "Who", "default": None}
    assert client.get(f"{BASE}/templates/{created['id']}").json == updated
    assert client.put(f"{BASE}/templates/tpl-nope", json=TEMPLATE).status_code == 404
    # the item as GET returned it can be sent back; an id of another template cannot
    assert client.put(f"{BASE}/templates/{created['id']}", json=updated).status_code == 200
    other = client.put(f"{BASE}/templates/{created['id']}", json={**updated, "id": "tpl-other"})
    assert other.status_code == 400 and "id" in other.json["fields"]


def test_delete_refuses_while_an_execution_is_open(client, rt):
    created = create(client)
    record = {"activityId": "act-1", "eventId": "ev-1", "args": {"templateId": created["id"]}}
    rt.ledger.claim("default", "e1", record)
    response = client.delete(f"{BASE}/templates/{created['id']}")
    assert response.status_code == 409
    assert response.json["error"] == "in_use" and response.json["openExecutions"] == 1
    assert client.get(f"{BASE}/templates/{created['id']}").status_code == 200

    rt.ledger.transition("default", "e1", State.ACCEPTED)
    response = client.delete(f"{BASE}/templates/{created['id']}")
    assert response.status_code == 204 and response.data == b""
    assert client.get(f"{BASE}/templates/{created['id']}").status_code == 404
    assert client.delete(f"{BASE}/templates/{created['id']}").status_code == 404


def test_preview_of_a_stored_template_matches_the_renderer(client):
    created = create(client)
    response = client.post(
        f"{BASE}/preview", json={"templateId": created["id"], "values": {"FirstName": "Ava"}}
    )
    assert response.status_code == 200
    body = response.json
    assert body["outcome"] == "ok" and body["reason"] == ""
    assert body["event"] == render_event(created, {"FirstName": "Ava"}, "preview")
    assert body["lockScreen"]["ios"]["title"] == "🎉 Ava, the Acme winter sale now 🎉"
    assert body["lockScreen"]["android"]["title"].endswith("…")
    codes = {a["code"] for a in body["advice"]}
    assert "emoji_around_title" not in codes and "first_name_in_title" not in codes
    assert "urgency_in_location" not in codes and "link_in_location" not in codes
    assert "title_length" in codes


def test_preview_of_an_inline_template_reports_missing_fields_and_advice(client):
    template = {"title": "Sale", "start": "2026-12-01T09:00:00", "timezone": "UTC", "location": "{{Store}}"}
    body = client.post(f"{BASE}/preview", json={"template": template, "values": {}}).json
    assert body["event"] is None and body["outcome"] == "missing_field"
    assert "Store" in body["reason"]
    codes = {a["code"] for a in body["advice"]}
    assert {"emoji_around_title", "first_name_in_title", "urgency_in_location", "link_in_location"} <= codes

    bad_date = {**template, "start": "{{When}}", "location": "x"}
    body = client.post(f"{BASE}/preview", json={"template": bad_date, "values": {"When": "soon"}}).json
    assert body["outcome"] == "failed" and "start" in body["reason"] and body["event"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"values": {}}, "templateId"),
        ({"templateId": "tpl-1", "template": TEMPLATE}, "templateId"),
        ({"templateId": "tpl-1", "values": {"A": 1}}, "values"),
        ({"templateId": "tpl-1", "values": ["A"]}, "values"),
        ({"template": {**TEMPLATE, "timezone": "Nowhere"}}, "template"),
        ({"templateId": "tpl-1", "extra": 1}, "extra"),
    ],
)
def test_bad_preview_requests_name_the_field(client, payload, field):
    response = client.post(f"{BASE}/preview", json=payload)
    assert response.status_code == 400, response.json
    assert field in response.json["fields"]


def test_preview_of_an_unknown_template_is_404(client):
    response = client.post(f"{BASE}/preview", json={"templateId": "tpl-nope"})
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_activity_stats_follow_claims_and_transitions(client, rt):
    ledger = rt.ledger
    empty = client.get(f"{BASE}/activities/act-1/stats").json
    assert empty == {
        "activityId": "act-1",
        "counts": {str(s): 0 for s in State},
        "topFailures": [],
        "missingFields": [],
    }
    for n in range(4):
        execution = execution_id("act-1", f"def-{n}")
        record = {"activityId": "act-1", "eventId": f"ev-{n}", "args": {"templateId": "tpl-1"}}
        ledger.claim("default", execution, record)
    ledger.claim("default", "x", {"activityId": "act-2", "args": {}})
    ledger.transition("default", execution_id("act-1", "def-0"), State.ACCEPTED)
    ledger.transition("default", execution_id("act-1", "def-1"), State.FAILED, error="Rokt said 400")
    ledger.transition("default", execution_id("act-1", "def-2"), State.NO_SUBSCRIPTION)
    body = client.get(f"{BASE}/activities/act-1/stats").json
    assert body["counts"] == {
        "queued": 1,
        "accepted": 1,
        "confirmed": 0,
        "no_subscription": 1,
        "missing_field": 0,
        "failed": 1,
        "removed": 0,
        "updated": 0,
        "cancelled": 0,
        "withdrawn": 0,
    }
    assert body["topFailures"] == [{"reason": "Rokt said 400", "count": 1}]
    theirs = apikeys.create_key(rt.redis, "other", "theirs")
    other = client.get("/t/other/api/activities/act-1/stats", headers={"Authorization": f"Bearer {theirs}"})
    assert other.json["counts"]["queued"] == 0


def test_time_zones_are_stored_as_listed_and_empty_or_unknown_is_a_json_error(client):
    listed = client.get(f"{BASE}/timezones").json["items"]
    assert {"id": "Australia/Sydney", "windows": "AUS Eastern Standard Time"} in listed
    assert all(set(item) == {"id", "windows"} and item["windows"] for item in listed)
    for typed in ("Sydney", "australia/sydney", "Australia/Sydney"):
        assert create(client, timezone=typed)["timezone"] == "Australia/Sydney"
    for typed, words in (("", "required"), ("Atlantis", "unknown time zone 'Atlantis'")):
        response = client.post(f"{BASE}/templates", json={**TEMPLATE, "timezone": typed})
        assert response.status_code == 400 and response.json["error"] == "invalid_template"
        assert words in response.json["fields"]["timezone"][0]
    response = client.post(f"{BASE}/templates", json={**TEMPLATE, "timezone": 7})
    assert response.status_code == 400 and "timezone" in response.json["fields"]


def test_placeholder_errors_name_the_placeholder_and_the_rule(client):
    response = client.post(
        f"{BASE}/templates",
        json={**TEMPLATE, "title": "Hi {{FirstName}, {{Home City}}", "location": "{{City | default: 'you'}}"},
    )
    assert response.status_code == 400
    assert response.json["fields"] == {
        "title": ['{{FirstName}: not closed; end it with "}}"'],
        "location": [
            "{{City | default: 'you'}}: put the default in straight double quotes: "
            '{{City | default: "you"}}'
        ],
    }
    created = create(client, title="Deals in {{Home City}}")  # a name with a space is fine
    assert created["placeholders"] == [
        {"name": "Home City", "default": None},
        {"name": "End", "default": "2026-12-01T10:00:00"},
    ]


def test_stats_name_the_missing_fields(client, rt):
    for n, reason in enumerate(
        ["missing value for City", "missing value for City", "missing value for A, Home City"]
    ):
        execution = execution_id("act-9", f"def-{n}")
        rt.ledger.claim("default", execution, {"activityId": "act-9", "eventId": f"ev-{n}", "args": {}})
        rt.ledger.transition("default", execution, State.MISSING_FIELD, error=reason)
    body = client.get(f"{BASE}/activities/act-9/stats").json
    assert body["counts"]["missing_field"] == 3 and body["topFailures"] == []
    assert body["missingFields"] == [
        {"reason": "missing value for City", "count": 2, "fields": ["City"]},
        {"reason": "missing value for A, Home City", "count": 1, "fields": ["A", "Home City"]},
    ]
