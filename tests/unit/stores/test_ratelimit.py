"""The global limiter, on fakeredis with Lua."""

import itertools
import time

import fakeredis
import pytest

from pipeline.stores import ratelimit
from pipeline.stores.ratelimit import JITTER_ALLOWANCE, RateLimited, RateLimiter, holding_ticket


def test_limiter_spaces_requests_at_the_rate(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=20)
    granted = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        if limiter.try_acquire() == 0:
            granted += 1
    assert 9 <= granted <= 11  # 20/s less 4% headroom for 0.5 s, plus the first


def _wait_after_a_late_request(limiter: RateLimiter, late: float) -> float:
    assert limiter.try_acquire() == 0
    time.sleep(limiter.emission + late)  # the next request comes `late` seconds after its slot
    assert limiter.try_acquire() == 0
    return limiter.try_acquire()


def test_a_late_request_keeps_the_pace_within_the_tolerance(fake_redis):
    strict = RateLimiter(fake_redis, "strict", "rokt", rate=2, tolerance=0)
    tolerant = RateLimiter(fake_redis, "tolerant", "rokt", rate=2, tolerance=0.2)
    # strict: the lateness is lost, the next slot is a whole interval from now
    assert _wait_after_a_late_request(strict, 0.05) > strict.emission - 0.02
    # tolerant: the pace is kept, the next slot is one interval after the missed one
    assert _wait_after_a_late_request(tolerant, 0.05) < tolerant.emission - 0.1


def test_the_tolerance_never_eats_the_jitter_allowance():
    for rate in (1, 20, 50, 100, 1000):
        limiter = RateLimiter(fakeredis.FakeRedis(), "t", "rokt", rate=rate)
        # the (rate+1)-th request may leave rate intervals less the tolerance after the first
        assert rate * limiter.emission - limiter.tolerance >= 1.0 + JITTER_ALLOWANCE - 1e-9


def test_a_wider_jitter_allowance_is_paid_for_by_a_longer_interval():
    limiter = RateLimiter(fakeredis.FakeRedis(), "t", "rokt", rate=20, jitter=0.1)
    assert 20 * limiter.emission - limiter.tolerance >= 1.1 - 1e-9


def test_limiter_is_shared_through_redis(fake_redis):
    a = RateLimiter(fake_redis, "t", "rokt", rate=1)
    b = RateLimiter(fake_redis, "t", "rokt", rate=1)
    assert a.try_acquire() == 0
    assert b.try_acquire() > 0.5


def test_limiter_keys_are_per_tenant(fake_redis):
    assert RateLimiter(fake_redis, "a", "rokt", rate=1).try_acquire() == 0
    assert RateLimiter(fake_redis, "b", "rokt", rate=1).try_acquire() == 0


def test_pause_stops_the_whole_account_and_long_waits_raise(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=100)
    limiter.pause(5)
    assert 4 < RateLimiter(fake_redis, "t", "rokt", rate=100).try_acquire() <= 5
    with pytest.raises(RateLimited) as caught:
        limiter.acquire(max_sleep=1)
    assert caught.value.retry_after > 4
    limiter.pause(1)  # a shorter pause never shortens a longer one
    assert limiter.try_acquire() > 4


# -- admit: the Rokt stage's gate (a threads pool: no sleeping in the slot beyond a budget) ----


def test_admit_takes_a_free_slot_and_sleeps_only_within_its_budget(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=20)  # ~52 ms apart
    limiter.admit(sleep_budget=0.0)
    started = time.monotonic()
    limiter.admit(sleep_budget=0.2)  # the next slot is ~52 ms away: slept, not deferred
    assert 0.03 < time.monotonic() - started < 0.2
    with pytest.raises(RateLimited) as caught:
        limiter.admit(sleep_budget=0.01)
    assert caught.value.ticket > 0 and 0.03 < caught.value.retry_after < 0.2


def _oversleeping(monkeypatch, extra: list[float]) -> list[float]:
    """time.sleep that sleeps `extra.pop(0)` seconds too long per call (a busy host); returns
    the requested sleeps."""
    asked: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        real_sleep(seconds + (extra.pop(0) if extra else 0.0))

    monkeypatch.setattr(ratelimit.time, "sleep", sleep)
    return asked


