"""The tenant registry: stored tenants sealed at rest, seen by other processes without a restart,
pinned ones read-only, sign-in mapping enterprise ids, webhook secret rotation, refresh tokens."""

import json
import time

import pytest
from marshmallow import ValidationError

from pipeline import sandbox
from pipeline.clients.tokens import Refusals, rejection
from pipeline.infra import keys
from pipeline.infra.crypto import SecretBox, SecretUnreadable
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime, UnknownTenant
from pipeline.tenancy.tenants import (
    TenantPinned,
    TenantRegistry,
    missing_settings,
)
from pipeline.vocabulary import SfmcAuthMode, TenantStatus
from tests.unit.conftest import COMPLETE, ENV
from tests.unit.conftest import SEALING_KEY as KEY
from tests.unit.web.signed import make


@pytest.fixture
def registry_settings():
    return load_settings({**ENV, "SECRET_KEY": KEY, "TENANT_REFRESH_SECONDS": "0"})


@pytest.fixture
def registry(registry_settings, fake_redis):
    return TenantRegistry(fake_redis, registry_settings)


def test_an_added_tenant_is_complete_so_active_and_its_secrets_are_sealed_in_redis(registry, fake_redis):
    tenant = registry.add("brand-b", COMPLETE)
    assert tenant.status == TenantStatus.ACTIVE and not tenant.pinned
    raw = fake_redis.hget(keys.registry_tenants(), "brand-b")
    for secret in ("rokt-secret-b", "sfmc-secret-b", COMPLETE["jb_jwt_secret"]):
        assert secret not in raw
    record = json.loads(raw)
    assert SecretBox([KEY]).open(record["rokt_client_secret"]) == "rokt-secret-b"
    assert registry.get("brand-b").rokt_client_secret == "rokt-secret-b"


def test_a_tenant_missing_settings_stays_pending_until_they_are_given(registry):
    tenant = registry.add("brand-b", {"rokt_account_code": "acct-b"})
    assert tenant.status == TenantStatus.PENDING
    assert "rokt_client_secret" in missing_settings(tenant)
    assert registry.update("brand-b", COMPLETE).status == TenantStatus.ACTIVE


def test_another_process_sees_a_new_tenant_without_a_restart(registry_settings, fake_redis):
    web = TenantRegistry(fake_redis, registry_settings)
    worker = Runtime(registry_settings, fake_redis)
    assert web.get("brand-b") is None and worker.registry.get("brand-b") is None
    web.add("brand-b", COMPLETE)
    assert worker.tenant("brand-b").rokt_account_code == "acct-b"
    web.update("brand-b", {"rokt_account_code": "acct-b2"})
    assert worker.tenant("brand-b").rokt_account_code == "acct-b2"
    assert worker.rokt("brand-b").tenant.rokt_account_code == "acct-b2"  # its client was rebuilt


def test_a_process_rereads_at_most_every_refresh_interval(fake_redis):
    slow = TenantRegistry(
        fake_redis, load_settings({**ENV, "SECRET_KEY": KEY, "TENANT_REFRESH_SECONDS": "60"})
    )
    other = TenantRegistry(fake_redis, load_settings({**ENV, "SECRET_KEY": KEY}))
    assert slow.get("brand-b") is None
    other.add("brand-b", COMPLETE)
    assert slow.get("brand-b") is None  # within its interval it trusts its copy (no GET per call)
    slow._checked_at = time.monotonic() - 61
    assert slow.get("brand-b") is not None


def test_pinned_tenants_are_read_only_and_win_over_stored_names(registry):
    assert registry.get("default").pinned
    with pytest.raises(TenantPinned):
        registry.update("default", {"rokt_account_code": "x"})
    with pytest.raises(ValueError, match="exists"):
        registry.add("default", COMPLETE)


