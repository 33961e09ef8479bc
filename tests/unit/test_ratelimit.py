"""The global limiter, on fakeredis with Lua."""

import time

import fakeredis
import pytest

from pipeline.ratelimit import JITTER_ALLOWANCE, RateLimited, RateLimiter


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
