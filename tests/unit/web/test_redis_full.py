"""A full Redis (writes refused at maxmemory, noeviction): execute and the webhook receiver answer
503 `redis_full` with Retry-After, and leave nothing half-written for the retry to trip on."""

import json

import jwt
import pytest
import redis
from kombu.exceptions import OperationalError
from redis.commands.core import Script

from pipeline.infra.salt import deployment_salt
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET
from tests.unit.samples import SUBSCRIBE

WEBHOOK_SECRET = "full-webhook-secret-0123456789abcdefghij"
OOM = "OOM command not allowed when used memory > 'maxmemory'."
# what a full Redis refuses: commands that may grow memory, and anything queued in MULTI
WRITES = {"set", "hset", "hincrby", "zadd", "xadd", "lpush", "rpush", "incr", "eval", "evalsha", "fcall"}


class FullRedis:
    """fakeredis as a full Redis answers: reads and deletes work, writes and MULTI raise OOM.
    `refuse` names the refused commands (a Redis that fills between two commands refuses fewer)."""

    def __init__(self, real: redis.Redis, refuse: set[str] = WRITES) -> None:
        self._real, self._refuse = real, refuse

    def __getattr__(self, name):
        if name in self._refuse:

            def refused(*_args, **_kwargs):
                raise redis.exceptions.OutOfMemoryError(OOM)

            return refused
        if name == "pipeline":
            return self._pipeline
        return getattr(self._real, name)

    def register_script(self, script):  # scripts run through this client: EVALSHA refused
        return Script(self, script)

    def _pipeline(self, *args, **kwargs):
        pipe = self._real.pipeline(*args, **kwargs)

        def refused(*_args, **_kwargs):
            pipe.reset()
            raise redis.exceptions.OutOfMemoryError(f"Command # 1 (SET x) of pipeline caused error: {OOM}")

        pipe.execute = refused
        return pipe


def _runtime(client: redis.Redis) -> Runtime:
    return Runtime(load_settings({**ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET}), client)


def _execute(app_client):
    payload = {
        "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}],
        "activityId": "act-1",
        "definitionInstanceId": "def-1",
        "keyValue": "C1",
    }
    token = jwt.encode(payload, JWT_SECRET, algorithm="HS256")
    return app_client.post("/t/default/activity/execute", data=token, content_type="application/jwt")


def _webhook(app_client):
    body = json.dumps(SUBSCRIBE).encode()
    headers = {"X-Rokt-Signature": signature_header(WEBHOOK_SECRET, body)}
    return app_client.post(
        "/t/default/webhooks/rokt", data=body, headers=headers, content_type="application/json"
    )


def _assert_redis_full_503(response) -> None:
    assert response.status_code == 503
    assert response.json == {"error": "redis_full", "message": "Redis is full; retry later"}
    assert response.headers["Retry-After"] == "5"


def test_execute_answers_503_redis_full_and_claims_nothing_then_the_retry_is_accepted(fake_redis, caplog):
    calls = []
    full = create_app(_runtime(FullRedis(fake_redis)), enqueue_webhook=lambda *a: calls.append(a))
    deployment_salt(fake_redis)  # made by the deployment's first request, long before Redis filled
    before = set(fake_redis.keys())
    _assert_redis_full_503(_execute(full.test_client()))
    assert set(fake_redis.keys()) == before  # nothing claimed, nothing on the intake
    assert "Redis is full" in caplog.text and "Traceback" not in caplog.text  # a warning, not a trace
    # memory freed: Journey Builder's retry is a first execute, queued
    retry = _execute(create_app(_runtime(fake_redis), enqueue_webhook=lambda *a: None).test_client())
    assert retry.status_code == 200 and retry.json["roktStatus"] == "queued"


@pytest.mark.parametrize(
    "refuse",
    [WRITES, WRITES - {"set"}],  # full before the receipt, or between the receipt and its bookkeeping
    ids=["full-before-the-receipt", "full-after-the-receipt"],
)
def test_a_webhook_answers_503_redis_full_and_leaves_no_receipt_behind(fake_redis, refuse):
    enqueued = []
    full = create_app(_runtime(FullRedis(fake_redis, refuse)), enqueue_webhook=lambda *a: enqueued.append(a))
    _assert_redis_full_503(_webhook(full.test_client()))
    assert enqueued == []
    # Rokt's retry, once memory is freed, is processed, not dropped as a duplicate
    working = create_app(_runtime(fake_redis), enqueue_webhook=lambda *a: enqueued.append(a))
    retry = _webhook(working.test_client())
    assert retry.status_code == 200 and retry.json == {"ok": True}
    assert enqueued == [("default", SUBSCRIBE["eventId"])]


def test_a_webhook_whose_enqueue_meets_a_full_broker_answers_503_redis_full(fake_redis):
    def full_broker(_tenant, _event):  # kombu wraps the refused LPUSH in its OperationalError
        try:
            raise redis.exceptions.OutOfMemoryError(OOM)
        except redis.RedisError as exc:
            raise OperationalError(str(exc)) from exc

    app = create_app(_runtime(fake_redis), enqueue_webhook=full_broker)
    _assert_redis_full_503(_webhook(app.test_client()))
    enqueued = []
    retry = _webhook(
        create_app(_runtime(fake_redis), enqueue_webhook=lambda *a: enqueued.append(a)).test_client()
    )
    assert retry.status_code == 200 and len(enqueued) == 1  # the claim was released