def test_an_empty_secret_keeps_the_stored_one_and_bad_values_name_their_field(registry):
    registry.add("brand-b", COMPLETE)
    tenant = registry.update("brand-b", {"rokt_client_secret": "", "rokt_client_id": "rokt-b2"})
    assert tenant.rokt_client_secret == "rokt-secret-b" and tenant.rokt_client_id == "rokt-b2"
    with pytest.raises(ValidationError) as caught:
        registry.update("brand-b", {"rokt_rate_limit": -1})
    assert "rokt_rate_limit" in caught.value.messages
    with pytest.raises(UnknownTenant):
        registry.update("nobody", {"rokt_client_id": "x"})


def test_disable_and_enable(registry):
    registry.add("brand-b", COMPLETE)
    assert registry.set_status("brand-b", TenantStatus.DISABLED).status == TenantStatus.DISABLED
    assert registry.names(TenantStatus.ACTIVE) == ["default"]
    assert registry.set_status("brand-b", TenantStatus.ACTIVE).status == TenantStatus.ACTIVE
    registry.add("brand-c", {})
    assert registry.set_status("brand-c", TenantStatus.ACTIVE).status == TenantStatus.PENDING  # incomplete


def test_first_sign_in_creates_a_pending_tenant_found_again_by_its_enterprise_id(registry, fake_redis):
    tenant = registry.sign_in(eid="510000001", mid="510001234", tssd="mc-abc", refresh_token="refresh-1")
    assert tenant.name == "sfmc-510000001" and tenant.status == TenantStatus.PENDING
    assert tenant.sfmc_auth_mode == SfmcAuthMode.REFRESH_TOKEN and tenant.sfmc_account_id == "510001234"
    assert tenant.sfmc_auth_base_url == "https://mc-abc.auth.marketingcloudapis.com"
    assert "refresh-1" not in fake_redis.hget(keys.registry_refresh_tokens(), tenant.name)  # sealed
    assert registry.refresh_token(tenant.name) == "refresh-1"
    again = registry.sign_in(eid="510000001", mid="999", tssd="mc-abc", refresh_token="refresh-2")
    assert again.name == tenant.name and again.sfmc_account_id == "510001234"  # the chosen MID stays
    assert registry.refresh_token(tenant.name) == "refresh-2"
    assert registry.by_eid("510000001").name == tenant.name
    moved = registry.sign_in(eid="510000001", mid="999", tssd="mc-new", refresh_token=None)
    assert moved.sfmc_auth_base_url == "https://mc-new.auth.marketingcloudapis.com"  # follows the tssd
    with pytest.raises(ValueError):
        registry.sign_in(eid="51/../x", mid="1", tssd="mc-abc", refresh_token=None)


def test_a_new_sign_in_clears_sfmcs_refusal(registry, fake_redis):
    name = registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r1").name
    refusals = Refusals(fake_redis, name, "sfmc", "digest")
    refusals.refused("SFMC refused the refresh token")
    assert rejection(fake_redis, name, "sfmc") and refusals.held()
    registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token=None)  # no new token: still refused
    assert rejection(fake_redis, name, "sfmc")
    registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r2")
    assert rejection(fake_redis, name, "sfmc") is None and refusals.held() is None


def test_new_sfmc_credentials_clear_sfmcs_refusal_and_other_changes_do_not(registry, fake_redis):
    name = registry.add("brand-b", COMPLETE).name
    refusals = Refusals(fake_redis, name, "sfmc", "digest")
    refusals.refused("SFMC refused the client credentials")
    registry.update(name, {"rokt_client_secret": "another-rokt-secret"})
    assert rejection(fake_redis, name, "sfmc") and refusals.held()
    registry.update(name, {"sfmc_client_secret": ""})  # a write-only field left blank keeps the secret
    assert rejection(fake_redis, name, "sfmc")
    registry.update(name, {"sfmc_client_secret": "the-corrected-secret"})
    assert rejection(fake_redis, name, "sfmc") is None and refusals.held() is None


