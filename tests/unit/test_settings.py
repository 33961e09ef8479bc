"""Settings: one tenant from the environment, or many from a TOML file."""

import pytest

from pipeline.settings import SETTINGS_TABLE, load_settings


def test_default_tenant_from_environment():
    settings = load_settings(
        {"JB_JWT_SECRET": "jwt-s3cr3t", "ROKT_CLIENT_SECRET": "rokt-s3cr3t", "ROKT_RATE_LIMIT": "25"}
    )
    tenant = settings.tenant("default")
    assert tenant.rokt_rate_limit == 25.0
    assert tenant.sfmc_status_de_key == "RoktCalendarEventStatus"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert "s3cr3t" not in repr(tenant) and "s3cr3t" not in repr(settings)  # secrets never print


def test_tenants_file(tmp_path):
    path = tmp_path / "tenants.toml"
    path.write_text(
        '[tenants.brand-a]\njb_jwt_secret = "a"\nrokt_account_code = "acct-a"\n'
        '[tenants.brand-b]\njb_jwt_secret = "b"\nsfmc_rate_limit = 10\n'
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
