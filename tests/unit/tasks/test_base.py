"""What every task shares (tasks/base.py): the log context bound per task run and per thread, and
the hold of a disabled tenant's tasks."""

import threading
from types import SimpleNamespace

import pytest
from celery.exceptions import Retry

from pipeline.infra import logsetup
from pipeline.vocabulary import TenantStatus
from tasks import base
from tests.unit.conftest import COMPLETE


def test_the_task_log_context_is_per_thread_for_tasks_side_by_side():
    """Two tasks run at once in two threads of one worker, the same task id included (a
    redelivery beside its retry): each logs its own context and unbinds only its own."""
    seen: dict[str, dict[str, str]] = {}
    step = threading.Barrier(2)

    class FakeTask:
        name = "rsf.create_rokt_event"

    def task(execution: str) -> None:
        base._bind_task_context(task_id="same-id", task=FakeTask(), args=["acme", execution], kwargs={})
        step.wait()  # both bound before either unbinds
        seen[execution] = logsetup.current_context()
        step.wait()
        base._unbind_task_context(task_id="same-id")
        seen[execution + ":after"] = logsetup.current_context()

    threads = [threading.Thread(target=task, args=(e,)) for e in ("e1", "e2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["e1"]["executionId"] == "e1" and seen["e2"]["executionId"] == "e2"
    assert seen["e1:after"] == {} and seen["e2:after"] == {}


def test_a_task_of_a_disabled_tenant_waits_and_is_never_dropped(rt, monkeypatch):
    rt.registry.add("brand-b", COMPLETE)
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    monkeypatch.setattr(base, "get_runtime", lambda: rt)
    retried = {}

    def retry(exc, countdown, max_retries, kwargs):
        retried.update(exc=exc, countdown=countdown, max_retries=max_retries, kwargs=kwargs)
        return Retry()

    task = SimpleNamespace(request=SimpleNamespace(retries=40), retry=retry)
    with pytest.raises(Retry):
        base.hold_while_disabled(task, "brand-b")
    assert retried["countdown"] == base.DISABLED_TENANT_HOLD_SECONDS and retried["max_retries"] == 41
    base.hold_while_disabled(task, "default")  # active: goes on