def _slow_limiter(fake_redis) -> RateLimiter:
    """Slots ~0.5 s apart, and a call 100 ms late for its slot gives it up: margins that a
    loaded test host's own scheduling delays cannot cross."""
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=2, jitter=0.0)
    limiter.late_wake_limit = 0.1
    limiter.admit(sleep_budget=0.0)  # the first slot is free: sent at once
    return limiter


def test_a_call_that_wakes_too_late_gives_its_slot_up_and_takes_the_next(fake_redis, monkeypatch):
    limiter = _slow_limiter(fake_redis)
    asked = _oversleeping(monkeypatch, [0.25])  # the first sleep ends 250 ms after its slot
    with holding_ticket(0):
        limiter.admit(sleep_budget=2.0)
    # slept ~0.5 s for the second slot, woke too late for it, slept ~0.25 s more for the third
    assert len(asked) == 2 and limiter.late_wakes() == 1 and limiter.deferred() == 0
    assert 0.4 < asked[0] <= limiter.emission and 0.1 < asked[1] < 0.4
    tat = float(fake_redis.get(limiter.key))
    now = float(fake_redis.time()[0]) + fake_redis.time()[1] / 1e6
    assert abs(tat - limiter.emission - limiter.tolerance - now) < 0.1  # sent in the third slot


def test_a_call_that_wakes_a_little_late_keeps_its_slot(fake_redis, monkeypatch):
    limiter = _slow_limiter(fake_redis)
    asked = _oversleeping(monkeypatch, [0.02])
    limiter.admit(sleep_budget=2.0)
    assert len(asked) == 1 and limiter.late_wakes() == 0


def test_a_late_call_asks_again_only_within_what_is_left_of_its_budget(fake_redis, monkeypatch):
    limiter = _slow_limiter(fake_redis)
    _oversleeping(monkeypatch, [0.25])
    with holding_ticket(0), pytest.raises(RateLimited) as caught:
        limiter.admit(sleep_budget=0.6)  # 0.5 s asleep + 0.25 s late: no budget left to sleep
    # the third slot, ~0.25 s away, becomes this call's ticket, not a third sleep; the task comes
    # back its whole budget (0.6 s) before the ticket, so at once
    assert limiter.late_wakes() == 1 and limiter.deferred() == 1
    now = float(fake_redis.time()[0]) + fake_redis.time()[1] / 1e6
    assert caught.value.retry_after == 0 and 0.1 < caught.value.ticket - now < 0.4


def test_a_host_late_for_every_slot_still_sends(fake_redis, monkeypatch):
    limiter = _slow_limiter(fake_redis)
    asked = _oversleeping(monkeypatch, [0.25] * 10)  # each next slot is ~0.25 s on: slept for again
    limiter.admit(sleep_budget=3.0)  # returns (the vendor's 429 and its pause take over)
    assert len(asked) == ratelimit.MAX_ASKS
    assert limiter.late_wakes() == ratelimit.MAX_ASKS - 1


def test_no_jitter_allowance_still_lets_calls_keep_their_slots(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=20, jitter=0.0)
    assert limiter.late_wake_limit == ratelimit.LATE_WAKE_LIMIT > 0


def test_deferred_calls_get_tickets_one_interval_apart_and_fresh_calls_queue_behind(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=10)  # ~105 ms apart
    limiter.admit(sleep_budget=0)
    tickets = []
    for _ in range(5):
        with pytest.raises(RateLimited) as caught:
            limiter.admit(sleep_budget=0)
        tickets.append(caught.value)
    gaps = [b.ticket - a.ticket for a, b in itertools.pairwise(tickets)]
    assert all(abs(gap - limiter.emission) < 1e-6 for gap in gaps)
    assert [t.retry_after for t in tickets] == sorted(t.retry_after for t in tickets)
    assert limiter.deferred() == 5
    # the first ticket's time comes: its holder takes the slot, a fresh call goes behind the line
    time.sleep(max(0.0, tickets[0].retry_after))
    with holding_ticket(tickets[0].ticket):
        limiter.admit(sleep_budget=0.02)
    with pytest.raises(RateLimited) as fresh:
        limiter.admit(sleep_budget=0.02)
    assert fresh.value.ticket == pytest.approx(tickets[-1].ticket + limiter.emission, abs=1e-6)


