"""Settings: one tenant from the environment, or many from a TOML file; secrets strong enough and
not published, vendor URLs https outside the sandbox."""

import secrets
from dataclasses import fields, replace

import pytest

from pipeline import sandbox
from pipeline.settings import (
    KNOWN_PUBLIC_SECRETS,
    REGISTRY_ONLY_FIELDS,
    SETTINGS_TABLE,
    Settings,
    Tenant,
    load_settings,
    secret_problem,
)
from tests.unit.conftest import ENV, JWT_SECRET

STRONG = secrets.token_urlsafe(32)


def test_default_tenant_from_environment():
    settings = load_settings(
        {
            "JB_JWT_SECRET": "jwt-s3cr3t-0123456789abcdefghijklmnop",
            "ROKT_CLIENT_SECRET": "rokt-s3cr3t",
            "ROKT_RATE_LIMIT": "25",
        }
    )
    tenant = settings.tenant("default")
    assert tenant.rokt_rate_limit == 25.0
    assert tenant.sfmc_status_de_key == "RoktCalendarEventStatus"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert "s3cr3t" not in repr(tenant) and "s3cr3t" not in repr(settings)  # secrets never print


def test_tenants_file(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[tenants.brand-a]\njb_jwt_secret = "jwt-secret-of-brand-a-0123456789abcdef"\n'
        'rokt_account_code = "acct-a"\n'
        '[tenants.brand-b]\njb_jwt_secret = "jwt-secret-of-brand-b-0123456789abcdef"\n'
        "sfmc_rate_limit = 10\n"
    )
    settings = load_settings({"TENANTS_FILE": str(path)})
    assert set(settings.tenants) == {"brand-a", "brand-b"}
    assert settings.tenant("brand-a").rokt_account_code == "acct-a"
    assert settings.tenant("brand-b").sfmc_rate_limit == 10.0
    assert settings.tenant("default") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenants.a]\nunknown_key = 1\n", "unknown_key"),
        ("[tenants.a]\nrokt_rate_limit = -1\n", "rokt_rate_limit"),
        ('[tenants."Bad Name"]\n', "name"),
        ("title = 'x'\n", r"no \[tenants"),
    ],
)
def test_invalid_tenants_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "tenants.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_settings({"TENANTS_FILE": str(path)})


def test_settings_table_lists_every_tenant_key():
    names = {name for name, _meaning, _default in SETTINGS_TABLE}
    from pipeline.settings import TENANT_KEYS

    assert {key.upper() for key in TENANT_KEYS} <= names


def _field_defaults(cls, skip):
    return {f.name: f.default for f in fields(cls) if f.name not in skip}


def test_missing_or_empty_variables_take_the_dataclass_defaults():
    defaults = _field_defaults(Settings, {"tenants"})
    for env in ({}, {name: "" for name, _meaning, _default in SETTINGS_TABLE}):
        settings = load_settings(env)
        assert {name: getattr(settings, name) for name in defaults} == defaults
        assert settings.tenants == {}  # no tenant variable: every tenant lives in the registry


