"""A global rate limiter in Redis, shared by every worker process of every host.

GCRA in one Lua script (Redis clock, one round trip), plus a shared cool-down key set when
the vendor answers 429, so one throttled worker pauses the whole account instead of each
worker discovering the limit on its own. Celery's `rate_limit` is per worker instance and
cannot do this.

The Rokt stage (`RateLimiter.admit`) runs on a threads pool and does not sleep in its slot: a
call whose slot is further away than its sleep budget (ROKT_LIMIT_SLEEP_MS) takes a *ticket*, a
place in the account's waiting line one emission interval after the previous one, and its task
is rescheduled to that time. A task back with its ticket takes the next slot ahead of fresh
calls (which join the line while it is not empty), so a backlog costs about one reschedule per
call, not one every interval: no retry storm at 20 tenants x 50/s. A ticket lost with its task
only leaves one slot unused.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Iterator

import redis

from pipeline.infra import keys
from pipeline.vocabulary import ErrorClass

# Requests leave the limiter evenly spaced but reach the vendor after a variable delay
# (scheduling on a busy worker host, the network). A vendor counting a strict 1-second window
# sees the (rate+1)-th request (rate intervals after the first, less the late tolerance) only
# the jitter allowance after that window: 40 ms of jitter at any rate by default
# (RATE_LIMIT_JITTER_MS).
JITTER_ALLOWANCE = 0.040
# A call that wakes from its sleep this long after its slot gives the slot up and asks again:
# sent late, it would bunch with the next slot's call and use up the jitter allowance before the
# network adds its own (measured on a loaded 2-core host: sleeps overshot by up to 68 ms, p99
# 5.6 ms; in the bench at a 100 ms budget, late sleepers drew 11 429s). Fixed, not a share of
# the allowance: with no allowance every sleep would be late.
LATE_WAKE_LIMIT = 0.010
# asks for a slot in all before the call is sent anyway, late (a host this slow is late for
# every slot; the vendor's 429 and its pause take over from there)
MAX_ASKS = 3
# A waiting worker wakes a little after its slot (sleep overshoot, a Redis round trip on a busy
# host); with no tolerance each late wake-up loses that time for good: 8 processes at 100/s
# reached 86/s (bench rate_limit); with 5 ms they keep 95.7% of the rate (1 / 1.045).
LATE_TOLERANCE = 0.005

_ACQUIRE = """
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {0, tostring(cool / 1000)} end
local emission = tonumber(ARGV[1])
local reserved = tonumber(redis.call('GET', KEYS[3]) or 0)  -- an event job's share (see _ADMIT)
if reserved > 0 and reserved < 1 then emission = emission / (1 - reserved) end
local burst_tol = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - burst_tol - emission
if allow_at > now then return {0, tostring(allow_at - now)} end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, '0'}
"""

# KEYS: slot (TAT), cool-down, waiting line, deferral counter, the share an event job reserved.
# ARGV: emission, tolerance, the caller's ticket (0: a fresh call), its sleep budget. Returns
# {admitted, wait, ticket}: admitted with wait <= budget (sleep that long, then send), or deferred
# to `ticket` (`wait` from now). While a job reserves a share, slots are spaced for the rest.
_ADMIT = """
local emission = tonumber(ARGV[1])
local reserved = tonumber(redis.call('GET', KEYS[5]) or 0)
if reserved > 0 and reserved < 1 then emission = emission / (1 - reserved) end
local burst_tol = tonumber(ARGV[2])
local ticket = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function defer(earliest)
  redis.call('INCR', KEYS[4])
  if ticket > 0 and ticket > now + budget and ticket >= earliest then
    return {0, tostring(ticket - now), tostring(ticket)}  -- back early: keep its place
  end
  local line = tonumber(redis.call('GET', KEYS[3]) or 0)
  local slot = math.max(line, earliest, now)
  local ttl = math.ceil((slot + emission - now) * 1000) + 1000
  redis.call('SET', KEYS[3], tostring(slot + emission), 'PX', ttl)
  return {0, tostring(slot - now), tostring(slot)}
end
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return defer(now + cool / 1000) end
if ticket > now + budget then return defer(ticket) end
if ticket <= 0 then
  local line = tonumber(redis.call('GET', KEYS[3]) or 0)
  if line > now then return defer(line) end  -- others wait in line: join it
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - burst_tol - emission
if allow_at - now > budget then return defer(allow_at) end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, tostring(math.max(0, allow_at - now)), '0'}
"""

_PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 1
"""


# how long an event job's reservation of its share outlives its last call (a job between two
# chunks keeps it; a stopped job gives it back within this)
RESERVATION_SECONDS = 3.0


class RateLimited(Exception):
    """The wait for a slot is longer than a task should sleep: retry in `retry_after` seconds
    (the same attribute a vendor's 429 carries, so one helper turns both into a countdown)."""

    error_class = ErrorClass.THROTTLED

    def __init__(self, retry_after: float, ticket: float = 0.0) -> None:
        super().__init__(f"rate limited for {retry_after:.2f}s")
        self.reason = str(self)
        self.retry_after = retry_after
        # a place in the account's waiting line (Redis clock; 0: none): the task comes back
        # with it (`holding_ticket`) at `retry_after`
        self.ticket = ticket


# the ticket of the call this thread (task) is making, set by the task around its Rokt call;
# None: the caller cannot come back with a ticket (it would leave its slot unused)
_ticket: contextvars.ContextVar[float | None] = contextvars.ContextVar("rsf_ratelimit_ticket", default=None)


