"""One set of error handlers: every error is JSON, every 503 says when to retry."""

import json

import jwt
import pytest
import redis
from flask import Flask, abort, request

from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import MAX_BODY_BYTES, create_app
from pipeline.web.errors import RETRY_AFTER_SECONDS, ApiError, json_response, register_error_handlers
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET
from tests.unit.samples import SUBSCRIBE

WEBHOOK_SECRET = "errors-webhook-secret-0123456789abcdefgh"


class Boom(Exception):
    pass


@pytest.fixture
def client():
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.post("/api-error")
    def api_error():
        raise ApiError(400, "invalid_payload", "payload rejected", fields={"keyValue": ["required"]})

    @app.get("/unavailable")
    def unavailable():
        raise ApiError(503, "unavailable", "store unavailable; retry")

    @app.get("/aborted")
    def aborted():
        abort(503)

    @app.get("/unexpected")
    def unexpected():
        raise Boom("a bug")

    @app.get("/document")
    def document():
        return json_response(503, status="unavailable")

    @app.post("/upload")
    def upload():
        return {"size": len(request.get_data())}

    register_error_handlers(app)
    return app.test_client()


def test_api_error_answers_its_status_and_body_with_extra_fields(client):
    response = client.post("/api-error")
    assert response.status_code == 400
    assert response.json == {
        "error": "invalid_payload",
        "message": "payload rejected",
        "fields": {"keyValue": ["required"]},
    }
    assert "Retry-After" not in response.headers


def test_an_api_error_503_carries_retry_after(client):
    response = client.get("/unavailable")
    assert response.status_code == 503
    assert response.json == {"error": "unavailable", "message": "store unavailable; retry"}
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS) == "5"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("get", "/nowhere", {}, 404, "not_found"),
        ("get", "/api-error", {}, 405, "method_not_allowed"),
        ("post", "/upload", {"data": b"x" * (MAX_BODY_BYTES + 1)}, 413, "request_entity_too_large"),
    ],
)
def test_http_exceptions_are_json_not_html(client, method, path, kwargs, status, error):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert response.json["error"] == error
    assert response.json["message"]
    assert set(response.json) == {"error", "message"}


def test_method_not_allowed_keeps_its_allow_header(client):
    response = client.get("/api-error")
    assert "POST" in response.headers["Allow"]
    assert response.is_json


def test_an_aborted_503_carries_retry_after(client):
    response = client.get("/aborted")
    assert response.status_code == 503
    assert response.json["error"] == "service_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_an_unexpected_exception_is_logged_and_answers_503_with_retry_after(client, caplog):
    response = client.get("/unexpected")
    assert response.status_code == 503
    assert response.json == {"error": "internal_error", "message": "unexpected error; retry later"}
    assert response.headers["Retry-After"] == "5"
    assert "unhandled error" in caplog.text and "Boom" in caplog.text


def test_json_response_gives_any_503_body_a_retry_after(client):
    response = client.get("/document")
    assert response.json == {"status": "unavailable"}
    assert response.headers["Retry-After"] == "5"


class DownRedis:
    def __getattr__(self, name):
        def fail(*_args, **_kwargs):
            raise redis.ConnectionError("down")

        return fail


def _never(_tenant, _item):
    raise AssertionError("nothing may be enqueued while Redis is down")


@pytest.fixture
def down_client():
    settings = load_settings({**ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET})
    return create_app(Runtime(settings, DownRedis()), enqueue_webhook=_never).test_client()


def test_redis_down_in_execute_is_503_with_retry_after(down_client):
    payload = {
        "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}],
        "activityId": "act-1",
        "definitionInstanceId": "def-1",
        "keyValue": "C1",
    }
    token = jwt.encode(payload, JWT_SECRET, algorithm="HS256")
    response = down_client.post("/t/default/activity/execute", data=token, content_type="application/jwt")
    assert response.status_code == 503
    assert response.json == {"error": "unavailable", "message": "store unavailable; retry"}
    assert response.headers["Retry-After"] == "5"


def test_redis_down_in_the_webhook_receiver_is_503_with_retry_after(down_client):
    body = json.dumps(SUBSCRIBE).encode()
    headers = {"X-Rokt-Signature": signature_header(WEBHOOK_SECRET, body)}
    response = down_client.post(
        "/t/default/webhooks/rokt", data=body, headers=headers, content_type="application/json"
    )
    assert response.status_code == 503
    assert response.json == {"error": "unavailable", "message": "store unavailable; retry"}
    assert response.headers["Retry-After"] == "5"


def test_redis_down_in_validate_is_an_unexpected_503_with_retry_after(down_client):
    body = {"arguments": {"execute": {"inArguments": [{"templateId": "tpl-1"}]}}}
    response = down_client.post("/t/default/activity/validate", json=body)
    assert response.status_code == 503
    assert response.json == {"error": "internal_error", "message": "unexpected error; retry later"}
    assert response.headers["Retry-After"] == "5"


def test_redis_down_in_healthz_is_503_with_retry_after(down_client):
    response = down_client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "redis": "ConnectionError"}
    assert response.headers["Retry-After"] == "5"