def test_a_record_of_an_earlier_version_with_a_reconnect_reason_is_read(registry, fake_redis):
    name = registry.add("brand-b", COMPLETE).name
    record = json.loads(fake_redis.hget(keys.registry_tenants(), name))
    fake_redis.hset(keys.registry_tenants(), name, json.dumps({**record, "reconnect_reason": "old"}))
    registry.update(name, {"rokt_account_code": "acct-c"})  # read, changed, written again
    assert registry.get(name).rokt_account_code == "acct-c"
    assert "reconnect_reason" not in json.loads(fake_redis.hget(keys.registry_tenants(), name))


def test_an_enterprise_belongs_to_one_tenant(registry):
    registry.add("brand-b", {**COMPLETE, "sfmc_eid": "77"})
    with pytest.raises(ValidationError) as caught:
        registry.add("brand-c", {**COMPLETE, "sfmc_eid": "77"})
    assert "sfmc_eid" in caught.value.messages


def test_refresh_token_replacement_is_compare_and_set(registry):
    name = registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r1").name
    assert registry.replace_refresh_token(name, "r1", "r2")
    assert not registry.replace_refresh_token(name, "r1", "r3")  # r1 was already replaced
    assert registry.refresh_token(name) == "r2"


def test_a_rotated_webhook_secret_keeps_the_previous_one_for_the_grace_period(registry):
    registry.add("brand-b", {**COMPLETE, "rokt_webhook_secret": "old-webhook-secret-0123456789abcdefghij"})
    new = registry.rotate_webhook_secret("brand-b")
    tenant = registry.get("brand-b")
    assert len(new) >= 40 and tenant.rokt_webhook_secret == new
    assert tenant.webhook_secrets(time.time()) == (new, "old-webhook-secret-0123456789abcdefghij")
    assert tenant.webhook_secrets(time.time() + 72 * 3600 + 1) == (new,)


def test_secrets_need_a_secret_key_and_open_only_under_one_of_its_keys(fake_redis):
    bare = TenantRegistry(fake_redis, load_settings(ENV))
    with pytest.raises(ValueError, match="SECRET_KEY"):
        bare.add("brand-b", COMPLETE)
    sealed = SecretBox([KEY]).seal("s3cr3t")
    with pytest.raises(SecretUnreadable):
        SecretBox(["another-sealing-key-0123456789abcdef"]).open(sealed)
    rotated = SecretBox(["another-sealing-key-0123456789abcdef", KEY])
    assert rotated.open(sealed) == "s3cr3t"
    assert SecretBox(["another-sealing-key-0123456789abcdef"]).open(rotated.reseal(sealed)) == "s3cr3t"


def test_reseal_moves_every_secret_to_the_newest_key(registry_settings, fake_redis):
    old = TenantRegistry(fake_redis, registry_settings)
    old.add("brand-b", COMPLETE)
    old.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r1")
    new_key = "new-sealing-key-0123456789abcdefghij"
    both = TenantRegistry(fake_redis, load_settings({**ENV, "SECRET_KEY": f"{new_key},{KEY}"}))
    assert both.reseal() == 2
    only_new = TenantRegistry(fake_redis, load_settings({**ENV, "SECRET_KEY": new_key}))
    assert only_new.get("brand-b").sfmc_client_secret == "sfmc-secret-b"
    assert only_new.refresh_token("sfmc-42") == "r1"


def test_a_sign_in_in_a_process_with_a_stale_copy_keeps_what_another_process_saved(
    registry_settings, fake_redis
):
    slow = TenantRegistry(
        fake_redis, load_settings({**ENV, "SECRET_KEY": KEY, "TENANT_REFRESH_SECONDS": "60"})
    )
    fast = TenantRegistry(fake_redis, registry_settings)
    name = slow.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r1").name
    assert slow.get(name) is not None  # its copy is now cached for a minute
    fast.update(name, {k: v for k, v in COMPLETE.items() if not k.startswith("sfmc_")})
    fast.set_status(name, TenantStatus.DISABLED)
    slow.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r2")
    tenant = fast.get(name)
    assert tenant.status == TenantStatus.DISABLED and tenant.rokt_client_secret == "rokt-secret-b"


