"""What the Rokt stage touches is safe on a threads pool (worker-rokt): one runtime per process,
one client and limiter per tenant, one token fetch for many threads, the log context per thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import logsetup
from pipeline import runtime as runtime_module
from pipeline.clients.tokens import SharedToken
from pipeline.runtime import Runtime
from pipeline.vocabulary import OutboxKind
from tasks import base

THREADS = 32


def together(fn: Callable[[], Any], threads: int = THREADS) -> list[Any]:
    """`fn` from `threads` threads released at one instant; their results (an error re-raised)."""
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads
    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return results


def test_one_runtime_per_process_whichever_thread_asks_first(monkeypatch, settings, fake_redis):
    built = []

    class Slow(Runtime):
        def __init__(self, *args: Any) -> None:
            time.sleep(0.01)  # wide open to a race
            built.append(self)
            super().__init__(settings, fake_redis)

    monkeypatch.setattr(runtime_module, "_runtime", None)
    monkeypatch.setattr(runtime_module, "Runtime", Slow)
    results = together(runtime_module.get_runtime)
    assert len(built) == 1 and all(r is built[0] for r in results)


def test_one_client_limiter_and_outbox_per_tenant_for_all_threads(runtime, monkeypatch):
    from pipeline import runtime as rt_module

    made = []
    original = rt_module.RoktClient

    class Counting(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.01)
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rt_module, "RoktClient", Counting)
    clients = together(lambda: runtime.rokt("default"))
    limiters = together(lambda: runtime.limiter("default", "rokt"))
    boxes = together(lambda: runtime.outbox("default", OutboxKind.STATUS_ROWS))
    assert len(made) == 1 and all(c is made[0] for c in clients)
    assert all(limiter is limiters[0] for limiter in limiters)
    assert all(box is boxes[0] for box in boxes)


def test_many_threads_missing_the_token_fetch_it_once(fake_redis):
    """One thread fetches; the others wait on the process's lock, not polling Redis's."""
    fetched = []

    def fetch() -> dict[str, Any]:
        time.sleep(0.05)
        fetched.append(1)
        return {"access_token": "tok", "expires_in": 300}

    token = SharedToken(fake_redis, "t", "rokt", fetch)
    lock_tries = []
    original_set = fake_redis.set

    def counting_set(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == token.lock_key:
            lock_tries.append(name)
        return original_set(name, *args, **kwargs)

    fake_redis.set = counting_set
    tokens = together(token.get)
    assert len(fetched) == 1 and {t["access_token"] for t in tokens} == {"tok"}
    assert len(lock_tries) == 1


def test_a_thread_waiting_longer_than_its_budget_for_a_refresh_gets_a_retryable_error(fake_redis):
    from pipeline.clients.errors import RetryableError

    release = threading.Event()
    token = SharedToken(fake_redis, "t", "rokt", lambda: release.wait(5) and {"access_token": "x"})
    holder = threading.Thread(target=token.get)
    holder.start()
    time.sleep(0.05)
    with pytest.raises(RetryableError):
        token.get(wait_seconds=0.1)
    release.set()
    holder.join()


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