def test_a_ticket_back_early_keeps_its_place(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=2)  # ~0.5 s apart
    limiter.admit(sleep_budget=0)
    with pytest.raises(RateLimited) as first:
        limiter.admit(sleep_budget=0)
    with holding_ticket(first.value.ticket), pytest.raises(RateLimited) as again:
        limiter.admit(sleep_budget=0.01)  # came back at once (a capped countdown)
    assert again.value.ticket == first.value.ticket
    with pytest.raises(RateLimited) as fresh:
        limiter.admit(sleep_budget=0)
    assert fresh.value.ticket == pytest.approx(first.value.ticket + limiter.emission, abs=1e-6)


def test_admit_defers_past_a_vendor_pause(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=100)
    limiter.pause(3)
    with pytest.raises(RateLimited) as caught:
        limiter.admit(sleep_budget=0.05)
    assert 2.5 < caught.value.retry_after <= 3.01


def test_holding_ticket_is_per_thread_and_restored(fake_redis):
    import threading

    seen = []
    with holding_ticket(5.0):
        thread = threading.Thread(target=lambda: seen.append(ratelimit._ticket.get()))
        thread.start()
        thread.join()
        seen.append(ratelimit._ticket.get())
    seen.append(ratelimit._ticket.get())
    assert seen == [None, 5.0, None]


def test_the_gate_takes_tickets_only_for_a_caller_that_comes_back_with_them(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=10)  # ~105 ms apart
    limiter.gate(0)
    started = time.monotonic()
    limiter.gate(0)  # a webhook's or the CLI's look-up: waits as before, takes no ticket
    assert time.monotonic() - started > 0.05
    assert limiter.deferred() == 0 and fake_redis.get(limiter.line_key) is None
    with holding_ticket(0), pytest.raises(RateLimited) as caught:
        limiter.gate(0)  # create_rokt_event: a ticket
    assert caught.value.ticket > 0 and limiter.deferred() == 1


def test_on_rabbitmq_a_rokt_call_may_sleep_up_to_a_second_for_its_slot():
    """Native delayed delivery counts whole seconds: a ticket holder sent back less than 1 s
    before its slot would come back after it and lose its place, again and again."""
    from pipeline.settings import load_settings
    from pipeline.tenancy.handles import AMQP_MIN_SLEEP_BUDGET, rokt_sleep_budget

    on_redis = load_settings(on_redis_env())
    on_rabbitmq = load_settings({**on_redis_env(), "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert rokt_sleep_budget(on_redis) == 0.025
    assert rokt_sleep_budget(on_rabbitmq) == AMQP_MIN_SLEEP_BUDGET == 1.0


def on_redis_env() -> dict[str, str]:
    return {"REDIS_URL": "redis://127.0.0.1:6379/0", "ROKT_LIMIT_SLEEP_MS": "25"}


def test_a_reserved_share_spaces_the_lines_tickets_for_the_rest_of_the_rate(fake_redis):
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=10)
    limiter.reserve(0.5)  # an event job holds half: the line gets the other half
    limiter.admit(sleep_budget=0)
    tickets = []
    for _ in range(3):
        with pytest.raises(RateLimited) as caught:
            limiter.admit(sleep_budget=0)
        tickets.append(caught.value.ticket)
    gaps = [b - a for a, b in itertools.pairwise(tickets)]
    assert all(abs(gap - 2 * limiter.emission) < 1e-6 for gap in gaps)
    fake_redis.delete(limiter.reserved_key)  # the job stopped: the whole rate again
    after = []
    for _ in range(2):
        with pytest.raises(RateLimited) as caught:
            limiter.admit(sleep_budget=0)
        after.append(caught.value.ticket)
    assert after[0] == pytest.approx(tickets[-1] + 2 * limiter.emission, abs=1e-6)  # booked before
    assert after[1] - after[0] == pytest.approx(limiter.emission, abs=1e-6)


def test_calls_outside_the_line_also_leave_a_reserved_share_alone(fake_redis):
    """Webhook look-ups, the reconciler, forget: while an event job holds its share, they are
    spaced for the rest too, so the job and everyone else together keep to the rate."""
    limiter = RateLimiter(fake_redis, "t", "rokt", rate=10)
    assert limiter.try_acquire() == 0
    plain = limiter.try_acquire()  # the next slot, one interval on
    fake_redis.delete(limiter.key)
    limiter.reserve(0.5)
    assert limiter.try_acquire() == 0
    reserved = limiter.try_acquire()
    assert reserved == pytest.approx(2 * plain, rel=0.05)
