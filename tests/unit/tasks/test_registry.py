"""Task registration matches celeryconfig routing; tasks go to their tenant's queues."""

import pytest

import celeryconfig
from pipeline import queues
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
    consumed = {queue.name for queue in celeryconfig.task_queues}
    assert routed <= consumed
    for name in names:
        assert app.tasks[name].acks_late is True


def test_each_tenant_has_render_and_rokt_queues_of_its_own():
    consumed = queues.worker_queues(["acme", "globex"])
    assert set(queues.ALL_QUEUES) <= set(consumed)
    for tenant in ("acme", "globex"):
        assert queues.render_queue(tenant) in consumed and queues.rokt_queue(tenant) in consumed
    assert queues.render_queue("acme") != queues.render_queue("globex")


def test_execution_tasks_are_sent_to_the_tenants_queues(monkeypatch):
    from pipeline import dispatch

    class Producer:
        sent: list[tuple[str, dict]] = []

        def send_task(self, name: str, **options: object) -> None:
            self.sent.append((name, options))

    monkeypatch.setattr(dispatch, "producer", Producer)
    dispatch.enqueue_execution("acme", "ex-1")
    name, options = Producer.sent[0]
    assert name == queues.RENDER_TASK
    assert options["queue"] == queues.render_queue("acme") and options["task_id"] == "ex-1:render"


def test_reconciliation_re_drives_into_the_tenants_render_queue(monkeypatch):
    from tasks import maintenance
    from tasks.execution import render_event

    sent = []
    monkeypatch.setattr(render_event, "apply_async", lambda **options: sent.append(options))
    maintenance.enqueue_execution("acme", "ex-1")
    assert sent[0]["queue"] == queues.render_queue("acme") and sent[0]["args"] == ["acme", "ex-1"]


def test_reliability_settings():
    assert celeryconfig.task_acks_late and celeryconfig.task_reject_on_worker_lost
    assert celeryconfig.accept_content == ["json"] and celeryconfig.task_serializer == "json"
    assert celeryconfig.broker_transport_options["visibility_timeout"] > celeryconfig.task_time_limit + 300


def test_pipeline_task_rejects_unknown_options():
    from tasks.base import pipeline_task

    with pytest.raises(TypeError, match="ignore_results"):
        pipeline_task("rsf.test", ignore_results=True)
