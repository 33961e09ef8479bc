"""Template documents are validated, naming the field."""

import pytest
from marshmallow import ValidationError

from pipeline.journeys.templates import (
    TemplateInUse,
    TemplateNotFound,
    create_template,
    delete_template,
    get_template,
    list_templates,
    placeholders,
    search_templates,
    update_template,
)
from pipeline.stores.ledger import Ledger
from pipeline.vocabulary import State
from schemas.templates import TemplateSchema


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"title": "Hi {{Name"}, "title"),
        ({"missingFieldPolicy": "guess"}, "missingFieldPolicy"),
        ({"notifyBefore": -5}, "notifyBefore"),
        ({"colour": "red"}, "colour"),
        ({"start": None}, "start"),
    ],
)
def test_invalid_templates_name_the_field(change, field):
    document = {"title": "t", "start": "2026-01-01T09:00:00", "timezone": "Pacific Standard Time", **change}
    document = {k: v for k, v in document.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        TemplateSchema().load(document)
    assert field in caught.value.messages


def test_template_defaults():
    loaded = TemplateSchema().load({"title": "t", "start": "2026-01-01T09:00:00", "timezone": "UTC"})
    assert loaded["missingFieldPolicy"] == "strict" and loaded["allDay"] is False


# -- the domain functions behind the CLI and the API --

DOC = {"title": "Hi {{FirstName}}", "start": "2026-01-01T09:00:00", "timezone": "UTC"}


def test_create_sets_created_and_updated_at(fake_redis):
    stored = create_template(fake_redis, "t", DOC)
    assert stored["createdAt"] == stored["updatedAt"]
    assert get_template(fake_redis, "t", stored["id"]) == stored


def test_update_replaces_content_and_keeps_identity(fake_redis):
    stored = create_template(fake_redis, "t", {**DOC, "name": "first"})
    updated = update_template(fake_redis, "t", stored["id"], {**DOC, "title": "Bye {{Who}}"})
    assert updated["id"] == stored["id"] and updated["createdAt"] == stored["createdAt"]
    assert updated["updatedAt"] > stored["updatedAt"]
    assert updated["name"] == "" and updated["title"] == "Bye {{Who}}"  # a full replacement
    assert get_template(fake_redis, "t", stored["id"]) == updated
    with pytest.raises(ValidationError) as caught:
        update_template(fake_redis, "t", stored["id"], {**DOC, "id": "tpl-other"})
    assert "id" in caught.value.messages
    as_read = {**updated, "placeholders": [], "createdAt": "1999-01-01T00:00:00+00:00", "tenant": "x"}
    again = update_template(fake_redis, "t", stored["id"], as_read)  # read-only fields ignored
    assert again["createdAt"] == stored["createdAt"] and again["tenant"] == "t"
    assert "placeholders" not in get_template(fake_redis, "t", stored["id"])
    with pytest.raises(TemplateNotFound):
        update_template(fake_redis, "t", "tpl-nope", DOC)
    with pytest.raises(TemplateNotFound):
        update_template(fake_redis, "other-tenant", stored["id"], DOC)
    assert fake_redis.hlen("rsf:t:templates") == 1


def test_delete_refuses_while_executions_of_it_are_queued(fake_redis):
    ledger = Ledger(fake_redis)
    stored = create_template(fake_redis, "t", DOC)
    ledger.claim("t", "e1", {"args": {"templateId": stored["id"]}})
    ledger.claim("t", "e2", {"args": {"templateId": stored["id"]}})
    with pytest.raises(TemplateInUse) as caught:
        delete_template(fake_redis, "t", stored["id"], ledger)
    assert caught.value.open_executions == 2
    ledger.transition("t", "e1", State.ACCEPTED)
    ledger.transition("t", "e2", State.FAILED, error="x")
    delete_template(fake_redis, "t", stored["id"])
    with pytest.raises(TemplateNotFound):
        get_template(fake_redis, "t", stored["id"])
    with pytest.raises(TemplateNotFound):
        delete_template(fake_redis, "t", stored["id"])


def test_search_is_newest_first_case_insensitive_and_paged(fake_redis):
    ids = [
        create_template(fake_redis, "t", {**DOC, "name": f"N{i}", "title": f"T{i}"})["id"] for i in range(5)
    ]
    create_template(fake_redis, "t", {**DOC, "name": "Launch", "title": "The Big DAY"})
    items, total = search_templates(fake_redis, "t", per_page=3)
    assert total == 6 and [t["name"] for t in items] == ["Launch", "N4", "N3"]
    items, total = search_templates(fake_redis, "t", page=2, per_page=3)
    assert [t["id"] for t in items] == [ids[2], ids[1], ids[0]]
    found, total = search_templates(fake_redis, "t", "big day")
    assert total == 1 and [t["name"] for t in found] == ["Launch"]
    assert [t["name"] for t in search_templates(fake_redis, "t", "n2")[0]] == ["N2"]
    assert search_templates(fake_redis, "t", "nothing") == ([], 0)
    assert search_templates(fake_redis, "other", "") == ([], 0)
    assert [t["id"] for t in list_templates(fake_redis, "t")][:5] == ids  # the CLI's list: oldest first


def test_placeholders_in_order_of_first_use_with_defaults():
    template = {
        "title": '{{FirstName}} at {{Store | default: "the \\"best\\" store"}}',
        "description": '{{Store}} {{Promo|default:""}} {{FirstName}}',
        "location": "{{City}}",
        "start": "{{Start}}",
        "end": '{{End | default: "2026-01-01T10:00:00"}}',
    }
    assert placeholders(template) == [
        {"name": "FirstName", "default": None},
        {"name": "Store", "default": 'the "best" store'},
        {"name": "Promo", "default": ""},
        {"name": "City", "default": None},
        {"name": "Start", "default": None},
        {"name": "End", "default": "2026-01-01T10:00:00"},
    ]
    assert placeholders({"title": "no fields"}) == []


def test_a_placeholder_with_spaces_is_listed_by_its_name(fake_redis):
    stored = create_template(
        fake_redis,
        "t",
        {"title": "Deals in {{ Home City }}", "start": "2026-12-01T09:00:00", "timezone": "london"},
    )
    assert placeholders(stored) == [{"name": "Home City", "default": None}]
    assert stored["timezone"] == "Europe/London"  # stored as listed, whatever the case typed
    with pytest.raises(ValidationError) as caught:
        update_template(fake_redis, "t", stored["id"], {**stored, "timezone": ""})
    assert "required" in caught.value.messages["timezone"][0]
