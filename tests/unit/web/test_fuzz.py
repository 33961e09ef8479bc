"""Fuzzing the public endpoints: thousands of generated bodies, headers and tokens.

Never a 500 (nor any 5xx: Redis is up here), every answer JSON, and nothing enqueued
without valid authentication.
"""

import json
import time

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET, IntakeEntries

WEBHOOK_SECRET = "fuzz-webhook-secret-0123456789abcdefghij"
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=15,
)
execute_like = st.fixed_dictionaries(
    {},
    optional={
        "inArguments": st.lists(
            st.dictionaries(
                st.sampled_from(["templateId", "contactKey", "subscriptionId", "x"]), json_values, max_size=3
            ),
            max_size=4,
        )
        | json_values,
        "activityId": json_values,
        "definitionInstanceId": json_values,
        "keyValue": json_values,
        "journeyId": json_values,
        "exp": st.integers(min_value=0, max_value=2**40) | json_values,
    },
)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, item):
        self.calls.append((tenant, item))


@pytest.fixture
def app_parts(fake_redis):
    # AUTH_FAILURE_LIMIT=0: thousands of failed authentications from one address are the point here
    env = {**ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET, "AUTH_FAILURE_LIMIT": "0"}
    runtime = Runtime(load_settings(env), fake_redis)
    executes, webhooks = IntakeEntries(fake_redis), Recorder()  # executes: what reached the intake
    client = create_app(runtime, enqueue_webhook=webhooks).test_client()
    return client, executes, webhooks


def assert_json_and_not_5xx(response):
    assert response.status_code < 500, response.data[:300]
    assert response.is_json


@FUZZ
@given(
    body=st.binary(max_size=3000)
    | st.text(max_size=500).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode()),
    content_type=st.sampled_from(
        ["application/jwt", "application/json", "text/plain", "", "multipart/form-data"]
    ),
)
def test_execute_never_5xx_and_never_enqueues_without_a_valid_jwt(app_parts, body, content_type):
    client, executes, _ = app_parts
    response = client.post("/t/default/activity/execute", data=body, content_type=content_type)
    assert_json_and_not_5xx(response)
    assert response.status_code in (400, 401, 413)
    assert executes.calls == []


@FUZZ
@given(
    payload=execute_like,
    secret=st.sampled_from([JWT_SECRET, "another-secret-0123456789abcdef012345", ""]),
    algorithm=st.sampled_from(["HS256", "HS384", "HS512"]),
)
def test_execute_with_generated_tokens(app_parts, payload, secret, algorithm):
    client, executes, _ = app_parts
    before = len(executes.calls)
    try:
        token = jwt.encode(payload, secret or "x" * 64, algorithm=algorithm)
    except (TypeError, ValueError):
        return  # not encodable: nothing to send
    response = client.post("/t/default/activity/execute", data=token, content_type="application/jwt")
    assert_json_and_not_5xx(response)
    authentic = secret == JWT_SECRET and algorithm == "HS256"
    if not authentic:
        assert response.status_code == 401 and len(executes.calls) == before
    elif response.status_code != 200:
        assert response.status_code in (400, 401) and len(executes.calls) == before


@FUZZ
@given(
    body=st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()),
    header=st.none()
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)
    | st.builds(
        lambda t, v: f"t={t},v1={v}", st.integers(), st.from_regex(r"[0-9a-f]{0,70}", fullmatch=True)
    ),
    path_secret=st.none()
    | st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"),
        min_size=1,
        max_size=40,
    ),
)
def test_webhooks_never_5xx_and_never_enqueue_without_the_secret(app_parts, body, header, path_secret):
    client, _, webhooks = app_parts
    path = "/t/default/webhooks/rokt" + (f"/{path_secret}" if path_secret else "")
    headers = {"X-Rokt-Signature": header} if header is not None else {}
    response = client.post(path, data=body, headers=headers, content_type="application/json")
    assert_json_and_not_5xx(response)
    if path_secret != WEBHOOK_SECRET:
        assert response.status_code in (401, 404, 405, 413) and webhooks.calls == []


@FUZZ
@given(
    envelope=json_values
    | st.fixed_dictionaries(
        {
            "eventId": json_values,
            "eventType": st.sampled_from(
                ["Subscribe", "Unsubscribe", "SubscriptionEventAdded", "Test", "Nope"]
            )
            | json_values,
            "eventDetails": json_values,
        }
    )
)
def test_signed_webhooks_with_generated_envelopes(app_parts, envelope):
    client, _, webhooks = app_parts
    body = json.dumps(envelope).encode()
    before = len(webhooks.calls)
    headers = {"X-Rokt-Signature": signature_header(WEBHOOK_SECRET, body, int(time.time()))}
    response = client.post(
        "/t/default/webhooks/rokt", data=body, headers=headers, content_type="application/json"
    )
    assert_json_and_not_5xx(response)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert len(webhooks.calls) == before and response.json["fields"]


@FUZZ
@given(
    step=st.sampled_from(["save", "validate", "publish", "stop"]),
    body=st.binary(max_size=1000) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_lifecycle_endpoints_never_5xx(app_parts, step, body):
    client, executes, webhooks = app_parts
    response = client.post(f"/t/default/activity/{step}", data=body, content_type="application/json")
    assert_json_and_not_5xx(response)
    assert executes.calls == [] and webhooks.calls == []
