"""The worker bootstep that follows the registry (tasks/tenant_queues.py): the queues a worker
consumes for the active tenants of the stages it serves, added and cancelled on its consumer."""

from types import SimpleNamespace

from pipeline.vocabulary import TenantStatus
from tasks.tenant_queues import is_tenant_queue, wanted_queues
from tests.unit.conftest import COMPLETE


def test_a_worker_follows_active_tenants_in_the_stages_it_serves():
    statuses = {"a": TenantStatus.ACTIVE, "b": TenantStatus.DISABLED, "c": TenantStatus.PENDING}
    assert wanted_queues(statuses, {"render", "rokt", "sfmc"}) == {"render.a", "rokt.a"}
    assert wanted_queues(statuses, {"rokt"}) == {"rokt.a"}
    assert wanted_queues(statuses, {"sfmc", "webhooks"}) == set()
    assert is_tenant_queue("render.b") and is_tenant_queue("rokt.b") and not is_tenant_queue("render")


def test_the_tenant_queues_step_adds_and_cancels_on_the_consumer(rt, monkeypatch):
    from tasks.tenant_queues import TenantQueues

    rt.registry.add("brand-b", COMPLETE)
    rt.registry.add("brand-c", {**COMPLETE, "sfmc_eid": ""})
    rt.registry.set_status("brand-c", TenantStatus.DISABLED)
    monkeypatch.setattr("tasks.tenant_queues.get_runtime", lambda: rt)
    consuming = ["render", "rokt", "render.brand-c"]
    added, cancelled = [], []
    consumer = SimpleNamespace(
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in consuming]),
        add_task_queue=added.append,
        cancel_task_queue=cancelled.append,
        app=SimpleNamespace(conf=SimpleNamespace(broker_url="redis://127.0.0.1:6379/0")),
    )
    step = TenantQueues(SimpleNamespace())
    step.sync(consumer)  # nothing read yet: nothing changes (a `-Q` tenant queue is not dropped)
    assert added == cancelled == []
    step.refresh()  # the reader thread's part
    step.sync(consumer)  # the event loop's
    assert added == ["render.brand-b", "render.default", "rokt.brand-b", "rokt.default"]
    assert cancelled == ["render.brand-c"]
    step.sync(consumer)  # the same read again: acted on once
    assert len(added) == 4 and len(cancelled) == 1


def test_the_loop_s_part_never_touches_redis_and_a_failed_read_keeps_the_queues(rt, monkeypatch, caplog):
    from tasks.tenant_queues import TenantQueues

    consumer = SimpleNamespace(
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in ("render", "render.default")]),
        add_task_queue=lambda q: None,
        cancel_task_queue=lambda q: None,
        app=SimpleNamespace(conf=SimpleNamespace(broker_url="redis://127.0.0.1:6379/0")),
    )
    monkeypatch.setattr("tasks.tenant_queues.get_runtime", lambda: rt)
    step = TenantQueues(SimpleNamespace())
    step.refresh()
    read = step.statuses

    def no_redis():
        raise AssertionError("the event loop asked for the runtime")

    monkeypatch.setattr("tasks.tenant_queues.get_runtime", no_redis)
    step.sync(consumer)  # the loop: compares the last read only
    assert read is not None and step.statuses is read

    class Away:
        @property
        def registry(self):
            raise ConnectionError("redis away")

    monkeypatch.setattr("tasks.tenant_queues.get_runtime", lambda: Away())
    step.refresh()
    step.refresh()
    assert step.statuses is read  # the last good read stays
    assert caplog.text.count("reading the tenant registry failed") == 1  # not a line per read


def test_a_worker_dedicated_to_one_brand_keeps_its_queues_while_the_brand_is_active():
    statuses = {"acme": TenantStatus.ACTIVE, "other": TenantStatus.ACTIVE}
    named = frozenset({"render.acme", "rokt.acme"})
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set(named)
    statuses["acme"] = TenantStatus.DISABLED
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set()
