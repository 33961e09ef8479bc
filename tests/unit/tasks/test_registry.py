"""Task registration matches celeryconfig routing; tasks go to their tenant's queues."""

import pytest

import celeryconfig
from pipeline.infra import queues
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
        queues.FLUSH_HISTORY_TASK,
        queues.FLUSH_SUBSCRIPTION_HISTORY_TASK,
        queues.INSTALL_DATA_EXTENSIONS_TASK,
        queues.EVENT_JOB_STEP_TASK,
        queues.EVENT_JOB_ITEM_TASK,
        queues.JOURNEY_STOPPED_TASK,
        queues.EXPORT_PERFORMANCE_TASK,
        queues.EXPORT_PERFORMANCE_ALL_TASK,
    }
    assert names <= set(app.tasks)
    assert names == set(celeryconfig.task_routes)
    routed = {route["queue"] for route in celeryconfig.task_routes.values()}
    assert routed == {*queues.ALL_QUEUES, queues.EVENT_JOBS_QUEUE}
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


def test_executions_start_and_are_redriven_in_the_tenants_render_queue(sent_tasks):
    from pipeline.infra import dispatch

    dispatch.enqueue_execution("acme", "ex-1")
    dispatch.redrive_execution("acme", "ex-1")
    first, again = sent_tasks
    assert first.name == again.name == queues.RENDER_TASK
    assert first.queue == again.queue == queues.render_queue("acme")
    assert first.args == again.args == ["acme", "ex-1"]
    assert first.options["task_id"] == "ex-1:render"
    assert again.options["task_id"].startswith("ex-1:render:")  # a re-drive shows as its own run


def test_webhooks_and_flushes_go_to_their_queues(sent_tasks):
    from pipeline.infra import dispatch
    from pipeline.vocabulary import OutboxKind

    dispatch.enqueue_webhook("acme", "evt-1")
    dispatch.redrive_webhook("acme", "evt-1")
    for kind in OutboxKind:
        dispatch.schedule_flush("acme", kind, countdown=1)
    assert [s.queue for s in sent_tasks[:2]] == [queues.WEBHOOKS_QUEUE] * 2
    flushes = sent_tasks[2:]
    assert {s.name for s in flushes} == set(queues.FLUSH_TASKS.values())
    assert {s.queue for s in flushes} == {queues.SFMC_QUEUE, queues.CALLBACKS_QUEUE}


def test_the_send_check_refuses_what_a_worker_could_not_run():
    from tests.unit.conftest import _check_sent

    with pytest.raises(AssertionError, match="no task registered"):
        _check_sent("rsf.no_such_task", ["acme"], {}, {})
    with pytest.raises(AssertionError, match="signature"):
        _check_sent(queues.RENDER_TASK, ["acme"], {}, {"queue": "render.acme"})
    with pytest.raises(TypeError):
        _check_sent(queues.RENDER_TASK, ["acme", object()], {}, {"queue": "render.acme"})
    with pytest.raises(AssertionError, match="unknown queue"):
        _check_sent(queues.RENDER_TASK, ["acme", "ex-1"], {}, {"queue": "nowhere"})


def test_task_functions_are_named_as_their_tasks():
    """`rsf.flush_all` is `flush_all_task`: the suffix keeps a task apart from the domain
    function it calls."""
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if name.startswith("rsf.")}
    assert set(celeryconfig.task_routes) <= set(ours)  # every routed task is among those checked
    for name, task in ours.items():
        assert f"{name}_task" == f"rsf.{task.run.__name__}", name


def test_reliability_settings():
    assert celeryconfig.task_acks_late and celeryconfig.task_reject_on_worker_lost
    assert celeryconfig.accept_content == ["json"] and celeryconfig.task_serializer == "json"
    assert celeryconfig.broker_transport_options["visibility_timeout"] > celeryconfig.task_time_limit + 300


def test_pipeline_task_rejects_unknown_options():
    from tasks.base import pipeline_task

    with pytest.raises(TypeError, match="ignore_results"):
        pipeline_task("rsf.test", ignore_results=True)