def test_a_first_sign_in_adopts_a_stored_tenant_of_its_name_and_never_takes_another_enterprises(registry):
    registry.add("sfmc-777", {"rokt_account_code": "set-by-operator"})
    tenant = registry.sign_in(eid="777", mid="1", tssd="mc-abc", refresh_token="r1")
    assert tenant.name == "sfmc-777" and tenant.rokt_account_code == "set-by-operator"
    assert tenant.sfmc_eid == "777"
    registry.add("sfmc-888", {"sfmc_eid": "999"})
    with pytest.raises(ValueError, match="another enterprise"):
        registry.sign_in(eid="888", mid="1", tssd="mc-abc", refresh_token=None)


def test_a_refresh_token_swap_survives_a_write_of_another_tenant_in_between(
    registry, fake_redis, monkeypatch
):
    name = registry.sign_in(eid="42", mid="43", tssd="mc-abc", refresh_token="r1").name
    box_open, interfered = registry.box.open, []

    def open_then_interfere(sealed):
        if not interfered:  # after WATCH, before EXEC: another tenant's token is stored
            interfered.append(True)
            fake_redis.hset(keys.registry_refresh_tokens(), "someone-else", registry.box.seal("x"))
        return box_open(sealed)

    monkeypatch.setattr(registry.box, "open", open_then_interfere)
    assert registry.replace_refresh_token(name, "r1", "r2")
    assert registry.refresh_token(name) == "r2"


def test_changed_credentials_drop_the_cached_access_token_of_that_vendor_only(registry, fake_redis):
    registry.add("brand-b", COMPLETE)
    for vendor in ("rokt", "sfmc"):
        fake_redis.set(f"rsf:brand-b:token:{vendor}", '{"access_token": "old"}')
    registry.update("brand-b", {"sfmc_account_id": "999"})  # another business unit
    assert fake_redis.get("rsf:brand-b:token:sfmc") is None
    assert fake_redis.get("rsf:brand-b:token:rokt") is not None
    registry.update("brand-b", {"rokt_account_code": "renamed"})  # not a credential
    assert fake_redis.get("rsf:brand-b:token:rokt") is not None


def test_rotating_twice_within_the_grace_period_keeps_every_earlier_secret(registry):
    registry.add("brand-b", {**COMPLETE, "rokt_webhook_secret": "configured-at-rokt-0123456789abcdefghij"})
    second = registry.rotate_webhook_secret("brand-b")
    third = registry.rotate_webhook_secret("brand-b")
    accepted = registry.get("brand-b").webhook_secrets(time.time())
    assert accepted[0] == third and set(accepted) == {
        third,
        second,
        "configured-at-rokt-0123456789abcdefghij",
    }


def test_enabling_a_disabled_tenant_records_when_it_resumed(registry):
    registry.add("brand-b", COMPLETE)
    assert registry.get("brand-b").resumed_at == 0.0
    registry.set_status("brand-b", TenantStatus.DISABLED)
    before = time.time()
    assert registry.set_status("brand-b", TenantStatus.ACTIVE).resumed_at >= before


