"""The execute endpoint: verify, validate, claim, enqueue; every bad input a JSON error."""

import time

import jwt
import pytest
import redis

from pipeline.ledger import event_id_for, execution_id
from pipeline.templates import create_template
from pipeline.web import create_app
from tests.unit.conftest import JWT_SECRET

PAYLOAD = {
    "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}, {"subscriptionId": "s-1"}],
    "outArguments": [{"roktStatus": ""}],
    "activityId": "act-1",
    "definitionInstanceId": "def-1",
    "keyValue": "C1",
    "journeyId": "j-1",
    "mode": 0,
}
URL = "/t/default/activity/execute"


class RecordingEnqueue:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, tenant: str, execution: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.calls.append((tenant, execution))


@pytest.fixture
def enqueue():
    return RecordingEnqueue()


@pytest.fixture
def client(runtime, enqueue):
    return create_app(runtime, enqueue).test_client()


def signed(payload=PAYLOAD, secret=JWT_SECRET, algorithm="HS256", **claims):
    return jwt.encode({**payload, **claims}, secret, algorithm=algorithm)


def post(client, body, content_type="application/jwt", url=URL):
    return client.post(url, data=body, content_type=content_type)


def test_valid_execute_is_claimed_enqueued_and_answered(client, enqueue, runtime):
    response = post(client, signed(exp=int(time.time()) + 60))
    execution = execution_id("act-1", "def-1")
    assert response.status_code == 200
    assert response.json == {
        "roktStatus": "queued",
        "roktEventId": event_id_for(execution),
        "executionId": execution,
    }
    assert enqueue.calls == [("default", execution)]
    stored = runtime.ledger.get("default", execution)
    assert stored.status == "queued"
    assert stored.contact_key == "C1"
    assert stored.args == {"contactKey": "C1", "templateId": "tpl-1", "subscriptionId": "s-1"}


def test_jb_retry_gets_the_same_answer_and_enqueues_nothing(client, enqueue):
    first = post(client, signed())
    second = post(client, signed(iat=int(time.time())))  # a retry is re-signed by JB
    assert second.status_code == 200
    assert second.json == first.json
    assert len(enqueue.calls) == 1


def test_distinct_definition_instances_are_distinct_executions(client, enqueue):
    post(client, signed())
    post(client, signed({**PAYLOAD, "definitionInstanceId": "def-2"}))
    assert len({call[1] for call in enqueue.calls}) == 2


def _alg_none_token():
    import base64
    import json

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(PAYLOAD)}."


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(__import__("json").dumps(PAYLOAD), "application/json", id="unsigned-json"),
        pytest.param(
            signed(secret="another-secret-0123456789abcdef0123"), "application/jwt", id="wrong-secret"
        ),
        pytest.param(_alg_none_token(), "application/jwt", id="alg-none"),
        pytest.param(
            signed(secret=JWT_SECRET * 2, algorithm="HS512"), "application/jwt", id="other-algorithm"
        ),
        pytest.param(signed(exp=int(time.time()) - 3600), "application/jwt", id="expired"),
        pytest.param(b"\xff\xfe", "application/jwt", id="binary"),
        pytest.param("", "application/jwt", id="empty"),
    ],
)
def test_unauthenticated_bodies_get_401_json_and_nothing_is_enqueued(client, enqueue, body, content_type):
    response = post(client, body, content_type)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_jwt"
    assert response.json["message"]
    assert enqueue.calls == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"activityId": None}, "activityId"),
        ({"definitionInstanceId": ""}, "definitionInstanceId"),
        ({"keyValue": 42}, "keyValue"),
        ({"inArguments": "nope"}, "inArguments"),
        ({"inArguments": [{"contactKey": "C1"}]}, "inArguments"),
    ],
)
def test_malformed_payload_gets_400_naming_the_field(client, enqueue, change, field):
    payload = {k: v for k, v in {**PAYLOAD, **change}.items() if v is not None}
    response = post(client, signed(payload))
    assert response.status_code == 400
    assert field in response.json["fields"]
    assert enqueue.calls == []


def test_missing_template_id_is_named(client):
    response = post(client, signed({**PAYLOAD, "inArguments": [{"contactKey": "C1"}]}))
    assert response.json["fields"] == {
        "inArguments": {"templateId": ["required: the event template to send"]}
    }


def test_unknown_tenant_is_404_json(client):
    response = post(client, signed(), url="/t/nobody/activity/execute")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_oversized_body_is_413_json(client, enqueue):
    response = post(client, "x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.is_json
    assert enqueue.calls == []


def test_enqueue_failure_answers_503_and_releases_the_claim(runtime):
    failing = RecordingEnqueue(fail=True)
    client = create_app(runtime, failing).test_client()
    response = post(client, signed())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert runtime.ledger.get("default", execution_id("act-1", "def-1")) is None
    working = RecordingEnqueue()
    retry = post(create_app(runtime, working).test_client(), signed())
    assert retry.status_code == 200
    assert len(working.calls) == 1


class DownRedis:
    def __getattr__(self, name):
        def fail(*_args, **_kwargs):
            raise redis.ConnectionError("down")

        return fail


def test_redis_down_gives_503_with_retry_after(settings, enqueue):
    from pipeline.runtime import Runtime

    runtime = Runtime(settings, DownRedis())
    client = create_app(runtime, enqueue).test_client()
    response = post(client, signed())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert enqueue.calls == []


def test_healthz_ok(client):
    assert client.get("/healthz").json == {"status": "ok", "redis": "ok"}


def test_config_json_points_at_public_base_url(client):
    config = client.get("/t/default/activity/config.json").json
    execute = config["arguments"]["execute"]
    assert execute["url"] == "http://127.0.0.1:8000/t/default/activity/execute"
    assert execute["useJwt"] is True
    assert 1000 <= execute["timeout"] <= 100000 and 0 <= execute["retryCount"] <= 5
    assert 1 <= execute["concurrentRequests"] <= 50
    assert config["configurationArguments"]["validate"]["url"].endswith("/activity/validate")
    out = config["schema"]["arguments"]["execute"]["outArguments"][0]
    assert set(out) == {"roktStatus", "roktEventId", "executionId"}


def test_lifecycle_calls_answer_200_json(client):
    for step in ("save", "publish", "stop"):
        response = client.post(f"/t/default/activity/{step}", json={"activityObjectID": "x"})
        assert response.status_code == 200 and response.json == {"ok": True}


def test_validate_checks_the_named_template(client, runtime):
    body = {"arguments": {"execute": {"inArguments": [{"templateId": "tpl-missing"}]}}}
    response = client.post("/t/default/activity/validate", json=body)
    assert response.status_code == 400
    assert "templateId" in response.json["fields"]
    template = create_template(
        runtime.redis, "default", {"title": "t", "start": "2026-01-01T00:00:00", "timezone": "UTC"}
    )
    body["arguments"]["execute"]["inArguments"] = [{"templateId": template["id"]}]
    assert client.post("/t/default/activity/validate", json=body).status_code == 200
