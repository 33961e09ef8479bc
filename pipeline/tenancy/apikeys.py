"""Per-tenant API keys for operators and scripts calling `/t/<tenant>/api/...`.

A key is `rsk_` + 32 random bytes (urlsafe base64, 43 characters), shown once by `create_key`
and stored only as its sha256 hex in the hash `keys.api_keys(tenant)`, one field per key.
The field name (the key's id) is the first `ID_LENGTH` characters of the random part: not secret
(it leaves 31 random characters, about 186 bits), shown by `list_keys`, so an operator can tell
which key is which and `verify_key` finds the one record to compare without scanning.
A key lives in its tenant's hash only, so a key of one tenant never verifies for another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import redis

from pipeline.infra import keys

PREFIX = "rsk_"
ID_LENGTH = 12
KEY_LENGTH = len(PREFIX) + 43  # token_urlsafe(32) is 43 characters
LABEL_MAX = 100
LAST_USED_EVERY_SECONDS = 60  # lastUsedAt is rewritten at most this often per key

# lastUsedAt is written only while the key still exists, so a revoke racing a request wins.
_TOUCH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
record['lastUsedAt'] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
"""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def create_key(r: redis.Redis, tenant: str, label: str) -> str:
    """Store a new key for `tenant` and return it: the only time the key itself is available."""
    if not isinstance(label, str):
        raise ValueError("label must be text")
    label = label.strip()
    if len(label) > LABEL_MAX:
        raise ValueError(f"label is longer than {LABEL_MAX} characters")
    while True:
        key = PREFIX + secrets.token_urlsafe(32)
        key_id = key[len(PREFIX) : len(PREFIX) + ID_LENGTH]
        if key_id.startswith("-"):  # `api-keys revoke -abc` would read as an option: draw again
            continue
        record = {
            "label": label,
            "hash": _hash(key),
            "createdAt": _now().isoformat(timespec="seconds"),
            "lastUsedAt": None,
        }
        if r.hsetnx(keys.api_keys(tenant), key_id, json.dumps(record)):  # an id collision draws again
            return key


def list_keys(r: redis.Redis, tenant: str) -> list[dict[str, Any]]:
    """Every key of `tenant`, oldest first: id, label, createdAt, lastUsedAt (never the key or hash)."""
    items = []
    for key_id, raw in r.hgetall(keys.api_keys(tenant)).items():
        record = json.loads(raw)
        items.append(
            {
                "id": key_id,
                "label": record.get("label", ""),
                "createdAt": record.get("createdAt"),
                "lastUsedAt": record.get("lastUsedAt"),
            }
        )
    return sorted(items, key=lambda item: (item["createdAt"] or "", item["id"]))


def revoke_key(r: redis.Redis, tenant: str, key_id: str) -> bool:
    """Delete the key `key_id` of `tenant`; False when it does not exist (any more)."""
    return bool(r.hdel(keys.api_keys(tenant), key_id))


def verify_key(r: redis.Redis, tenant: str, key: str) -> bool:
    """True when `key` is a live key of `tenant` (sha256 compared in constant time)."""
    if not isinstance(key, str) or len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    key_id = key[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    raw = r.hget(keys.api_keys(tenant), key_id)
    if raw is None:
        return False
    record = json.loads(raw)
    if not hmac.compare_digest(_hash(key), str(record.get("hash", ""))):
        return False
    _touch(r, tenant, key_id, record.get("lastUsedAt"))
    return True


def _touch(r: redis.Redis, tenant: str, key_id: str, last_used: str | None) -> None:
    """Record lastUsedAt, but skip the write while the stored value is recent (one write a minute)."""
    now = _now()
    if last_used:
        try:
            if (now - datetime.fromisoformat(last_used)).total_seconds() < LAST_USED_EVERY_SECONDS:
                return
        except ValueError:
            pass
    r.register_script(_TOUCH)(keys=[keys.api_keys(tenant)], args=[key_id, now.isoformat(timespec="seconds")])
