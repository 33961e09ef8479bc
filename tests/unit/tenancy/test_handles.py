"""The per-process runtime (pipeline/tenancy/handles.py) on the Rokt stage's threads pool (worker-rokt): one
runtime per process, one client, limiter and outbox per tenant, whichever thread asks first."""

from __future__ import annotations

import time
from typing import Any

from pipeline.tenancy import handles as runtime_module
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind
from tests.unit.threads import together


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
    from pipeline.tenancy import handles as rt_module

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
