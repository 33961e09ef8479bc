"""Tracked links: each link of a `trackClicks` template goes through `/t/<tenant>/c/<token>`.

At render (pipeline/journeys/render.py, `links=`), every http(s) link of the description and the
location, already tagged with utm_source, is replaced by `<PUBLIC_BASE_URL>/t/<tenant>/c/<token>`
and its target appended to the execution's `links` (a JSON list stored on the execution record,
so the redirect needs no render). The same target twice is one link (one token).

The token, 32 characters of base64url, is 24 bytes:

    16 bytes  the execution id (a UUID version 5: its 6 fixed version/variant bits carry the
              link's index, 0-63, so the index costs no byte)
     6 bytes  gate: HMAC-SHA256(key, tenant, execution, index), checked before any I/O
     2 bytes  bind: HMAC-SHA256(key, tenant, execution, index, SHA-256(target)), checked against
              the target the record stores

Why 64 bits of MAC, split so: the gate decides whether a request touches Redis or the history
store at all, so a flood of made-up tokens costs a hash each and no read (48 bits: an attacker
needs ~2^47 requests, online, for one token that passes; each one that fails is a 404 like any
other). What passes the gate can only ever redirect to a target stored on the execution's record:
the token carries no URL, so it is never an open redirect whatever it holds. The bind's 16 bits
tie a token to the target stored at its place: links are only ever added (a correction's changed
link takes a new place and a new token, and the old token still leads to the old target, one the
brand itself sent), so the bind refuses a token whose place holds another target (a record
rebuilt otherwise), with a 2^-16 chance of passing, to a link of the same brand's same event. A
foreign tenant's token fails the gate (the tenant is in the MAC). Shorter would be weaker, longer
would spend more of the lock screen: the whole URL is what a subscriber sees cut at ~30
characters.

The key: HKDF of the deployment's salt (pipeline/infra/salt.py), not of SECRET_KEY: links live
in calendars for months and must outlive a SECRET_KEY rotation, and the salt lives (and is backed
up) with the records the tokens name. A Redis dump reveals the salt; it would let one forge
clicks (counts), never a redirect elsewhere.

Only executions whose id is a UUID version 5 (every id `ledger.execution_id` makes) are tracked;
a field's links past the 64th stay as they are (tagged, not tracked).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis

from pipeline.infra.crypto import derive_key
from pipeline.infra.salt import deployment_salt
from pipeline.stores import ledger, performance
from pipeline.stores.clicks import ARCHIVED, Followed
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind, TenantStatus

log = logging.getLogger(__name__)

MAX_LINKS = 64  # the 6 bits a UUID version 5 leaves
GATE_BYTES = 6
BIND_BYTES = 2
TOKEN_BYTES = 16 + GATE_BYTES + BIND_BYTES
TOKEN_CHARS = TOKEN_BYTES * 4 // 3  # 32: 24 bytes are whole base64 groups, no padding
TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")
_KEY_INFO = b"tracked-link/v1"
LINKS_FIELD = "links"  # the execution record's field: the targets, JSON list, in index order
TAGS_FIELD = "linkTags"  # ... and their binds, 4 hex characters each in the same order
# the tenants whose links are followed (a disabled one's are 404: nothing written while it is
# being erased, `rokt-sfmc tenants erase`)
LIVE_TENANT = frozenset({TenantStatus.ACTIVE, TenantStatus.PENDING})


@lru_cache(maxsize=8)
def _derived(salt: str) -> bytes:
    return derive_key(salt, _KEY_INFO)


def link_key(r: redis.Redis) -> bytes:
    """The tokens' key for this deployment (the salt is read once a minute at most)."""
    return _derived(deployment_salt(r))


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"\x00".join(parts), hashlib.sha256).digest()


def _gate(key: bytes, tenant: str, execution: bytes, index: int) -> bytes:
    return _mac(key, b"gate", tenant.encode(), execution, bytes([index]))[:GATE_BYTES]


def _bind(key: bytes, tenant: str, execution: bytes, index: int, target: str) -> bytes:
    digest = hashlib.sha256(target.encode()).digest()
    return _mac(key, b"bind", tenant.encode(), execution, bytes([index]), digest)[:BIND_BYTES]


def trackable(execution_id: str) -> bool:
    """True for a UUID version 5 (its fixed bits carry the index)."""
    try:
        return uuid.UUID(execution_id).version == 5 and str(uuid.UUID(execution_id)) == execution_id
    except ValueError:
        return False


