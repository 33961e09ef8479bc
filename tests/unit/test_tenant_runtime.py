"""What a registry change does at run time: webhooks signed with a rotated secret, executes and
tasks of a disabled tenant, the queues a worker follows, and SFMC tokens from a refresh token."""

import json
import time
from types import SimpleNamespace

import pytest
import responses
from celery.exceptions import Retry

from pipeline.clients.errors import PermanentError
from pipeline.runtime import Runtime
from pipeline.settings import load_settings
from pipeline.vocabulary import TenantStatus
from pipeline.web import create_app
from pipeline.web.webhook_auth import signature_header
from tasks import base as task_base
from tasks.tenant_queues import is_tenant_queue, wanted_queues
from tests.unit.conftest import ENV, JWT_SECRET
from tests.unit.samples import SUBSCRIBE
from tests.unit.test_tenants import COMPLETE, KEY

AUTH = "https://mc-abc.auth.marketingcloudapis.com"


@pytest.fixture
def rt(fake_redis):
    return Runtime(load_settings({**ENV, "SECRET_KEY": KEY, "TENANT_REFRESH_SECONDS": "0"}), fake_redis)


@pytest.fixture
def client(rt):
    calls = []
    app = create_app(rt, enqueue_webhook=lambda t, e: calls.append(e))
    app.test_client_calls = calls
    return app.test_client()


def _webhook(client, secret, tenant="brand-b"):
    body = json.dumps(SUBSCRIBE).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(secret, body)}
    return client.post(f"/t/{tenant}/webhooks/rokt", data=body, headers=headers)


def test_after_a_rotation_both_webhook_secrets_work_until_the_grace_period_ends(rt, client):
    rt.registry.add(
        "brand-b", {**COMPLETE, "rokt_webhook_secret": "old-secret-of-brand-b-0123456789abcdefghij"}
    )
    new = rt.registry.rotate_webhook_secret("brand-b")
    assert _webhook(client, "old-secret-of-brand-b-0123456789abcdefghij").status_code == 200
    assert _webhook(client, new).json.get("duplicate")  # same eventId: accepted, already stored
    assert _webhook(client, "some-other-secret").status_code == 401
    token = rt.registry.get("brand-b").rokt_webhook_path_token  # the URL's token, not the HMAC key
    assert client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE).status_code == 200
    record = json.loads(rt.redis.hget("rsf:_registry:tenants", "brand-b"))
    record["rokt_webhook_previous_until"] = time.time() - 1
    rt.redis.hset("rsf:_registry:tenants", "brand-b", json.dumps(record))
    rt.redis.incr("rsf:_registry:version")
    assert _webhook(client, "old-secret-of-brand-b-0123456789abcdefghij").status_code == 401


def test_a_disabled_tenant_answers_503_to_authenticated_executes_and_webhooks(rt, client):
    from tests.unit.web.test_activity import signed

    rt.registry.add(
        "brand-b",
        {
            **COMPLETE,
            "jb_jwt_secret": JWT_SECRET,
            "rokt_webhook_secret": "hook-secret-of-brand-b-0123456789abcdefghij",
        },
    )
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    answer = client.post("/t/brand-b/activity/execute", data=signed(), content_type="application/jwt")
    assert answer.status_code == 503 and answer.json["error"] == "tenant_disabled"
    assert answer.headers["Retry-After"]
    assert rt.ledger.open_count("brand-b") == 0  # nothing claimed: Journey Builder retries it
    hook = _webhook(client, "hook-secret-of-brand-b-0123456789abcdefghij")
    assert hook.status_code == 503 and hook.json["error"] == "tenant_disabled"
    assert _webhook(client, "wrong").status_code == 401  # the status is told to authenticated callers only
    rt.registry.set_status("brand-b", TenantStatus.ACTIVE)
    assert (
        client.post("/t/brand-b/activity/execute", data=signed(), content_type="application/jwt").status_code
        == 200
    )


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


