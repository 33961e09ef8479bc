"""The keyspace check of the integration session (tests/keyspace_check.py) can fail: planted
contact keys and emails in key names are caught, digests are not."""

import pytest
import sqlalchemy as sa

from pipeline.infra import keys
from pipeline.stores.history import HistoryStore, executions
from tests.keyspace_check import check_keyspace, identities_seen, key_name_leaks


@pytest.fixture
def store():
    history = HistoryStore("sqlite://")
    history.migrate()
    return history


def test_digests_pass_and_plain_identities_are_named():
    seen = {"cust-00042", "ab"}
    clean = [
        keys.contact_executions("t", keys.personal_digest("salt", "t", "cust-00042")),
        keys.execution("t", "e-1"),
    ]
    assert key_name_leaks(clean, seen) == []
    planted = [
        keys.tenant_key("t", "contact-subs", "cust-00042"),  # a whole contact key
        keys.tenant_key("t", "x", "ab"),  # a short one, as a whole segment
        keys.tenant_key("t", "idx", "ava@example.com"),  # any email
        keys.tenant_key("t", "idx", "C0000042"),  # jbsim's contact keys
    ]
    assert key_name_leaks(clean + planted, seen) == planted


def test_the_check_reads_identities_from_redis_and_the_store(fake_redis, store):
    fake_redis.hset(keys.execution("t", "e-1"), mapping={"contactKey": "redis-only-key"})
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(executions).values(
                tenant="t",
                execution_id="e-2",
                received_on=sa.func.current_date(),
                status="confirmed",
                event_id="ev",
                contact_key="store-only-key",
                updated_at="2026-01-01T00:00:00Z",
                record="{}",
            )
        )
    assert identities_seen(fake_redis, store) == {"redis-only-key", "store-only-key"}
    check_keyspace(fake_redis, store)
    fake_redis.set(keys.tenant_key("t", "cache", "store-only-key"), 1)
    with pytest.raises(AssertionError, match="1 key name"):
        check_keyspace(fake_redis, store)