def test_missing_tenants_file_keys_take_the_dataclass_defaults(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text('[tenants.brand-a]\nrokt_account_code = "acct-a"\n')
    tenant = load_settings({"TENANTS_FILE": str(path)}).tenant("brand-a")
    assert tenant == Tenant(name="brand-a", rokt_account_code="acct-a", pinned=True)
    assert tenant.rokt_rate_limit == 50.0 and tenant.sfmc_status_de_key == "RoktCalendarEventStatus"


def test_every_settings_table_default_is_the_dataclass_default():
    documented = {name: default for name, _meaning, default in SETTINGS_TABLE}
    settings_fields = _field_defaults(Settings, {"tenants"})
    tenant_fields = _field_defaults(Tenant, {"name", *REGISTRY_ONLY_FIELDS})
    # one row per field (and TENANTS_FILE), one field per row
    assert set(documented) == {n.upper() for n in [*settings_fields, *tenant_fields]} | {"TENANTS_FILE"}
    for name, default in {**settings_fields, **tenant_fields}.items():
        assert (documented[name.upper()] is None) == (default in (None, "")), name
    # the documented text, read back as a variable, is exactly the default
    spelled_out = {name: default for name, default in documented.items() if default is not None}
    spelled = load_settings(spelled_out)
    assert replace(spelled, tenants={}) == load_settings({})
    assert spelled.tenants == {"default": Tenant(name="default", pinned=True)}


def test_every_settings_variable_is_read_into_its_field():
    urls = {"sfmc_app_auth_base_url", "sfmc_tssd_auth_url", "rokt_api_default_base_url"}  # https only
    names = _field_defaults(
        Settings,
        {"tenants", "jb_allowed_origins", "mc_allowed_origins", "secret_key", "sandbox", "log_format", *urls}
        | {"broker_url", "history_url"},  # URLs of known schemes (tests/unit/infra/test_broker.py)
    )
    settings = load_settings({name.upper(): "11" for name in names})
    for name, default in names.items():
        assert getattr(settings, name) != default and str(getattr(settings, name)) in ("11", "11.0"), name
    origins = load_settings({"JB_ALLOWED_ORIGINS": "http://127.0.0.1:7"}).jb_allowed_origins
    assert origins == ("http://127.0.0.1:7",) != Settings.jb_allowed_origins


def test_allowed_origins_default_to_journey_builder_and_parse_into_patterns():
    # `{stack}`: the tenant's own stack (pipeline.web.origins.frame_origins), never every stack
    assert load_settings({}).jb_allowed_origins == ("https://jbinteractions.{stack}.marketingcloudapps.com",)
    assert load_settings({}).mc_allowed_origins == (
        "https://mc.{stack}.exacttarget.com",
        "https://*.{stack}.marketingcloudapps.com",
    )
    settings = load_settings(
        {"JB_ALLOWED_ORIGINS": " https://jbinteractions.*.marketingcloudapps.com, http://127.0.0.1:*,,"}
    )
    assert settings.jb_allowed_origins == (
        "https://jbinteractions.*.marketingcloudapps.com",
        "http://127.0.0.1:*",
    )
    documented = {name: default for name, _meaning, default in SETTINGS_TABLE}
    assert documented["JB_ALLOWED_ORIGINS"] == "https://jbinteractions.{stack}.marketingcloudapps.com"


@pytest.mark.parametrize(
    "value",
    [
        "jbinteractions.s7.marketingcloudapps.com",  # no scheme
        "https://jbinteractions.s7.marketingcloudapps.com/path",
        "https://*",  # every host
        "https://*.com",  # a wildcard with one fixed label to its right
        "https://a.b.c:8x",
        ",",
        "https://{stack}.com",  # `{stack}` is a wildcard until the stack is known
        "https://jb{stack}.example.test",  # `{stack}` only as a whole label
        "https://jb.{tenant}.example.test",  # no other placeholder
    ],
)
def test_unusable_origin_patterns_are_refused_at_start(value):
    with pytest.raises(ValueError, match="JB_ALLOWED_ORIGINS"):
        load_settings({"JB_ALLOWED_ORIGINS": value})


def test_the_tenant_schema_validates_exactly_the_tenant_fields():
    from marshmallow import missing

    from schemas.tenants import TenantSchema

    schema_fields = TenantSchema().fields
    assert set(schema_fields) == {f.name for f in fields(Tenant)}
    assert all(f.load_default is missing for f in schema_fields.values())  # defaults live in Tenant


def test_the_apps_vendor_urls_must_be_https_outside_the_sandbox():
    for name in ("SFMC_APP_AUTH_BASE_URL", "SFMC_TSSD_AUTH_URL", "ROKT_API_DEFAULT_BASE_URL"):
        with pytest.raises(ValueError, match=name):
            load_settings({name: "http://auth.example/{tssd}"})
        sandboxed = load_settings({name: "http://127.0.0.1:9/{tssd}", "SANDBOX": "1"})
        assert getattr(sandboxed, name.lower()) == "http://127.0.0.1:9/{tssd}"  # taken as it is
        load_settings({name: "https://auth.example/{tssd}"})


def test_log_format_is_json_or_text():
    assert load_settings({}).log_format == "json"
    assert load_settings({"LOG_FORMAT": "TEXT"}).log_format == "text"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})


