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
    TenantQueues.sync(SimpleNamespace(), consumer)
    assert added == ["render.brand-b", "render.default", "rokt.brand-b", "rokt.default"]
    assert cancelled == ["render.brand-c"]


def test_a_worker_dedicated_to_one_brand_keeps_its_queues_while_the_brand_is_active():
    statuses = {"acme": TenantStatus.ACTIVE, "other": TenantStatus.ACTIVE}
    named = frozenset({"render.acme", "rokt.acme"})
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set(named)
    statuses["acme"] = TenantStatus.DISABLED
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set()
