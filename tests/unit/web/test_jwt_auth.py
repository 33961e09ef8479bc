"""The execute JWT (pipeline/web/jwt_auth.py): the tenant's current secret and, after a change,
the previous one for the grace period (API sessions follow it); a header nested deep is 401."""

import json
import secrets
import time
from dataclasses import replace

import jwt
import pytest

from pipeline.web.auth import issue_session, session_valid
from tests.unit.conftest import COMPLETE, JWT_SECRET
from tests.unit.web.signed import EXECUTE, STRONG, execute, make


def test_a_changed_jwt_secret_keeps_the_previous_one_valid_for_the_grace_period(parts):
    runtime, client, executes, _ = parts
    old, new = COMPLETE["jb_jwt_secret"], secrets.token_urlsafe(32)
    runtime.registry.add("brand-b", COMPLETE)
    old_session = issue_session(runtime.registry.get("brand-b"))
    runtime.registry.update("brand-b", {"jb_jwt_secret": new})  # App Settings save, `tenants update`
    tenant = runtime.registry.get("brand-b")  # no restart: the version bump is seen at once here
    assert tenant.jwt_secrets(time.time()) == (new, old)
    assert execute(client, new, "brand-b").status_code == 200
    assert execute(client, old, "brand-b").status_code == 200
    assert session_valid(tenant, old_session) and session_valid(tenant, issue_session(tenant))
    later = time.time() + runtime.settings.jwt_secret_grace_hours * 3600 + 1
    assert tenant.jwt_secrets(later) == (new,)
    expired = replace(tenant, jb_jwt_previous_until=time.time() - 1)
    assert not session_valid(expired, old_session)
    assert len(executes.calls) == 1  # the second is the same execution: a duplicate


def test_after_the_grace_period_the_previous_jwt_secret_fails(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.update("brand-b", {"jb_jwt_secret": STRONG})
    record = json.loads(runtime.redis.hget("rsf:_registry:tenants", "brand-b"))
    record["jb_jwt_previous_until"] = time.time() - 1
    runtime.redis.hset("rsf:_registry:tenants", "brand-b", json.dumps(record))
    runtime.redis.incr("rsf:_registry:version")
    runtime.registry._checked_at = float("-inf")
    assert execute(client, COMPLETE["jb_jwt_secret"], "brand-b").status_code == 401
    assert execute(client, STRONG, "brand-b").status_code == 200


def test_a_zero_grace_drops_the_previous_jwt_secret_at_once(fake_redis):
    runtime = make(fake_redis, JWT_SECRET_GRACE_HOURS="0")[0]
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.update("brand-b", {"jb_jwt_secret": STRONG})
    assert runtime.registry.get("brand-b").jwt_secrets(time.time()) == (STRONG,)


@pytest.mark.parametrize("depth", [40, 20000])
def test_a_deeply_nested_execute_is_never_a_5xx(parts, depth):
    import base64

    _, client, executes, _ = parts

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    deep = ("[" * depth + "]" * depth).encode()
    header = b64(b'{"alg":"HS256","typ":"JWT","x":' + deep + b"}")
    unsigned = client.post("/t/default/activity/execute", data=f"{header}.{b64(b'{}')}.x")
    assert unsigned.status_code == 401
    payload = {**EXECUTE, "deep": json.loads("[" * 40 + "]" * 40)} if depth == 40 else None
    if payload is not None:
        signed = client.post(
            "/t/default/activity/execute",
            data=jwt.encode(payload, JWT_SECRET, algorithm="HS256"),
            content_type="application/jwt",
        )
        assert signed.status_code == 400
    assert executes.calls == []