def test_a_task_of_a_disabled_tenant_waits_and_is_never_dropped(rt, monkeypatch):
    rt.registry.add("brand-b", COMPLETE)
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    monkeypatch.setattr(task_base, "get_runtime", lambda: rt)
    retried = {}

    def retry(exc, countdown, max_retries, kwargs):
        retried.update(exc=exc, countdown=countdown, max_retries=max_retries, kwargs=kwargs)
        return Retry()

    task = SimpleNamespace(request=SimpleNamespace(retries=40), retry=retry)
    with pytest.raises(Retry):
        task_base.hold_while_disabled(task, "brand-b")
    assert retried["countdown"] == task_base.DISABLED_TENANT_HOLD_SECONDS and retried["max_retries"] == 41
    task_base.hold_while_disabled(task, "default")  # active: goes on


def _signed_in(rt):
    name = rt.registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="refresh-1").name
    rt.registry.update(name, {k: v for k, v in COMPLETE.items() if not k.startswith("sfmc_")})
    return name


@responses.activate
def test_a_signed_in_tenant_gets_sfmc_tokens_by_refresh_and_keeps_the_rotated_refresh_token(rt):
    name = _signed_in(rt)
    responses.post(
        f"{AUTH}/v2/token",
        json={
            "access_token": "at-1",
            "refresh_token": "refresh-2",
            "expires_in": 1079,
            "rest_instance_url": "https://r/",
        },
    )
    token = rt.sfmc(name).token.get()
    assert token["access_token"] == "at-1" and "refresh_token" not in token  # never cached in Redis
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-1",
        "client_id": rt.settings.sfmc_app_client_id,
        "client_secret": rt.settings.sfmc_app_client_secret,
        "account_id": "43",  # the business unit of App Settings
    }
    assert rt.registry.refresh_token(name) == "refresh-2"
    cached = json.dumps(rt.redis.get(f"rsf:{name}:token:sfmc"))
    assert "refresh-2" not in cached
    assert "at-1" not in cached and "sealed" in cached  # the runtime seals it with SECRET_KEY


@responses.activate
def test_a_refused_refresh_token_marks_the_tenant_reconnect_needed(rt):
    name = _signed_in(rt)
    responses.post(f"{AUTH}/v2/token", status=400, json={"error": "invalid_grant"})
    with pytest.raises(PermanentError):
        rt.sfmc(name).check_credentials()
    assert "refused the refresh token" in rt.registry.get(name).reconnect_reason


def test_a_worker_dedicated_to_one_brand_keeps_its_queues_while_the_brand_is_active():
    statuses = {"acme": TenantStatus.ACTIVE, "other": TenantStatus.ACTIVE}
    named = frozenset({"render.acme", "rokt.acme"})
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set(named)
    statuses["acme"] = TenantStatus.DISABLED
    assert wanted_queues(statuses, {"render.acme", "rokt.acme"}, named) == set()


def test_time_a_tenant_spent_disabled_does_not_count_against_its_executions(rt):
    from pipeline import executions
    from pipeline.ratelimit import RateLimited

    rt.registry.add("brand-b", COMPLETE)
    claimed = rt.ledger.claim(
        "brand-b", "ex-1", {"eventId": "ev-1", "budgetStart": "2020-01-01T00:00:00+00:00", "args": "{}"}
    )
    assert claimed
    assert not executions.after_failed_call(rt, "brand-b", "ex-1", RateLimited(0.5)).retry  # budget spent
    rt.ledger.claim(
        "brand-b", "ex-2", {"eventId": "ev-2", "budgetStart": "2020-01-01T00:00:00+00:00", "args": "{}"}
    )
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    rt.registry.set_status("brand-b", TenantStatus.ACTIVE)
    assert executions.after_failed_call(rt, "brand-b", "ex-2", RateLimited(0.5)).retry