@pytest.mark.parametrize(
    ("blank", "refused"),
    [
        ({"rokt_account_code": ""}, ["rokt_account_code"]),
        ({"rokt_client_id": "", "sfmc_account_id": ""}, ["rokt_client_id", "sfmc_account_id"]),
        # no server-to-server client and no sign-in refresh token: nothing to call SFMC with
        ({"sfmc_client_id": "", "sfmc_auth_mode": SfmcAuthMode.REFRESH_TOKEN.value}, ["sfmc_refresh_token"]),
    ],
)
def test_an_active_tenant_keeps_its_required_settings(registry, blank, refused):
    registry.add("brand-b", COMPLETE)
    before = registry.get("brand-b")
    with pytest.raises(ValidationError) as caught:
        registry.update("brand-b", blank)
    assert sorted(caught.value.messages) == refused
    assert all("required while the tenant is active" in m[0] for m in caught.value.messages.values())
    assert registry.get("brand-b") == before and before.status == TenantStatus.ACTIVE


def test_a_pending_or_disabled_tenant_may_be_taken_apart(registry):
    registry.add("brand-b", {"rokt_account_code": "acct-b"})
    assert registry.update("brand-b", {"rokt_account_code": ""}).rokt_account_code == ""
    registry.update("brand-b", {**COMPLETE})
    registry.set_status("brand-b", TenantStatus.DISABLED)
    tenant = registry.update("brand-b", {"rokt_account_code": ""})
    assert tenant.status == TenantStatus.DISABLED and tenant.rokt_account_code == ""
    assert registry.set_status("brand-b", TenantStatus.ACTIVE).status == TenantStatus.PENDING


def test_an_active_record_missing_a_setting_is_read_as_pending(registry, fake_redis, caplog):
    """A record written before required settings were guarded (or by hand): executes must not be
    accepted for it, and execute accepts only active tenants; an operator is told why, once."""
    registry.add("brand-b", COMPLETE)
    record = json.loads(fake_redis.hget(keys.registry_tenants(), "brand-b"))
    assert record["status"] == "active"
    record["rokt_account_code"] = ""
    fake_redis.hset(keys.registry_tenants(), "brand-b", json.dumps(record))
    fake_redis.incr(keys.registry_version())
    with caplog.at_level("WARNING", logger="pipeline.tenancy.tenants"):
        assert registry.get("brand-b").status == TenantStatus.PENDING
        fake_redis.incr(keys.registry_version())  # read again: said once, not at every refresh
        assert registry.get("brand-b").status == TenantStatus.PENDING
    said = [r.getMessage() for r in caplog.records if "stored active but lacks" in r.getMessage()]
    assert said == [
        "tenant brand-b is stored active but lacks rokt_account_code: treated as pending (executes "
        "answer 503) until App Settings or `rokt-sfmc tenants update` set them"
    ]
    # and written back pending by the next change
    assert registry.update("brand-b", {"rokt_account_id": "x"}).status == TenantStatus.PENDING
    assert registry.update("brand-b", {"rokt_account_code": "acct-b"}).status == TenantStatus.ACTIVE


# -- the registry refuses what load_settings refuses -------------------------------------------


@pytest.fixture
def registry_parts(fake_redis):
    return make(fake_redis)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"jb_jwt_secret": "short"}, "jb_jwt_secret"),
        ({"rokt_webhook_secret": sandbox.SANDBOX_WEBHOOK_SECRET}, "rokt_webhook_secret"),
        ({"rokt_webhook_path_token": "abcd" * 10}, "rokt_webhook_path_token"),
        ({"rokt_api_base_url": "http://rokt.test"}, "rokt_api_base_url"),
        ({"sfmc_auth_base_url": "http://auth.b.test"}, "sfmc_auth_base_url"),
    ],
)
def test_the_registry_refuses_them_at_add_and_update_naming_the_field(registry_parts, values, field):
    registry = registry_parts[0].registry
    with pytest.raises(ValidationError) as added:
        registry.add("brand-b", {**COMPLETE, **values})
    assert set(added.value.messages) == {field}
    registry.add("brand-b", COMPLETE)
    with pytest.raises(ValidationError) as updated:
        registry.update("brand-b", values)
    assert set(updated.value.messages) == {field}
    assert registry.update("brand-b", {"rokt_account_code": "other"}).rokt_account_code == "other"
