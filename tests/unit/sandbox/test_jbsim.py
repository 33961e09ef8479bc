"""jbsim drives execute through the activity as our UI saves it (docs/http-contract.md), resolved per
contact the way Journey Builder resolves bindings: never through hand-built inArguments."""

import copy
import json

import pytest

from pipeline.journeys.render import render_event
from pipeline.journeys.templates import create_template
from pipeline.sandbox import jbsim
from pipeline.stores.ledger import execution_id
from pipeline.web import create_app
from schemas.jb_execute import ExecuteSchema, merge_in_arguments
from tests.unit.conftest import JWT_SECRET, IntakeEntries

TEMPLATE_ID = "tpl-0123456789abcdef"
KEY = jbsim.DEMO_EVENT_KEY
OWNED = ("name", "metaData", "arguments")  # what the UI may change; all else goes back untouched


@pytest.fixture
def config(settings):
    return jbsim.activity_config(settings, "default")


@pytest.fixture
def saved(config):
    return jbsim.demo_activity(TEMPLATE_ID, KEY, jbsim.RELEASE_EVENT_KEY, config=config, activity_id="act-9")


def contact(**changes):
    values = {
        "key": "C0000042",
        "first_name": "Ava",
        "email": "ava@example.com",
        "city": "Sydney",
        "has_subscription": True,
        "subscription_id": "sub-42",
    }
    return jbsim.Contact(**{**values, **changes})


# --- resolve_in_arguments ------------------------------------------------------------------


def test_a_plain_binding_resolves_to_its_value():
    args = jbsim.resolve_in_arguments(
        [{"contactKey": "{{Contact.Key}}"}, {"FirstName": "{{Event.DE-1.FirstName}}"}],
        {"Contact.Key": "C1", "Event.DE-1.FirstName": "Ava"},
    )
    assert args == {"contactKey": "C1", "FirstName": "Ava"}


def test_a_quoted_field_with_a_space_resolves_by_its_quoted_path():
    fields = {'Event.DE-1."Home City"': "Perth", "Event.DE-1.Home City": "wrong"}
    assert jbsim.resolve_in_arguments([{"City": '{{Event.DE-1."Home City"}}'}], fields) == {"City": "Perth"}


def test_a_binding_without_a_value_resolves_to_empty_text():
    args = jbsim.resolve_in_arguments(
        [{"subscriptionId": jbsim.DEFAULT_SUBSCRIPTION_BINDING}, {"City": "{{Event.DE-1.City}}"}],
        {"Contact.Key": "C1"},
    )
    assert args == {"subscriptionId": "", "City": ""}


def test_literals_pass_through_unchanged():
    args = jbsim.resolve_in_arguments(
        [{"templateId": TEMPLATE_ID}, {"Brand": "Rokt | sale"}, {"releaseAfterSeconds": "3600"}],
        {"Contact.Key": "C1"},
    )
    assert args == {"templateId": TEMPLATE_ID, "Brand": "Rokt | sale", "releaseAfterSeconds": "3600"}


# --- the saved activity ----------------------------------------------------------------------


def test_the_demo_activity_saves_the_fixed_keys_in_contract_order_then_the_bound_placeholders(saved):
    assert saved["arguments"]["execute"]["inArguments"] == [
        {"contactKey": "{{Contact.Key}}"},
        {"templateId": TEMPLATE_ID},
        {"subscriptionId": '{{Contact.Attribute."Calendar Subscription".CalendarSubscriptionId}}'},
        {"releaseEventDefinitionKey": jbsim.RELEASE_EVENT_KEY},
        {"releaseOn": "confirmed"},
        {"releaseAfterSeconds": "3600"},
        {"FirstName": "{{Event.DEAudience-rokt-demo.FirstName}}"},
        {"City": '{{Event.DEAudience-rokt-demo."Home City"}}'},
    ]
    merged = merge_in_arguments(saved["arguments"]["execute"]["inArguments"])
    assert "Brand" not in merged  # left on its template default
    assert all(isinstance(value, str) for value in merged.values())


def test_the_activity_is_named_after_the_template(saved):
    assert saved["name"] == jbsim.DEMO_TEMPLATE["name"] == "Demo: summer sale reminder"
    untitled = {**jbsim.DEMO_TEMPLATE, "name": " "}
    assert jbsim.activity_name(untitled) == "🎉, your Rokt summer sale starts now"
    quoted = {"title": 'Meet {{Host | default: "the \\"A\\" team"}} in {{City}}!'}
    assert jbsim.activity_name(quoted) == 'Meet the "A" team in!'
    assert jbsim.activity_name({"title": "  {{FirstName}} " + "x" * 150}) == "x" * 100


def test_the_demo_activity_changes_only_what_the_ui_owns(config, saved):
    received = jbsim.journey_activity(config, "act-9")
    assert received["metaData"]["isConfigured"] is False
    assert saved["metaData"] == {**received["metaData"], "isConfigured": True}
    assert {k: v for k, v in saved.items() if k not in OWNED} == {
        k: v for k, v in received.items() if k not in OWNED
    }
    execute_received = {k: v for k, v in received["arguments"]["execute"].items() if k != "inArguments"}
    assert {k: v for k, v in saved["arguments"]["execute"].items() if k != "inArguments"} == execute_received
    assert saved["schema"] == config["schema"]  # kept as received
    assert saved["arguments"]["execute"]["url"] == "http://127.0.0.1:8000/t/default/activity/execute"
    assert saved["id"] == "act-9" and saved["key"] == "REST-1"


