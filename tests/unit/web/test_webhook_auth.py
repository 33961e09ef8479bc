"""Webhook authentication (pipeline/web/webhook_auth.py): the HMAC key and the URL's path token
are two secrets, each kept for the grace period after a rotation; path mode off is header only."""

import json
import time

from tests.unit.conftest import COMPLETE
from tests.unit.samples import SUBSCRIBE
from tests.unit.web.signed import STRONG, WEBHOOK_SECRET, make, signed_webhook


def test_after_a_rotation_both_webhook_secrets_work_until_the_grace_period_ends(rt, rt_client):
    rt.registry.add(
        "brand-b", {**COMPLETE, "rokt_webhook_secret": "old-secret-of-brand-b-0123456789abcdefghij"}
    )
    new = rt.registry.rotate_webhook_secret("brand-b")
    assert (
        signed_webhook(rt_client, "old-secret-of-brand-b-0123456789abcdefghij", "brand-b").status_code == 200
    )
    assert signed_webhook(rt_client, new, "brand-b").json.get(
        "duplicate"
    )  # same eventId: accepted, already stored
    assert signed_webhook(rt_client, "some-other-secret", "brand-b").status_code == 401
    token = rt.registry.get("brand-b").rokt_webhook_path_token  # the URL's token, not the HMAC key
    assert rt_client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE).status_code == 200
    record = json.loads(rt.redis.hget("rsf:_registry:tenants", "brand-b"))
    record["rokt_webhook_previous_until"] = time.time() - 1
    rt.redis.hset("rsf:_registry:tenants", "brand-b", json.dumps(record))
    rt.redis.incr("rsf:_registry:version")
    assert (
        signed_webhook(rt_client, "old-secret-of-brand-b-0123456789abcdefghij", "brand-b").status_code == 401
    )


# -- webhook path token ----------------------------------------------------------------------------
def test_the_path_token_is_not_the_hmac_key(parts):
    runtime, client, _, hooks = parts
    runtime.registry.add("brand-b", COMPLETE)
    secret = runtime.registry.rotate_webhook_secret("brand-b")
    token = runtime.registry.get("brand-b").rokt_webhook_path_token
    assert len(token) >= 40 and token != secret
    assert client.post(f"/t/brand-b/webhooks/rokt/{secret}", json=SUBSCRIBE).status_code == 401
    assert client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE).status_code == 200
    assert signed_webhook(client, token, "brand-b").status_code == 401  # the token signs nothing
    assert signed_webhook(client, secret, "brand-b").json == {"ok": True, "duplicate": True}
    assert len(hooks.calls) == 1


def test_a_rotation_keeps_the_previous_path_token_for_the_grace_period(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    runtime.registry.rotate_webhook_secret("brand-b")
    first = runtime.registry.get("brand-b").rokt_webhook_path_token
    runtime.registry.rotate_webhook_secret("brand-b")
    tenant = runtime.registry.get("brand-b")
    assert tenant.webhook_path_tokens(time.time()) == (tenant.rokt_webhook_path_token, first)
    assert client.post(f"/t/brand-b/webhooks/rokt/{first}", json=SUBSCRIBE).status_code == 200
    later = time.time() + runtime.settings.webhook_secret_grace_hours * 3600 + 1
    assert tenant.webhook_path_tokens(later) == (tenant.rokt_webhook_path_token,)


def test_path_mode_off_is_header_only(parts):
    runtime, client, _, _ = parts
    runtime.registry.add("brand-b", COMPLETE)
    secret = runtime.registry.rotate_webhook_secret("brand-b")
    token = runtime.registry.get("brand-b").rokt_webhook_path_token
    runtime.registry.update("brand-b", {"rokt_webhook_path_mode": False})
    off = client.post(f"/t/brand-b/webhooks/rokt/{token}", json=SUBSCRIBE)
    wrong = client.post(f"/t/brand-b/webhooks/rokt/{'x' * 43}", json=SUBSCRIBE)
    assert off.status_code == wrong.status_code == 401 and off.json == wrong.json
    assert signed_webhook(client, secret, "brand-b").status_code == 200


def test_a_pinned_tenant_without_a_path_token_is_header_only(parts):
    _, client, _, _ = parts
    answer = client.post(f"/t/default/webhooks/rokt/{WEBHOOK_SECRET}", json=SUBSCRIBE)
    assert answer.status_code == 401
    assert signed_webhook(client).status_code == 200


def test_a_pinned_tenant_may_set_its_path_token(fake_redis):
    _, client, _, _ = make(fake_redis, ROKT_WEBHOOK_PATH_TOKEN=STRONG)
    assert client.post(f"/t/default/webhooks/rokt/{STRONG}", json=SUBSCRIBE).status_code == 200