def make_token(key: bytes, tenant: str, execution_id: str, index: int, target: str) -> str:
    """The token of link `index` of `execution_id` pointing to `target`."""
    if not 0 <= index < MAX_LINKS or not trackable(execution_id):
        raise ValueError("only links 0-63 of a UUID version 5 execution are tracked")
    raw = _with_index(uuid.UUID(execution_id).bytes, index)
    tags = _gate(key, tenant, raw, index) + _bind(key, tenant, raw, index, target)
    return base64.urlsafe_b64encode(raw + tags).decode("ascii")


def _with_index(execution: bytes, index: int) -> bytes:
    raw = bytearray(execution)
    raw[6] = (index & 0x0F) << 4 | (raw[6] & 0x0F)  # the version nibble (5) carries 4 bits
    raw[8] = (index >> 4) << 6 | (raw[8] & 0x3F)  # the variant bits (10) carry 2
    return bytes(raw)


@dataclass(frozen=True)
class Token:
    execution_id: str
    index: int
    packed: bytes  # the 16 bytes the MACs are over
    gate: bytes
    bind: bytes


def parse_token(text: str) -> Token | None:
    """The token's parts, or None when it is not 32 base64url characters (truncated, padded,
    anything else). 24 bytes are whole base64 groups: one text for one token, no variants."""
    if not isinstance(text, str) or not TOKEN.fullmatch(text):
        return None
    raw = base64.urlsafe_b64decode(text)
    packed = raw[:16]
    index = (packed[6] >> 4) | (packed[8] >> 6) << 4
    plain = bytearray(packed)
    plain[6] = 0x50 | (plain[6] & 0x0F)
    plain[8] = 0x80 | (plain[8] & 0x3F)
    return Token(
        str(uuid.UUID(bytes=bytes(plain))), index, packed, raw[16 : 16 + GATE_BYTES], raw[16 + GATE_BYTES :]
    )


def gate_ok(key: bytes, tenant: str, token: Token) -> bool:
    """The token was made here for this tenant, execution and index (no I/O)."""
    return hmac.compare_digest(token.gate, _gate(key, tenant, token.packed, token.index))


def bound(key: bytes, tenant: str, token: Token, target: str) -> bool:
    """The token's bind matches `target` (the link's target as stored)."""
    return hmac.compare_digest(token.bind, _bind(key, tenant, token.packed, token.index, target))


def target_of(key: bytes, tenant: str, token: Token, record: Mapping[str, Any]) -> str | None:
    """The target the token binds, from the execution `record` (its hash, or the history store's
    copy); None when the record holds no such link or holds another target there."""
    try:
        targets = json.loads(record.get(LINKS_FIELD) or "[]")
    except ValueError:
        return None
    if (
        not isinstance(targets, list)
        or token.index >= len(targets)
        or not isinstance(targets[token.index], str)
    ):
        return None
    target = targets[token.index]
    if not hmac.compare_digest(token.bind, _bind(key, tenant, token.packed, token.index, target)):
        return None
    return target


def link_prefix(base_url: str, tenant: str) -> str:
    """What precedes a token: `<PUBLIC_BASE_URL>/t/<tenant>/c/`."""
    return f"{base_url.rstrip('/')}/t/{tenant}/c/"


@dataclass
class LinkTracker:
    """Replaces the links of one execution's event as it renders (render.finish_field calls it
    with each tagged link), collecting the targets in index order."""

    key: bytes
    tenant: str
    execution_id: str
    prefix: str
    targets: list[str] = field(default_factory=list)

    def __call__(self, target: str) -> str:
        if target in self.targets:
            index = self.targets.index(target)
        elif len(self.targets) < MAX_LINKS:
            index = len(self.targets)
            self.targets.append(target)
        else:
            return target  # past the 64th: tagged, not tracked
        return self.prefix + make_token(self.key, self.tenant, self.execution_id, index, target)

    def stored(self) -> dict[str, str]:
        """The record's fields: the targets and their binds (the click script compares a token's
        bind with its link's before it counts anything)."""
        plain = uuid.UUID(self.execution_id).bytes
        tags = "".join(
            _bind(self.key, self.tenant, _with_index(plain, i), i, t).hex()
            for i, t in enumerate(self.targets)
        )
        return {LINKS_FIELD: json.dumps(self.targets), TAGS_FIELD: tags}


