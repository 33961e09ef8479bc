"""App Settings' sign-in states: signed, single use, bound to the browser, 10 minutes each, and
bounded in Redis by construction.

`GET /app/login` answers anyone, so what it stores must have a ceiling whatever arrives. A state is
`<id>.<expiry>.<address>.<binding>.<mac>`: 128 random bits, the expiry (epoch seconds), a keyed
digest of the client address that started it (never the address), an HMAC of the browser's
sign-in cookie nonce (a login CSRF, the attacker's callback URL opened in the victim's browser,
fails: the victim has no such cookie) and an HMAC-SHA256 of the rest under a key derived from
SECRET_KEY (any listed key verifies, so a rotation ends no sign-in). A forged or altered state is
refused without a Redis call.

Single use: issuing adds the member `<address digest>:<state digest>` to two sorted sets
(`keys.login_states`, scored by expiry; `keys.login_states_by_address`, scored 0 so ZLEXCOUNT counts
one address's members), the callback removes it, and a state whose member is gone is refused.
The ceiling: expired members are dropped at each issue, then a new one is refused (429 with
Retry-After: when the oldest blocking state expires) past `signin_states_per_address` outstanding
for the address or `signin_states_max` in all; both keys expire 10 minutes after the last issue.
Redis thus holds at most 2 keys of `signin_states_max` members each (~50-byte members), however
many requests, addresses or states arrive; a flood costs other admins their sign-in until its
states expire, never anyone's execute or webhook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from pipeline.infra import keys
from pipeline.infra.crypto import derive_key
from pipeline.infra.salt import deployment_salt

STATE_TTL_SECONDS = 600
_STATE_KEY_INFO = b"signin-state/v1"
ID_BYTES = 16  # 128 bits: the MAC, not the id, is what makes a state unguessable
_TAG_CHARS = 22  # 128 bits of an HMAC, base64url
_STATE = re.compile(r"[A-Za-z0-9_-]{22}\.[0-9]{1,12}\.[0-9a-f]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")

# KEYS: by expiry, by address. ARGV: now, expiry, member, address digest, max in all, max per
# address, key TTL (ms). Returns {0, 0} (issued) or {refusal, seconds until a slot frees}.
_ISSUE = """
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired, 500 do
  redis.call('ZREM', KEYS[2], unpack(expired, i, math.min(i + 499, #expired)))
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
local lo, hi = '[' .. ARGV[4] .. ':', '(' .. ARGV[4] .. ';'
if redis.call('ZLEXCOUNT', KEYS[2], lo, hi) >= tonumber(ARGV[6]) then
  local soonest = now + 1
  for i, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], lo, hi)) do
    local score = tonumber(redis.call('ZSCORE', KEYS[1], member) or now + 1)
    if i == 1 or score < soonest then soonest = score end
  end
  return {1, math.ceil(soonest - now)}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {2, math.ceil(tonumber(oldest[2]) - now)}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {0, 0}
"""
_CONSUME = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"""


class Refusal(StrEnum):
    """Why no state was issued (the 429's `code`)."""

    ADDRESS = "too_many_signins_from_address"
    ALL = "too_many_signins"


_REFUSALS = {1: Refusal.ADDRESS, 2: Refusal.ALL}


class StateProblem(StrEnum):
    """Why a callback's state is refused."""

    INVALID = "state_invalid"  # missing, malformed, forged or altered
    EXPIRED = "state_expired"
    USED = "state_used"  # already used, or never issued here
    OTHER_BROWSER = "state_other_browser"


@dataclass(frozen=True)
class Limited:
    """A state refused: why, and in how many seconds a slot frees (Retry-After)."""

    reason: Refusal
    retry_after: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class SigninStates:
    """Issue and use sign-in states; `secret_keys` is SECRET_KEY's list (the first signs)."""

    def __init__(
        self,
        r: redis.Redis,
        secret_keys: Sequence[str],
        *,
        max_total: int,
        per_address: int,
        ttl_seconds: int = STATE_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret_keys:
            raise ValueError("SECRET_KEY is required to sign sign-in states")
        self._r = r
        self._state_keys = [derive_key(key, _STATE_KEY_INFO) for key in secret_keys]
        self._max_total, self._per_address = max_total, per_address
        self._ttl, self._clock = ttl_seconds, clock
        self._issue = r.register_script(_ISSUE)
        self._consume = r.register_script(_CONSUME)

    def address_digest(self, address: str) -> str:
        """How the states name a client address: 16 hex of its keyed digest (`keys.personal_digest`,
        the one way a key or member names personal data)."""
        return keys.personal_digest(deployment_salt(self._r), "", address)[:16]

    @staticmethod
    def _member(address_digest: str, state_id: str) -> str:
        return f"{address_digest}:{hashlib.sha256(state_id.encode()).hexdigest()[:32]}"

    @staticmethod
    def _tag(key: bytes, label: bytes, value: str) -> str:
        return _b64(hmac.new(key, label + b"\0" + value.encode(), hashlib.sha256).digest())

    def issue(self, address: str, nonce: str) -> str | Limited:
        """A new state for the browser holding `nonce`, started from `address`; or why not."""
        now = self._clock()
        expiry = int(now) + self._ttl
        state_id = _b64(secrets.token_bytes(ID_BYTES))
        digest = self.address_digest(address)
        key = self._state_keys[0]
        binding = self._tag(key, b"browser", nonce)[:_TAG_CHARS]
        body = f"{state_id}.{expiry}.{digest}.{binding}"
        status, wait = self._issue(
            keys=[keys.login_states(), keys.login_states_by_address()],
            args=[
                repr(now),
                expiry,
                self._member(digest, state_id),
                digest,
                self._max_total,
                self._per_address,
                math.ceil(self._ttl * 1000),
            ],
        )
        if int(status):
            return Limited(_REFUSALS[int(status)], max(1, int(wait)))
        return f"{body}.{self._tag(key, b'state', body)}"

    def consume(self, state: str, nonce: str) -> StateProblem | None:
        """None when `state` is one we issued, unexpired, unused, to the browser holding `nonce`;
        else why not. A state that gets as far as Redis is used up either way."""
        if not _STATE.fullmatch(state):
            return StateProblem.INVALID
        body, mac = state.rsplit(".", 1)
        state_id, expiry, digest, binding = body.split(".")
        key = next(
            (k for k in self._state_keys if hmac.compare_digest(self._tag(k, b"state", body), mac)), None
        )
        if key is None:
            return StateProblem.INVALID
        if int(expiry) <= self._clock():
            return StateProblem.EXPIRED  # its member, if any, goes at the next issue
        removed = self._consume(
            keys=[keys.login_states(), keys.login_states_by_address()], args=[self._member(digest, state_id)]
        )
        if not int(removed):
            return StateProblem.USED
        if not nonce or not hmac.compare_digest(self._tag(key, b"browser", nonce)[:_TAG_CHARS], binding):
            return StateProblem.OTHER_BROWSER
        return None
