"""The deployment's salt (pipeline/infra/salt.py): created once, the same for every process of a
Redis, read from Redis about once a minute, and set again after Redis lost it."""

from __future__ import annotations

import fakeredis
import pytest

from pipeline.infra import keys, salt


@pytest.fixture
def server():
    return fakeredis.FakeServer()


def client(server) -> fakeredis.FakeRedis:
    """A client of its own pool: what another process of the deployment holds."""
    return fakeredis.FakeRedis(server=server, decode_responses=True)


def test_it_is_created_once_and_every_client_of_the_redis_gets_the_same(server):
    first, second = client(server), client(server)
    made = salt.deployment_salt(first)
    assert len(made) == 64 and first.get(keys.privacy_salt()) == made
    assert salt.deployment_salt(second) == made  # set NX: the second process takes the first's
    assert salt.deployment_salt(client(fakeredis.FakeServer())) != made  # another deployment


def test_a_pipeline_is_looked_up_by_its_clients_pool(server):
    r = client(server)
    assert salt.deployment_salt(r.pipeline(transaction=True)) == salt.deployment_salt(r)


def test_it_is_read_from_redis_once_a_minute_not_once_a_name(server, monkeypatch):
    r = client(server)
    now = [1000.0]
    monkeypatch.setattr(salt.time, "monotonic", lambda: now[0])
    made = salt.deployment_salt(r)
    r.set(keys.privacy_salt(), "changed-behind-its-back")
    now[0] += salt.RECHECK_SECONDS - 1
    assert salt.deployment_salt(r) == made  # the process's copy: no round trip
    now[0] += 2
    assert salt.deployment_salt(r) == "changed-behind-its-back"  # looked again: Redis's wins


def test_a_redis_that_lost_it_gets_the_processs_copy_back(server, monkeypatch):
    """A failover to an empty replica: the first process to look again sets the salt it held,
    and the others (a new process too) take that one, so every name is made alike again."""
    running, now = client(server), [1000.0]
    monkeypatch.setattr(salt.time, "monotonic", lambda: now[0])
    made = salt.deployment_salt(running)
    client(server).flushall()
    now[0] += salt.RECHECK_SECONDS + 1
    assert salt.deployment_salt(running) == made
    assert salt.deployment_salt(client(server)) == made


def test_redis_away_at_a_recheck_keeps_the_copy_and_away_at_the_first_read_raises(server, monkeypatch):
    import redis

    r, now = client(server), [1000.0]
    monkeypatch.setattr(salt.time, "monotonic", lambda: now[0])
    made = salt.deployment_salt(r)
    server.connected = False
    now[0] += salt.RECHECK_SECONDS + 1
    assert salt.deployment_salt(r) == made
    with pytest.raises(redis.ConnectionError):
        salt.deployment_salt(client(server))
