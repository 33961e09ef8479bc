"""The tenant registry: every brand this deployment serves, in Redis, changed without a restart.

Tenants come from two places. *Pinned* ones are read from `TENANTS_FILE` or the environment at
start (operators who keep configuration in files); they are read-only here. *Stored* ones live in
Redis: created by an admin's first sign-in to App Settings or by `rokt-sfmc tenants add`, and
changed there. Secrets are sealed (`pipeline.crypto`) before they reach Redis.

Every process keeps a copy and checks a version counter at most every `TENANT_REFRESH_SECONDS`
(one GET): a change made in App Settings reaches web and workers within seconds.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

import redis
from marshmallow import ValidationError

from pipeline.crypto import SecretBox, SecretUnreadable
from pipeline.settings import (
    REGISTRY_ONLY_FIELDS,
    SECRET_TENANT_FIELDS,
    Settings,
    Tenant,
    tenant_from_mapping,
)
from pipeline.store import PREFIX
from pipeline.vocabulary import SfmcAuthMode, TenantStatus

log = logging.getLogger(__name__)

# `_` cannot start a tenant name, so nothing here collides with a tenant's own keys
REGISTRY_PREFIX = f"{PREFIX}:_registry"
TENANTS_KEY = f"{REGISTRY_PREFIX}:tenants"  # hash: name -> JSON record (secrets sealed)
REFRESH_TOKENS_KEY = f"{REGISTRY_PREFIX}:refresh"  # hash: name -> sealed offline refresh token
EID_INDEX_KEY = f"{REGISTRY_PREFIX}:eid"  # hash: enterprise id -> name
VERSION_KEY = f"{REGISTRY_PREFIX}:version"  # incremented by every change

EID_PATTERN = re.compile(r"^[0-9A-Za-z]{1,32}$")
WEBHOOK_SECRET_BYTES = 32


class TenantPinned(Exception):
    """A tenant of the TOML file or the environment: change it there, not at run time."""


class UnknownTenant(LookupError):
    pass


def missing_settings(tenant: Tenant, has_refresh_token: bool = False) -> list[str]:
    """The fields a tenant still needs before executes can run (App Settings lists them)."""
    required = [
        "jb_jwt_secret",
        "rokt_client_id",
        "rokt_client_secret",
        "rokt_account_code",
        "sfmc_account_id",
    ]
    missing = [name for name in required if not getattr(tenant, name)]
    if tenant.sfmc_auth_mode == SfmcAuthMode.REFRESH_TOKEN:
        if not has_refresh_token:
            missing.append("sfmc_refresh_token")
        if not tenant.sfmc_auth_base_url:
            missing.append("sfmc_auth_base_url")
    else:
        missing.extend(
            n
            for n in ("sfmc_auth_base_url", "sfmc_client_id", "sfmc_client_secret")
            if not getattr(tenant, n)
        )
    return missing


def tenant_name_for_eid(eid: str) -> str:
    return f"sfmc-{eid.lower()}"


class TenantRegistry:
    def __init__(self, r: redis.Redis, settings: Settings) -> None:
        self.r = r
        self.settings = settings
        self.pinned: Mapping[str, Tenant] = settings.tenants
        self._box: SecretBox | None = None
        self._stored: dict[str, Tenant] = {}
        self._version: str | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------
    def get(self, name: str) -> Tenant | None:
        pinned = self.pinned.get(name)
        if pinned is not None:
            return pinned
        return self._current().get(name)

    def all(self) -> dict[str, Tenant]:
        return {**self._current(), **self.pinned}

    def names(self, status: TenantStatus | None = None) -> list[str]:
        return sorted(name for name, t in self.all().items() if status is None or t.status == status)

    def by_eid(self, eid: str) -> Tenant | None:
        for tenant in self.pinned.values():
            if tenant.sfmc_eid and tenant.sfmc_eid == eid:
                return tenant
        name = self.r.hget(EID_INDEX_KEY, eid)
        return self.get(name) if name else None

    def has_refresh_token(self, name: str) -> bool:
        return bool(self.r.hexists(REFRESH_TOKENS_KEY, name))

    def refresh_token(self, name: str) -> str:
        sealed = self.r.hget(REFRESH_TOKENS_KEY, name)
        return self.box.open(sealed) if sealed else ""

    def missing(self, name: str) -> list[str]:
        tenant = self._require(name)
        return missing_settings(tenant, self.has_refresh_token(name))

    def _current(self) -> dict[str, Tenant]:
        """The stored tenants, re-read when another process changed them (checked at most every
        `tenant_refresh_seconds`)."""
        now = time.monotonic()
        if now - self._checked_at < self.settings.tenant_refresh_seconds:
            return self._stored
        with self._lock:
            version = self.r.get(VERSION_KEY)
            if version != self._version:
                self._stored = self._load_all()
                self._version = version
            self._checked_at = now
        return self._stored

    def _load_all(self) -> dict[str, Tenant]:
        loaded = {}
        for name, raw in self.r.hgetall(TENANTS_KEY).items():
            try:
                loaded[name] = self._decode(name, json.loads(raw))
            except (ValueError, ValidationError, SecretUnreadable) as exc:
                log.error("tenant %s: stored record unreadable, ignored: %s", name, exc)
        return loaded

    def _decode(self, name: str, record: Mapping[str, Any]) -> Tenant:
        values = dict(record)
        for field_name in SECRET_TENANT_FIELDS:
            if values.get(field_name):
                values[field_name] = self.box.open(values[field_name])
        return tenant_from_mapping(name, values)

    def _encode(self, tenant: Tenant) -> str:
        values = asdict(tenant)
        values.pop("name")
        values.pop("pinned")
        for field_name in SECRET_TENANT_FIELDS:
            if values.get(field_name):
                values[field_name] = self.box.seal(values[field_name])
        return json.dumps(values, sort_keys=True)  # StrEnum members are their strings

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self.settings.secret_key)
        return self._box

    def _require(self, name: str) -> Tenant:
        tenant = self.get(name)
        if tenant is None:
            raise UnknownTenant(name)
        return tenant

    def _stored_record(self, name: str) -> Tenant:
        if name in self.pinned:
            raise TenantPinned(
                f"tenant {name!r} is pinned by TENANTS_FILE or the environment; change it there"
            )
        raw = self.r.hget(TENANTS_KEY, name)
        if raw is None:
            raise UnknownTenant(name)
        return self._decode(name, json.loads(raw))

    # -- writing -------------------------------------------------------------------------
    def _write(self, tenant: Tenant, *, eid_before: str = "", refresh_token: str | None = None) -> Tenant:
        """Store one tenant and bump the version in one transaction; this process sees it at once."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(TENANTS_KEY, tenant.name, self._encode(tenant))
            if eid_before and eid_before != tenant.sfmc_eid:
                pipe.hdel(EID_INDEX_KEY, eid_before)
            if tenant.sfmc_eid:
                pipe.hset(EID_INDEX_KEY, tenant.sfmc_eid, tenant.name)
            if refresh_token:
                pipe.hset(REFRESH_TOKENS_KEY, tenant.name, self.box.seal(refresh_token))
            pipe.incr(VERSION_KEY)
            pipe.execute()
        self._checked_at = float("-inf")
        return tenant

    def _activated(self, tenant: Tenant, has_refresh_token: bool) -> Tenant:
        """A pending tenant becomes active once nothing it needs is missing."""
        if tenant.status == TenantStatus.PENDING and not missing_settings(tenant, has_refresh_token):
            return replace(tenant, status=TenantStatus.ACTIVE)
        return tenant

    def add(self, name: str, values: Mapping[str, Any]) -> Tenant:
        """A new stored tenant (`rokt-sfmc tenants add`); pending until its settings are complete."""
        if self.get(name) is not None or self.r.hexists(TENANTS_KEY, name):
            raise ValueError(f"tenant {name!r} exists")
        settable = {k: v for k, v in values.items() if k not in REGISTRY_ONLY_FIELDS}
        defaults = {"rokt_api_base_url": self.settings.rokt_api_default_base_url}
        tenant = tenant_from_mapping(name, {**defaults, **settable, "status": TenantStatus.PENDING.value})
        self._check_eid_free(tenant.sfmc_eid, name)
        return self._write(self._activated(tenant, False))

    def _check_eid_free(self, eid: str, name: str) -> None:
        if not eid:
            return
        owner = self.by_eid(eid)
        if owner is not None and owner.name != name:
            raise ValidationError({"sfmc_eid": [f"enterprise {eid} already belongs to tenant {owner.name}"]})

    def update(self, name: str, changes: Mapping[str, Any]) -> Tenant:
        """Change a stored tenant. A secret given as "" keeps its stored value (write-only fields
        of App Settings); status, pinning and rotation state are not changed here."""
        current = self._stored_record(name)
        kept = {
            k: v
            for k, v in changes.items()
            if k not in REGISTRY_ONLY_FIELDS
            and k != "name"
            and not (k in SECRET_TENANT_FIELDS and v in ("", None))
        }
        values = {
            k: (v.value if hasattr(v, "value") else v) for k, v in asdict(current).items() if k != "name"
        }
        tenant = tenant_from_mapping(name, {**values, **kept})
        self._check_eid_free(tenant.sfmc_eid, name)
        tenant = self._activated(tenant, self.has_refresh_token(name))
        return self._write(tenant, eid_before=current.sfmc_eid)

    def set_status(self, name: str, status: TenantStatus) -> Tenant:
        """Disable or enable (an enabled tenant that still misses settings stays pending)."""
        current = self._stored_record(name)
        if status == TenantStatus.ACTIVE and missing_settings(current, self.has_refresh_token(name)):
            status = TenantStatus.PENDING
        return self._write(replace(current, status=status))

    def sign_in(self, *, eid: str, mid: str, tssd: str, refresh_token: str | None) -> Tenant:
        """The tenant of an admin who signed in to App Settings: found by enterprise id, or created
        pending on the account's first sign-in. Records the account's tenant subdomain and the
        offline refresh token (background calls), and clears a "reconnect needed" mark."""
        if not EID_PATTERN.match(eid):
            raise ValueError("enterprise id is not a plain identifier")
        auth_base = self.settings.tssd_auth_url(tssd)
        existing = self.by_eid(eid)
        if existing is not None and existing.pinned:
            return existing
        if existing is None:
            tenant = tenant_from_mapping(
                tenant_name_for_eid(eid),
                {
                    "status": TenantStatus.PENDING.value,
                    "rokt_api_base_url": self.settings.rokt_api_default_base_url,
                    "sfmc_eid": eid,
                    "sfmc_tssd": tssd,
                    "sfmc_account_id": mid,
                    "sfmc_auth_base_url": auth_base,
                    "sfmc_auth_mode": (
                        SfmcAuthMode.REFRESH_TOKEN if refresh_token else SfmcAuthMode.CLIENT_CREDENTIALS
                    ).value,
                },
            )
        else:
            derived = self.settings.tssd_auth_url(existing.sfmc_tssd) if existing.sfmc_tssd else ""
            tenant = replace(
                existing,
                sfmc_tssd=tssd,
                # follows the account's tssd unless an operator set another authorization base
                sfmc_auth_base_url=(
                    auth_base if existing.sfmc_auth_base_url in ("", derived) else existing.sfmc_auth_base_url
                ),
                sfmc_account_id=existing.sfmc_account_id or mid,
                reconnect_reason="" if refresh_token else existing.reconnect_reason,
            )
        has_token = bool(refresh_token) or self.has_refresh_token(tenant.name)
        tenant = self._activated(tenant, has_token)
        log.info("sign-in: enterprise %s -> tenant %s (%s)", eid, tenant.name, tenant.status)
        return self._write(
            tenant, eid_before=existing.sfmc_eid if existing else "", refresh_token=refresh_token
        )

    def rotate_webhook_secret(self, name: str) -> str:
        """A new webhook secret, returned once; the previous one is still accepted for
        `WEBHOOK_SECRET_GRACE_HOURS` so Rokt's management centre can be updated meanwhile."""
        current = self._stored_record(name)
        new = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
        grace_until = time.time() + self.settings.webhook_secret_grace_hours * 3600
        self._write(
            replace(
                current,
                rokt_webhook_secret=new,
                rokt_webhook_secret_previous=current.rokt_webhook_secret,
                rokt_webhook_previous_until=grace_until if current.rokt_webhook_secret else 0.0,
            )
        )
        return new

    def replace_refresh_token(self, name: str, old: str, new: str) -> bool:
        """Store SFMC's rotated refresh token, unless another process already replaced `old`
        (compare-and-set under WATCH): a refresh token is single use."""
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(REFRESH_TOKENS_KEY)
                sealed = pipe.hget(REFRESH_TOKENS_KEY, name)
                if not sealed or self.box.open(sealed) != old:
                    return False
                pipe.multi()
                pipe.hset(REFRESH_TOKENS_KEY, name, self.box.seal(new))
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def mark_reconnect(self, name: str, reason: str) -> None:
        """SFMC refused the refresh token: an admin must sign in again (App Settings and
        `tenants check` show it)."""
        try:
            current = self._stored_record(name)
        except (TenantPinned, UnknownTenant):
            return
        if current.reconnect_reason != reason:
            self._write(replace(current, reconnect_reason=reason[:300]))

    def reseal(self) -> int:
        """Every stored secret sealed again under the first SECRET_KEY (key rotation)."""
        count = 0
        for name, raw in self.r.hgetall(TENANTS_KEY).items():
            self._write(self._decode(name, json.loads(raw)))
            count += 1
        for name, sealed in self.r.hgetall(REFRESH_TOKENS_KEY).items():
            self.r.hset(REFRESH_TOKENS_KEY, name, self.box.reseal(sealed))
        return count