def test_saving_a_saved_activity_again_changes_nothing(config, saved):
    again = jbsim.save_activity(
        copy.deepcopy(saved),
        template=jbsim.DEMO_TEMPLATE,
        template_id=TEMPLATE_ID,
        bindings=jbsim.demo_bindings(KEY),
        release_key=jbsim.RELEASE_EVENT_KEY,
        release_on="confirmed",
    )
    assert json.dumps(again, sort_keys=True) == json.dumps(saved, sort_keys=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bindings": {"City": "{{Event.x.City}}"}}, "FirstName"),  # no binding and no default
        ({"bindings": {"FirstName": "Ava {{Contact.Key}}"}}, "fixed value"),
        ({"bindings": {"FirstName": "{{Contact.Key}} {{Contact.Key}}"}}, "fixed value"),
        ({"bindings": {"FirstName": "{{Contact.Key}}", "Nope": "x"}}, "Nope"),
        ({"template_id": ""}, "templateId"),
        ({"release_on": "sent"}, "releaseOn"),
        ({"release_after_seconds": -1}, "releaseAfterSeconds"),
    ],
)
def test_an_invalid_configuration_is_not_saved(config, changes, message):
    arguments = {
        "template": jbsim.DEMO_TEMPLATE,
        "template_id": TEMPLATE_ID,
        "bindings": jbsim.demo_bindings(KEY),
        **changes,
    }
    with pytest.raises(ValueError, match=message):
        jbsim.save_activity(jbsim.journey_activity(config), **arguments)


def test_event_bindings_quote_names_with_anything_but_letters_digits_and_underscore():
    assert jbsim.event_binding(KEY, "First_Name2") == "{{Event.DEAudience-rokt-demo.First_Name2}}"
    assert jbsim.event_binding(KEY, "Home City") == '{{Event.DEAudience-rokt-demo."Home City"}}'
    assert jbsim.event_binding(KEY, "e-mail") == '{{Event.DEAudience-rokt-demo."e-mail"}}'
    keys = [field["key"] for field in jbsim.entry_schema(KEY)["schema"]]
    assert keys == [f"Event.{KEY}.{name}" for name in ("ContactKey", "FirstName", "Home City", "Email")]


# --- the execute payload ---------------------------------------------------------------------


def test_contact_fields_carry_the_subscription_attribute_where_the_contact_has_one():
    fields = jbsim.contact_fields(contact(), KEY)
    assert fields[jbsim.SUBSCRIPTION_ATTRIBUTE] == "sub-42"
    assert fields['Event.DEAudience-rokt-demo."Home City"'] == "Sydney"
    assert fields["Contact.Key"] == fields["Event.DEAudience-rokt-demo.ContactKey"] == "C0000042"
    assert jbsim.contact_fields(contact(subscription_id=""), KEY)[jbsim.SUBSCRIPTION_ATTRIBUTE] == ""


def test_an_execute_payload_from_the_saved_activity_passes_the_execute_schema(saved):
    payload = jbsim.execute_payload(contact(city=""), saved, "journey-1", KEY)
    loaded = ExecuteSchema().load(payload)
    assert (
        loaded["args"]
        == merge_in_arguments(payload["inArguments"])
        == {
            "contactKey": "C0000042",
            "templateId": TEMPLATE_ID,
            "subscriptionId": "sub-42",
            "releaseEventDefinitionKey": jbsim.RELEASE_EVENT_KEY,
            "releaseOn": "confirmed",
            "releaseAfterSeconds": "3600",
            "FirstName": "Ava",
            "City": "",  # empty entry data resolves to "": the template's default applies
        }
    )
    assert loaded["activityId"] == payload["activityObjectID"] == "act-9"
    assert loaded["keyValue"] == "C0000042"
    again = jbsim.execute_payload(contact(), saved, "journey-1", KEY)
    assert again["definitionInstanceId"] == payload["definitionInstanceId"]  # a JB retry: same ids
    assert "{{" not in json.dumps(payload["inArguments"])


def test_the_resolved_arguments_render_the_demo_event(saved):
    args = ExecuteSchema().load(jbsim.execute_payload(contact(city=""), saved, "journey-1", KEY))["args"]
    event = render_event(jbsim.DEMO_TEMPLATE, args, "evt-1")
    assert event["title"].startswith("🎉 Ava, your Rokt summer sale")
    assert "offers for you:" in event["description"]


def test_the_saved_activity_runs_through_the_real_execute_endpoint(runtime, settings):
    template = create_template(runtime.redis, "default", jbsim.DEMO_TEMPLATE)
    activity = jbsim.demo_activity(
        template["id"],
        KEY,
        jbsim.RELEASE_EVENT_KEY,
        config=jbsim.activity_config(settings),
        activity_id="act-1",
    )
    intake = IntakeEntries(runtime.redis)
    client = create_app(runtime).test_client()
    payload = jbsim.execute_payload(contact(), activity, "journey-1", KEY)
    response = client.post(
        "/t/default/activity/execute", data=jbsim.sign(payload, JWT_SECRET), content_type="application/jwt"
    )
    assert response.status_code == 200, response.json
    execution = execution_id("act-1", payload["definitionInstanceId"])
    assert intake.calls == [("default", execution)]
    record = runtime.ledger.get("default", execution)
    assert record is not None and record.template_id == template["id"] and record.contact_key == "C0000042"
    stored = {k: record.args.get(k) for k in ("subscriptionId", "FirstName", "City", "releaseOn")}
    assert stored == {
        "subscriptionId": "sub-42",
        "FirstName": "Ava",
        "City": "Sydney",
        "releaseOn": "confirmed",
    }
    assert record.args["releaseEventDefinitionKey"] == jbsim.RELEASE_EVENT_KEY