@contextlib.contextmanager
def holding_ticket(ticket: float) -> Iterator[None]:
    """Calls through `RateLimiter.gate` within take tickets, and are the one that took `ticket`
    (0: a fresh call); the task that raised RateLimited comes back with `exc.ticket`."""
    token = _ticket.set(max(0.0, float(ticket or 0)))
    try:
        yield
    finally:
        _ticket.reset(token)


class RateLimiter:
    def __init__(
        self,
        r: redis.Redis,
        tenant: str,
        name: str,
        rate: float,
        tolerance: float = LATE_TOLERANCE,
        jitter: float = JITTER_ALLOWANCE,
    ) -> None:
        self.r = r
        self.key = keys.ratelimit(tenant, name)
        self.cooldown_key = keys.cooldown(tenant, name)
        # seconds a request may come early, paid for by a longer interval: the jitter allowance holds
        self.tolerance = min(tolerance, 1.0 / rate)
        self.jitter = max(0.0, jitter)
        self.emission = (1.0 + self.jitter + self.tolerance) / rate
        # how late after its slot a woken call may still send
        self.late_wake_limit = LATE_WAKE_LIMIT
        self.line_key = keys.ratelimit_line(tenant, name)
        self.deferred_key = keys.ratelimit_deferred(tenant, name)
        self.reserved_key = keys.ratelimit_reserved(tenant, name)
        self.late_key = keys.ratelimit_late(tenant, name)
        self._acquire = r.register_script(_ACQUIRE)
        self._admit = r.register_script(_ADMIT)
        self._pause = r.register_script(_PAUSE)

    def try_acquire(self) -> float:
        """0 when a slot was taken, else the seconds to wait before asking again."""
        ok, wait = self._acquire(
            keys=[self.key, self.cooldown_key, self.reserved_key], args=[self.emission, self.tolerance]
        )
        return 0.0 if int(ok) else float(wait)

    def acquire(self, max_sleep: float = 1.0) -> None:
        """Block for short waits (re-acquiring after each sleep); raise RateLimited for long ones."""
        while (wait := self.try_acquire()) > 0:
            if wait > max_sleep:
                raise RateLimited(wait)
            time.sleep(wait + random.uniform(0, 0.005))

    def gate(self, sleep_budget: float = 0.025) -> None:
        """The Rokt client's gate: within `holding_ticket` (create_rokt_event), `admit`;
        elsewhere (a webhook's or the reconciler's look-up, the CLI) `acquire`, which sleeps up
        to 1 s: a caller that would not come back with its ticket must not take one."""
        if _ticket.get() is None:
            self.acquire()
        else:
            self.admit(sleep_budget)

    def admit(self, sleep_budget: float = 0.025) -> None:
        """Wait for a slot up to `sleep_budget` seconds; a later slot raises RateLimited with a
        ticket for it (this call's, when it holds one: `holding_ticket`), to come back
        `sleep_budget` before it. A sleep that ends too late for its slot (LATE_WAKE_LIMIT)
        leaves the slot unused and asks again, within what is left of the budget."""
        started = time.monotonic()
        budget = sleep_budget = max(0.0, sleep_budget)
        for asks in range(1, MAX_ASKS + 1):
            ok, wait, ticket = self._admit(
                keys=[self.key, self.cooldown_key, self.line_key, self.deferred_key, self.reserved_key],
                args=[self.emission, self.tolerance, _ticket.get() or 0.0, budget],
            )
            if not int(ok):
                # back `sleep_budget` early (the budget it has then), to sleep into the slot: a
                # return a little late (a busy worker) still finds its slot, not leaving it unused
                raise RateLimited(max(0.0, float(wait) - sleep_budget), float(ticket))
            # from the reply: `wait` counts from when the script ran, within the round trip, but
            # a lateness every call has (a slow Redis) spaces them alike; what bunches calls is
            # lateness that varies, and a long sleep's overshoot is the part seen here
            due = time.monotonic() + float(wait)
            if float(wait) > 0:
                time.sleep(float(wait))
            if asks == MAX_ASKS or time.monotonic() - due <= self.late_wake_limit:
                return
            self.r.incr(self.late_key)
            # a re-ask may not sleep longer in all than the first could: past that, a ticket
            budget = max(0.0, sleep_budget - (time.monotonic() - started))

    def line_ahead(self) -> float:
        """Seconds of waiting line ahead of a fresh call (Redis clock; 0: nobody waits): calls
        that took tickets wait for their slots (creates, when a backlog exceeds the rate)."""
        line, (seconds, micros) = self.r.get(self.line_key), self.r.time()
        return max(0.0, float(line or 0) - (seconds + micros / 1e6))

    def reserve(self, share: float, seconds: float = RESERVATION_SECONDS) -> None:
        """Hold `share` of the rate for a caller outside the line (an event job, through a
        limiter of its own at that share) for `seconds`: the line's slots (`admit`) are spaced
        for the rest meanwhile, so the two together keep to the rate."""
        self.r.set(self.reserved_key, repr(max(0.0, min(0.95, share))), px=max(1, int(seconds * 1000)))

    def cooldown_remaining(self) -> float:
        """Seconds left of the vendor's 429 pause of this account (0: none)."""
        return max(0.0, int(self.r.pttl(self.cooldown_key)) / 1000)

    def late_wakes(self) -> int:
        """Slots given up so far because the call woke too late for them (every process counts
        here): a rising count means the hosts running the Rokt stage are overloaded."""
        return int(self.r.get(self.late_key) or 0)

    def deferred(self) -> int:
        """Calls rescheduled so far (every tenant process counts here)."""
        return int(self.r.get(self.deferred_key) or 0)

    def pause(self, seconds: float) -> None:
        """Stop every worker of this account for `seconds` (the vendor's Retry-After)."""
        self._pause(keys=[self.cooldown_key], args=[max(1, int(seconds * 1000))])
