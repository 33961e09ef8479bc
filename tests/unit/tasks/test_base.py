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


# -- a full Redis: the task waits in place -----------------------------------------------------

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def _refused_then(outcomes):
    """A task function raising each of `outcomes` that is an exception, else returning it."""
    seen = []

    def run(_task, *args):
        seen.append(args)
        outcome = outcomes[len(seen) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run, seen


def test_a_task_whose_write_is_refused_for_memory_runs_again_in_place():
    import redis

    slept = []
    run, seen = _refused_then([redis.exceptions.OutOfMemoryError(OOM)] * 3 + ["done"])
    waiting = base.waiting_for_memory(run, sleep=slept.append)
    assert waiting(object(), "acme", "e1") == "done"
    assert seen == [("acme", "e1")] * 4 and slept == list(base.REDIS_FULL_PAUSES[:3])


def test_a_retry_celery_could_not_publish_for_memory_is_not_dropped_but_run_again():
    """Celery turns a retry whose publish failed into Reject(requeue=False): the message dropped."""
    import redis
    from celery.exceptions import Reject

    run, seen = _refused_then([Reject(redis.exceptions.OutOfMemoryError(OOM), requeue=False), "done"])
    assert base.waiting_for_memory(run, sleep=lambda _s: None)(object()) == "done" and len(seen) == 2


def test_still_full_after_the_limit_the_message_is_requeued_never_failed():
    import redis
    from celery.exceptions import Reject

    slept, now = [], [0.0]

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    run, _seen = _refused_then([redis.exceptions.OutOfMemoryError(OOM)] * 100)
    with pytest.raises(Reject) as rejected:
        base.waiting_for_memory(run, limit=5, sleep=sleep, clock=lambda: now[0])(object())
    assert rejected.value.requeue is True
    assert 5 <= sum(slept) < 5 + max(base.REDIS_FULL_PAUSES)


def test_the_runs_count_toward_the_limit_not_only_the_pauses():
    """A flush that runs 20 s before Redis refuses again is requeued after two runs, not left to
    reach the task's soft time limit."""
    import redis
    from celery.exceptions import Reject

    now = [0.0]

    def slow_refusal(_task):
        now[0] += 20
        raise redis.exceptions.OutOfMemoryError(OOM)

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(Reject):
        base.waiting_for_memory(slow_refusal, limit=30, sleep=sleep, clock=lambda: now[0])(object())
    assert now[0] < 45


def test_other_errors_and_retries_pass_through_at_once():
    import redis

    for exc in (redis.ConnectionError("down"), Retry()):
        run, seen = _refused_then([exc])
        with pytest.raises(type(exc)):
            base.waiting_for_memory(run, sleep=lambda _s: pytest.fail("no wait"))(object())
        assert len(seen) == 1


def test_retry_later_does_not_publish_a_retry_redis_would_refuse():
    import redis

    exc = redis.exceptions.OutOfMemoryError(OOM)
    task = SimpleNamespace(request=SimpleNamespace(retries=0), retry=lambda **_: pytest.fail("published"))
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        base.retry_later(task, exc)


def test_pipeline_tasks_wait_for_memory():
    from tasks.execution import create_rokt_event_task, render_event_task

    for task in (render_event_task, create_rokt_event_task):
        assert task.run.__wrapped__.__name__ == task.__name__
