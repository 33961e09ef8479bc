"""The chaos scenarios' own bookkeeping, without a stack: kill-postgres calls its hook once,
off the main chaos loop, and the run's `stop()` waits for PostgreSQL to be back."""

import threading

import pytest

from pipeline.sandbox import chaos
from pipeline.sandbox.chaos import Chaos, ChaosHooks, parse_scenarios


def test_kill_postgres_is_a_scenario_of_its_own():
    assert parse_scenarios("crash-redis, kill-postgres") == ("crash-redis", "kill-postgres")
    with pytest.raises(ValueError, match="kill-postgres"):  # the error lists it among the choices
        parse_scenarios("kill-postgress")


def test_kill_postgres_kills_once_and_stop_waits_until_it_is_back(monkeypatch):
    monkeypatch.setattr(chaos, "POSTGRES_KILL_AFTER", 0.0)
    calls, back = [], threading.Event()

    def kill_postgres(down: float) -> None:
        calls.append(down)
        back.wait(5)  # down for a while: stop() must not return before it is back

    hooks = ChaosHooks("http://rokt.invalid", "http://sfmc.invalid", 50, lambda: None)
    hooks.kill_postgres = kill_postgres
    monkey = Chaos(("kill-postgres",), hooks).start()
    threading.Timer(0.3, back.set).start()
    injected = monkey.stop()
    assert back.is_set() and calls == [chaos.POSTGRES_DOWN_SECONDS]
    assert injected == {"postgres_kills": 1}


def test_a_run_stopped_before_the_kill_kills_nothing():
    calls = []
    hooks = ChaosHooks("http://rokt.invalid", "http://sfmc.invalid", 50, lambda: None)
    hooks.kill_postgres = calls.append
    assert Chaos(("kill-postgres",), hooks).start().stop() == {} and calls == []
