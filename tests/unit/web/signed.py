"""An app over fakeredis whose pinned tenant has a webhook secret, and the signed requests the
web tests send it: a webhook signed with an HMAC key, an execute signed with a JWT secret."""

import json
import secrets
import time

import jwt

from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.webhook_auth import signature_header
from tests.unit.conftest import ENV, JWT_SECRET, IntakeEntries
from tests.unit.samples import SUBSCRIBE

WEBHOOK_SECRET = "unit-webhook-hmac-secret-0123456789abcdefgh"
STRONG = secrets.token_urlsafe(32)
EXECUTE = {
    "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}],
    "activityId": "act-1",
    "definitionInstanceId": "def-1",
    "keyValue": "C1",
    "journeyId": "j-1",
}
APP_ENV = {"SECRET_KEY": "unit-secret-key-for-sealing-0123456789abcdef"}


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, item):
        self.calls.append((tenant, item))


def make(fake_redis, **env):
    """(runtime, test client, the executes that reached the intake, the webhooks enqueued)."""
    runtime = Runtime(
        load_settings({**ENV, **APP_ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET, **env}), fake_redis
    )
    executes, hooks = IntakeEntries(fake_redis), Recorder()  # executes: what reached the intake
    client = create_app(runtime, enqueue_webhook=hooks).test_client()
    return runtime, client, executes, hooks


def signed_webhook(client, secret=WEBHOOK_SECRET, tenant="default", body=None, **kwargs):
    raw = body if body is not None else json.dumps(SUBSCRIBE).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(secret, raw)}
    return client.post(f"/t/{tenant}/webhooks/rokt", data=raw, headers=headers, **kwargs)


def execute(client, secret=JWT_SECRET, tenant="default", **kwargs):
    body = jwt.encode({**EXECUTE, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    return client.post(f"/t/{tenant}/activity/execute", data=body, content_type="application/jwt", **kwargs)
