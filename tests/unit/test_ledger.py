"""Ledger state rules, on fakeredis with Lua."""

from pipeline.ledger import Ledger, event_id_for, execution_id
from pipeline.vocabulary import State


def test_ids_are_deterministic_and_distinct():
    assert execution_id("a", "b") == execution_id("a", "b")
    assert execution_id("a", "b") != execution_id("a", "c")
    assert event_id_for(execution_id("a", "b")) == event_id_for(execution_id("a", "b"))
    assert event_id_for("x") != event_id_for("y")


def test_claim_is_set_if_absent(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.claim("t", "e1", {"contactKey": "C1", "args": {"a": 1}}) is True
    assert ledger.claim("t", "e1", {"contactKey": "C2"}) is False
    assert ledger.get("t", "e1").contact_key == "C1"
    assert ledger.get("t", "e1").args == {"a": 1}
    assert ledger.open_count("t") == 1
    assert fake_redis.ttl("rsf:t:exec:e1") > 0


def test_tenants_do_not_share_executions(fake_redis):
    ledger = Ledger(fake_redis)
    assert ledger.claim("brand-a", "e1", {})
    assert ledger.claim("brand-b", "e1", {})


def test_transition_only_from_allowed_states(fake_redis):
    ledger = Ledger(fake_redis)
    ledger.claim("t", "e1", {})
    assert ledger.transition("t", "e1", State.ACCEPTED) == (True, State.QUEUED)
    assert ledger.transition("t", "e1", State.FAILED) == (False, State.ACCEPTED)  # terminal stays terminal
    assert ledger.transition("t", "e1", State.CONFIRMED, (State.ACCEPTED,)) == (True, State.ACCEPTED)
    assert ledger.transition("t", "missing", State.ACCEPTED) == (False, "")
    assert ledger.open_count("t") == 0
    assert ledger.counts("t") == {"received": 1, "accepted": 0, "confirmed": 1}


def test_release_claim_allows_a_new_claim(fake_redis):
    ledger = Ledger(fake_redis)
    ledger.claim("t", "e1", {})
    ledger.release_claim("t", "e1")
    assert ledger.get("t", "e1") is None
    assert ledger.claim("t", "e1", {}) is True
