"""Task registration matches celeryconfig routing; template documents are validated."""

import pytest
from marshmallow import ValidationError

import celeryconfig
from pipeline import queues
from schemas.templates import TemplateSchema
from tasks import app


def test_every_task_is_registered_under_its_stable_name_and_routed():
    app.loader.import_default_modules()
    names = {
        queues.WEBHOOK_TASK,
        queues.RECONCILE_TASK,
        queues.FLUSH_SUBSCRIPTIONS_TASK,
        queues.RENDER_TASK,
        queues.CREATE_EVENT_TASK,
        queues.FLUSH_STATUS_TASK,
        queues.FLUSH_RELEASES_TASK,
        queues.FLUSH_ALL_TASK,
    }
    assert names <= set(app.tasks)
    assert names == set(celeryconfig.task_routes)
    routed = {route["queue"] for route in celeryconfig.task_routes.values()}
    assert routed == set(queues.ALL_QUEUES)
    for name in names:
        assert app.tasks[name].acks_late is True


def test_reliability_settings():
    assert celeryconfig.task_acks_late and celeryconfig.task_reject_on_worker_lost
    assert celeryconfig.accept_content == ["json"] and celeryconfig.task_serializer == "json"
    assert celeryconfig.broker_transport_options["visibility_timeout"] > celeryconfig.task_time_limit + 300


def test_pipeline_task_rejects_unknown_options():
    from tasks.base import pipeline_task

    with pytest.raises(TypeError, match="ignore_results"):
        pipeline_task("rsf.test", ignore_results=True)


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
