"""Execute's WAIT for Redis replicas (pipeline/infra/replica_wait.py): the decision on what WAIT says.
WAIT itself, on a real master and replica, is tests/integration/test_redis_ha.py."""

from __future__ import annotations

import pytest
import redis

from pipeline.infra.replica_wait import replicated, wait_replicas, waitaof_supported


class _Pipe:
    def __init__(self, owner: _Redis) -> None:
        self.owner = owner
        self.commands: list[tuple] = []

    def incr(self, key: str) -> None:
        self.commands.append(("INCR", key))

    def wait(self, replicas: int, timeout: int) -> None:
        self.commands.append(("WAIT", replicas, timeout))

    def execute(self) -> list:
        self.owner.sent.append(self.commands)
        if isinstance(self.owner.acked, Exception):
            raise self.owner.acked
        return [1, self.owner.acked]


class _Redis:
    """What WAIT answers, and which commands went out in one pipeline (one connection)."""

    def __init__(self, acked: int | Exception, version: str = "7.0.15") -> None:
        self.acked, self.version = acked, version
        self.sent: list[list[tuple]] = []

    def pipeline(self, transaction: bool = True) -> _Pipe:
        assert transaction is False
        return _Pipe(self)

    def info(self, section: str) -> dict:
        return {"redis_version": self.version}


def test_wait_goes_out_after_a_write_on_the_same_connection():
    r = _Redis(acked=1)
    assert wait_replicas(r, "acme", 1, 250) == 1
    assert r.sent == [[("INCR", "rsf:acme:durability:waits"), ("WAIT", 1, 250)]]


def test_nothing_is_asked_when_the_setting_is_off():
    r = _Redis(acked=0)
    assert replicated(r, "acme", 0, 500) is True
    assert wait_replicas(r, "acme", 0, 500) == 0
    assert r.sent == []


def test_enough_replicas_pass_and_fewer_do_not():
    assert replicated(_Redis(acked=2), "acme", 2, 500) is True
    assert replicated(_Redis(acked=3), "acme", 2, 500) is True
    assert replicated(_Redis(acked=1), "acme", 2, 500) is False


def test_a_redis_error_during_wait_is_not_replicated():
    assert replicated(_Redis(acked=redis.ConnectionError("gone")), "acme", 1, 500) is False


@pytest.mark.parametrize(("version", "supported"), [("6.2.12", False), ("7.0.15", False), ("7.2.4", True)])
def test_waitaof_exists_from_redis_7_2(version, supported):
    assert waitaof_supported(_Redis(acked=0, version=version)) is supported
