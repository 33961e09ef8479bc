"""Fast unit fixtures: fakeredis (with Lua) and an in-memory tenant; no network."""

import fakeredis
import pytest

from pipeline.runtime import Runtime
from pipeline.settings import load_settings

JWT_SECRET = "unit-test-jwt-secret-0123456789abcdef"
ENV = {
    "REDIS_URL": "redis://unused:6379/0",
    "JB_JWT_SECRET": JWT_SECRET,
    "ROKT_API_BASE_URL": "https://rokt.test",
    "ROKT_CLIENT_ID": "rokt-id",
    "ROKT_CLIENT_SECRET": "rokt-secret",
    "ROKT_ACCOUNT_CODE": "acct",
    "ROKT_RATE_LIMIT": "50",
    "SFMC_AUTH_BASE_URL": "https://auth.sfmc.test",
    "SFMC_CLIENT_ID": "sfmc-id",
    "SFMC_CLIENT_SECRET": "sfmc-secret",
    "SFMC_ACCOUNT_ID": "123",
    "SFMC_RATE_LIMIT": "1000",
}


@pytest.fixture
def fake_redis():
    server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=server, decode_responses=True)


@pytest.fixture
def settings():
    return load_settings(ENV)


@pytest.fixture
def runtime(settings, fake_redis):
    return Runtime(settings, fake_redis)
