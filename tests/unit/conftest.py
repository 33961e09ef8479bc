"""Fast unit fixtures: fakeredis (with Lua), an in-memory tenant, a runtime whose registry stores
tenants, and checked task sends; no network."""

import inspect
import json
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
from celery import Celery, Task

import celeryconfig
from pipeline.infra import queues
from pipeline.settings import load_settings
from pipeline.stores.ledger import event_id_for
from pipeline.tenancy.handles import Runtime
from tasks import app as tasks_app

JWT_SECRET = "unit-test-jwt-secret-0123456789abcdef"
ENV = {
    "REDIS_URL": "redis://unused:6379/0",
    "HISTORY_URL": "sqlite://",  # in memory, one per Runtime
    # every click counts: tests click in quick succession (tests/unit/web/test_click_repeats.py
    # tests the window)
    "CLICK_REPEAT_SECONDS": "0",
    "JB_JWT_SECRET": JWT_SECRET,
    "ROKT_API_BASE_URL": "https://rokt.test",
    "ROKT_CLIENT_ID": "rokt-id",
    "ROKT_CLIENT_SECRET": "rokt-secret",
    "ROKT_ACCOUNT_CODE": "acct",
    "ROKT_RATE_LIMIT": "50",
    "SFMC_AUTH_BASE_URL": "https://auth.sfmc.test",
    "SFMC_CLIENT_ID": "sfmc-id",
    "SFMC_CLIENT_SECRET": "sfmc-secret",
    "SFMC_ACCOUNT_ID": "123",
    "SFMC_RATE_LIMIT": "1000",
}
SEALING_KEY = "unit-test-sealing-key-0123456789abcdef"
# a stored tenant with every setting the pipeline needs (what App Settings or `tenants add` gives)
COMPLETE = {
    "jb_jwt_secret": "jwt-secret-of-brand-b-0123456789abcdef",
    "rokt_client_id": "rokt-b",
    "rokt_client_secret": "rokt-secret-b",
    "rokt_account_code": "acct-b",
    "sfmc_auth_base_url": "https://auth.sfmc.test",
    "sfmc_client_id": "sfmc-b",
    "sfmc_client_secret": "sfmc-secret-b",
    "sfmc_account_id": "456",
}


@pytest.fixture
def fake_redis():
    server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=server, decode_responses=True)


@pytest.fixture
def settings():
    return load_settings(ENV)


@pytest.fixture
def runtime(settings, fake_redis):
    return Runtime(settings, fake_redis)


@pytest.fixture
def rt(fake_redis):
    """A runtime whose registry stores tenants (sealed with SECRET_KEY) and sees each change at once."""
    settings = load_settings({**ENV, "SECRET_KEY": SEALING_KEY, "TENANT_REFRESH_SECONDS": "0"})
    return Runtime(settings, fake_redis)


class IntakeEntries:
    """What execute handed on: the entries of every tenant's intake stream (the claim appends
    them; the pump publishes them), as (tenant, execution id), oldest first per tenant."""

    def __init__(self, r) -> None:
        self.r = r

    @property
    def calls(self) -> list[tuple[str, str]]:
        found = []
        for key in sorted(self.r.scan_iter(match="rsf:*:intake")):
            tenant = key[len("rsf:") : -len(":intake")]
            found.extend((tenant, values["x"]) for _id, values in self.r.xrange(key))
        return found


@pytest.fixture
def intake(fake_redis) -> IntakeEntries:
    return IntakeEntries(fake_redis)


@dataclass(frozen=True)
class SentTask:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]

    @property
    def queue(self) -> str:
        return self.options.get("queue") or celeryconfig.task_routes[self.name]["queue"]


def _check_sent(name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> SentTask:
    """What a broker would refuse silently, or a worker only find out later: an unknown task
    name, arguments that do not fit the task's signature, non-JSON values, an unknown queue."""
    tasks_app.loader.import_default_modules()
    assert name in tasks_app.tasks, f"no task registered as {name!r}"
    args, kwargs = list(args or ()), dict(kwargs or {})
    try:
        inspect.signature(tasks_app.tasks[name].run).bind(*args, **kwargs)
    except TypeError as exc:
        raise AssertionError(f"{name}{tuple(args)} does not fit the task's signature: {exc}") from exc
    json.dumps([args, kwargs])  # JSON only (celeryconfig.accept_content)
    sent = SentTask(name, args, kwargs, options)
    queue = sent.queue
    known = queues.SHARED_QUEUES  # the event-jobs queue and the Rokt waiting room included
    assert queue in known or queue.split(".", 1)[0] in (queues.RENDER_QUEUE, queues.ROKT_QUEUE), (
        f"{name} sent to unknown queue {queue!r}"
    )
    return sent


@pytest.fixture(autouse=True)
def sent_tasks(monkeypatch) -> list[SentTask]:
    """Every task a unit test sends (by name or through a task object, retries included),
    checked against the registered task and recorded instead of reaching a broker."""
    sent: list[SentTask] = []

    def send_task(app, name, args=None, kwargs=None, **options):
        sent.append(_check_sent(name, args, kwargs, options))

    def apply_async(task, args=None, kwargs=None, **options):
        sent.append(_check_sent(task.name, args, kwargs, options))

    monkeypatch.setattr(Celery, "send_task", send_task)
    monkeypatch.setattr(Task, "apply_async", apply_async)
    return sent


def claim_execution(runtime, execution, **args):
    """Claim `execution` of tenant `default` (contact C1, activity `a`) with `args` as its
    inArguments, as execute does."""
    runtime.ledger.claim(
        "default",
        execution,
        {"contactKey": "C1", "eventId": event_id_for(execution), "activityId": "a", "args": args},
    )