# -- secrets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (STRONG, True),
        (secrets.token_hex(32), True),
        (JWT_SECRET, True),
        ("short-secret", False),
        ("a" * 40, False),
        ("abcdefgh" * 5, False),  # eight distinct characters, one pattern repeated
        ("0123456789abcdef" * 2, False),
        ("x" * 31, False),
    ],
    # named, not shown: random values would differ between the processes of `pytest -n`
    ids=["urlsafe", "hex", "unit-test", "short", "one-char", "repeated-8", "repeated-16", "31-chars"],
)
def test_a_secret_needs_32_characters_and_no_repeated_pattern(value, ok):
    assert (secret_problem(value, sandbox=False) is None) is ok


def test_the_public_list_holds_exactly_the_sandbox_constants():
    assert {
        sandbox.SANDBOX_JWT_SECRET,
        sandbox.SANDBOX_WEBHOOK_SECRET,
        sandbox.SANDBOX_WEBHOOK_PATH_TOKEN,
        sandbox.SANDBOX_SECRET_KEY,
    } == KNOWN_PUBLIC_SECRETS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROKT_WEBHOOK_SECRET": "hook-secret"}, "tenant 'default': ROKT_WEBHOOK_SECRET: too short"),
        ({"JB_JWT_SECRET": "jwt-s3cr3t"}, "tenant 'default': JB_JWT_SECRET: too short"),
        ({"ROKT_WEBHOOK_PATH_TOKEN": "t" * 40}, "ROKT_WEBHOOK_PATH_TOKEN: too predictable"),
        ({"JB_JWT_SECRET": sandbox.SANDBOX_JWT_SECRET}, "JB_JWT_SECRET: is a published sandbox secret"),
        ({"ROKT_WEBHOOK_SECRET": sandbox.SANDBOX_WEBHOOK_SECRET}, "ROKT_WEBHOOK_SECRET: is a published"),
        ({"SECRET_KEY": sandbox.SANDBOX_SECRET_KEY}, "SECRET_KEY: is a published sandbox key"),
        ({"ROKT_API_BASE_URL": "http://rokt.test"}, "ROKT_API_BASE_URL: must be an https"),
        ({"SFMC_AUTH_BASE_URL": "http://auth.test"}, "SFMC_AUTH_BASE_URL: must be an https"),
    ],
)
def test_load_refuses_weak_or_public_secrets_and_plain_http_vendors_naming_tenant_and_key(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings({**ENV, **env})


def test_a_tenants_file_error_names_the_file_the_tenant_and_the_key(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text(
        f'[tenants.ok]\njb_jwt_secret = "{STRONG}"\n[tenants.weak]\nrokt_webhook_secret = "abc"\n'
    )
    with pytest.raises(ValueError, match=r"tenants.toml: tenant 'weak': rokt_webhook_secret: too short"):
        load_settings({"TENANTS_FILE": str(path)})


def test_the_sandbox_accepts_its_own_secrets_and_plain_http():
    settings = load_settings(
        {**sandbox.sandbox_env("http://127.0.0.1:1", "http://127.0.0.1:2"), "SANDBOX": "1"}
        | {"SECRET_KEY": sandbox.SANDBOX_SECRET_KEY}
    )
    assert settings.tenant("default").rokt_webhook_secret == sandbox.SANDBOX_WEBHOOK_SECRET
    with pytest.raises(ValueError, match="too short"):  # the sandbox does not excuse a weak secret
        load_settings({"SANDBOX": "1", "JB_JWT_SECRET": "weak-one"})


def test_a_tenants_frame_origins_are_checked_by_the_origin_grammar_naming_the_field():
    from marshmallow import ValidationError

    from pipeline.settings import tenant_from_mapping

    with pytest.raises(ValidationError) as refused:
        tenant_from_mapping("acme", {"frame_origins": "not an origin"})
    assert list(refused.value.messages) == ["frame_origins"]
    assert tenant_from_mapping("acme", {"frame_origins": "https://mc.s4.exacttarget.com"}).frame_origins


def test_a_pinned_tenants_stack_is_taken_as_sfmc_writes_it():
    from pipeline.settings import tenant_from_mapping

    assert tenant_from_mapping("acme", {"sfmc_stack": "S4"}).sfmc_stack == "s4"