def tracker_for(
    template: Mapping[str, Any],
    key: bytes,
    base_url: str,
    tenant: str,
    execution_id: str,
    known: str | None = None,
) -> LinkTracker | None:
    """The tracker of an execution of `template`, or None when the template does not track
    clicks (or the execution's id cannot carry a token). `known`: the record's `links` when it
    was sent before (a correction): they keep their places, so a link the correction keeps
    keeps its token, and one it drops still leads where it did; new ones come after."""
    if not template.get("trackClicks") or not trackable(execution_id):
        return None
    try:
        targets = json.loads(known or "[]")
    except ValueError:
        targets = []
    kept = [t for t in targets if isinstance(t, str)][:MAX_LINKS] if isinstance(targets, list) else []
    return LinkTracker(key, tenant, execution_id, link_prefix(base_url, tenant), kept)


# --- following a link (GET /t/<tenant>/c/<token>: pipeline/web/links.py) -------------------


def follow(rt: Runtime, tenant: str, text: str, *, count: bool = True) -> str | None:
    """The target of a tracked link, counted as a click unless `count` is False; None for a
    token that is malformed, not this tenant's, names no stored link or another target (the
    caller answers 404 alike). One Redis call when the record is in Redis: the click script
    compares the token's bind with the one stored for its link (`linkTags`, made with the key
    at render), counts, and answers the target; the bind is then recomputed on that target
    (Redis Lua has no HMAC), so a target changed by anything but our render (which keeps the
    links stored before at their places: `tracker_for(known=...)`) is a 404. A record archived out
    of Redis is read from the history store (checked before anything is counted, and, to count,
    made whole again; not to count, Redis is not written); one past its retention in both is
    None: its link is dead. So is a link of a tenant that is disabled or unknown (checked once
    the gate passed: a made-up token still reads nothing).

    Raises redis.RedisError / SQLAlchemyError when a store needed to find the target is away."""
    token = parse_token(text)
    if token is None:
        return None
    key = link_key(rt.redis)
    if not gate_ok(key, tenant, token):
        return None  # made-up or foreign: no read of anything
    config = rt.registry.get(tenant)
    if config is None or config.status not in LIVE_TENANT:
        return None  # disabled (being erased, perhaps) or gone: nothing is read or written
    try:
        found = _follow_in_redis(rt, tenant, token, count)
    except redis.RedisError:
        if not count:
            raise
        # a full Redis refuses the count: the subscriber still gets where they clicked
        log.warning("click on execution %s not counted: Redis refused", token.execution_id, exc_info=True)
        count = False
        found = _follow_in_redis(rt, tenant, token, count)
    if found.status == ARCHIVED:
        return _follow_archived(rt, key, tenant, token, count)
    if found.target is None or not bound(key, tenant, token, found.target):
        return None
    return found.target


def _follow_archived(rt: Runtime, key: bytes, tenant: str, token: Token, count: bool) -> str | None:
    """follow() of a record that left Redis: the target from the store's copy; a click makes it
    whole again and counts it there. A copy the ledger finds older than its tombstone (another
    click restored, counted and archived it meanwhile) is read again, so no click is lost or
    counted twice; not counting (HEAD, a previewer, Redis refusing) writes nothing."""
    stored = rt.history.record(tenant, token.execution_id)
    if stored is None or target_of(key, tenant, token, stored) is None:
        return None
    if not count:
        return target_of(key, tenant, token, stored)
    for _attempt in range(ledger.RESTORE_ATTEMPTS):
        if rt.ledger.restore(tenant, token.execution_id, stored) == ledger.STALE:
            stored = rt.history.record(tenant, token.execution_id)
            if stored is None or target_of(key, tenant, token, stored) is None:
                return None
            continue
        found = _follow_in_redis(rt, tenant, token, count)
        if found.status != ARCHIVED:  # else archived again between the restore and the count
            if found.target is None or not bound(key, tenant, token, found.target):
                return None
            return found.target
    log.warning("click on execution %s not counted: it kept leaving Redis", token.execution_id)
    return target_of(key, tenant, token, stored)


def _follow_in_redis(rt: Runtime, tenant: str, token: Token, count: bool) -> Followed:
    if count:
        rt.outbox(tenant, OutboxKind.STATUS_ROWS).ensure_group()
        day = rt.reporting_days.today(tenant)
        ttl = performance.ttl_seconds(rt.settings.performance_days)
    else:
        day, ttl = "", 0
    now = ledger.now_iso()
    return rt.clicks.follow(
        tenant,
        token.execution_id,
        token.index,
        token.bind.hex(),
        count,
        day,
        ttl,
        now,
        rt.settings.click_repeat_seconds,
    )
