"""The tenant registry: every brand this deployment serves, in Redis, changed without a restart.

Tenants come from two places. *Pinned* ones are read from `TENANTS_FILE` or the environment at
start (operators who keep configuration in files); they are read-only here. *Stored* ones live in
Redis: created by an admin's first sign-in to App Settings or by `rokt-sfmc tenants add`, and
changed there. Secrets are sealed (`pipeline.infra.crypto`) before they reach Redis.

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
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from typing import Any

import redis
from marshmallow import ValidationError

from pipeline.infra import keys
from pipeline.infra.crypto import SecretBox, SecretUnreadable
from pipeline.settings import (
    REGISTRY_ONLY_FIELDS,
    SECRET_TENANT_FIELDS,
    Settings,
    Tenant,
    tenant_from_mapping,
    tenant_problems,
)
from pipeline.vocabulary import SfmcAuthMode, TenantStatus

log = logging.getLogger(__name__)

EID_PATTERN = re.compile(r"^[0-9A-Za-z]{1,32}$")
WEBHOOK_SECRET_BYTES = 32
MAX_PREVIOUS_WEBHOOK_SECRETS = 4
MAX_PREVIOUS_JWT_SECRETS = 4
PREVIOUS_SEPARATOR = "\n"  # generated secrets are URL-safe: never a newline
MODIFY_ATTEMPTS = 20
# The settings a vendor token is issued for: when one changes, the cached token is dropped.
CREDENTIAL_FIELDS = {
    "rokt": ("rokt_api_base_url", "rokt_client_id", "rokt_client_secret"),
    "sfmc": (
        "sfmc_auth_base_url",
        "sfmc_client_id",
        "sfmc_client_secret",
        "sfmc_account_id",
        "sfmc_auth_mode",
        "sfmc_tssd",
    ),
}


class RegistryBusy(Exception):
    """A tenant record kept changing under a write (retried MODIFY_ATTEMPTS times)."""


class TenantPinned(Exception):
    """A tenant of the TOML file or the environment: change it there, not at run time."""


class UnknownTenant(LookupError):
    pass


# What each vendor's token check needs (Test connection says "not set" for these, not "HTTP 401").
VENDOR_REQUIRED = {
    "rokt": ("rokt_api_base_url", "rokt_client_id", "rokt_client_secret"),
    "sfmc": (
        "sfmc_account_id",
        "sfmc_refresh_token",
        "sfmc_auth_base_url",
        "sfmc_client_id",
        "sfmc_client_secret",
    ),
}


def missing_settings(tenant: Tenant, has_refresh_token: bool = False) -> list[str]:
    """The fields a tenant still needs before executes can run (App Settings lists them)."""
    required = [
        "jb_jwt_secret",
        "rokt_api_base_url",
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


def _with_mode_on(tenant: Tenant) -> Tenant:
    return replace(tenant, rokt_webhook_path_mode=True)


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
        self._demoted: dict[str, tuple[str, ...]] = {}  # said once per tenant and missing set

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
        name = self.r.hget(keys.registry_eid_index(), eid)
        return self.get(name) if name else None

    def has_refresh_token(self, name: str) -> bool:
        return bool(self.r.hexists(keys.registry_refresh_tokens(), name))

    def refresh_token(self, name: str) -> str:
        sealed = self.r.hget(keys.registry_refresh_tokens(), name)
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
            version = self.r.get(keys.registry_version())
            if version != self._version:
                self._stored = self._load_all()
                self._version = version
            self._checked_at = now
        return self._stored

    def _load_all(self) -> dict[str, Tenant]:
        loaded = {}
        unreadable: dict[str, list[str]] = {}
        with_token = set(self.r.hkeys(keys.registry_refresh_tokens()))
        for name, raw in self.r.hgetall(keys.registry_tenants()).items():
            try:
                tenant = self._decode(name, json.loads(raw))
            except (ValueError, ValidationError, SecretUnreadable) as exc:
                unreadable.setdefault(str(exc), []).append(name)
                continue
            loaded[name] = self._activated(tenant, name in with_token)
        for reason, names in unreadable.items():  # one line per cause, not one per tenant
            if not self.settings.secret_key:
                log.warning(
                    "%d stored tenant(s) not read (%s): their secrets are sealed with SECRET_KEY, "
                    "which is not set here; set it as the web app has it",
                    len(names),
                    ", ".join(sorted(names)),
                )
                break
            log.error("stored tenant(s) %s unreadable, ignored: %s", ", ".join(sorted(names)), reason)
        return loaded

    def _decode(self, name: str, record: Mapping[str, Any]) -> Tenant:
        values = dict(record)
        # a record of a version that kept SFMC's refusal here (now `Refusals`, in its own keys):
        # the next token request marks the tenant again if SFMC still refuses
        values.pop("reconnect_reason", None)
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
        raw = self.r.hget(keys.registry_tenants(), name)
        if raw is None:
            raise UnknownTenant(name)
        return self._decode(name, json.loads(raw))

    # -- writing -------------------------------------------------------------------------
    # Every change is read-modify-write under WATCH (retried when another write came between), so
    # a Save, a sign-in and a rotation never undo one another.
    def _modify(
        self,
        name: str,
        change: Callable[[Tenant | None], Tenant | None],
        *,
        refresh_token: str | None = None,
    ) -> Tenant:
        """Apply `change` to the stored record (None: absent) and store what it returns, with
        the version bump, the EID index and (when credentials changed) the cached access tokens
        dropped, in one transaction. `change` returning None leaves everything as it is."""
        if name in self.pinned:
            raise TenantPinned(
                f"tenant {name!r} is pinned by TENANTS_FILE or the environment; change it there"
            )
        for _attempt in range(MODIFY_ATTEMPTS):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(keys.registry_tenants(), keys.registry_refresh_tokens())
                    raw = pipe.hget(keys.registry_tenants(), name)
                    current = self._decode(name, json.loads(raw)) if raw is not None else None
                    tenant = change(current)
                    if tenant is None:
                        pipe.reset()
                        if current is None:
                            raise UnknownTenant(name)
                        return current
                    has_token = bool(refresh_token) or bool(
                        pipe.hexists(keys.registry_refresh_tokens(), name)
                    )
                    tenant = self._activated(tenant, has_token)
                    pipe.multi()
                    pipe.hset(keys.registry_tenants(), name, self._encode(tenant))
                    eid_before = current.sfmc_eid if current else ""
                    if eid_before and eid_before != tenant.sfmc_eid:
                        pipe.hdel(keys.registry_eid_index(), eid_before)
                    if tenant.sfmc_eid:
                        pipe.hset(keys.registry_eid_index(), tenant.sfmc_eid, name)
                    if refresh_token:
                        pipe.hset(keys.registry_refresh_tokens(), name, self.box.seal(refresh_token))
                    for vendor, credentials in CREDENTIAL_FIELDS.items():
                        changed = current is None or any(
                            getattr(current, f) != getattr(tenant, f) for f in credentials
                        )
                        if changed or (vendor == "sfmc" and refresh_token):
                            pipe.delete(keys.token(name, vendor))  # no token of old credentials
                            # nor their refusal: the next flush asks with the new ones at once
                            pipe.delete(
                                keys.credentials_rejected(name, vendor), keys.credentials_hold(name, vendor)
                            )
                    pipe.incr(keys.registry_version())
                    pipe.execute()
                except redis.WatchError:
                    continue
            self._checked_at = float("-inf")
            return tenant
        raise RegistryBusy(f"tenant {name!r}: changed by others {MODIFY_ATTEMPTS} times in a row; try again")

    def _activated(self, tenant: Tenant, has_refresh_token: bool) -> Tenant:
        """A pending tenant becomes active once nothing it needs is missing, and an active one that
        misses something is pending: execute accepts only active tenants, so a tenant that cannot
        send is answered 503 at once rather than 200 "queued" and failed later (a record written
        before required settings were guarded is demoted when read, too)."""
        missing = missing_settings(tenant, has_refresh_token)
        if tenant.status == TenantStatus.PENDING and not missing:
            return replace(tenant, status=TenantStatus.ACTIVE)
        if tenant.status == TenantStatus.ACTIVE and missing:
            names = tuple(sorted(missing))
            if self._demoted.get(tenant.name) != names:  # an operator must see why executes get 503
                self._demoted[tenant.name] = names
                log.warning(
                    "tenant %s is stored active but lacks %s: treated as pending (executes answer 503) "
                    "until App Settings or `rokt-sfmc tenants update` set them",
                    tenant.name,
                    ", ".join(names),
                )
            return replace(tenant, status=TenantStatus.PENDING)
        return tenant

    def _existing(self, name: str) -> Callable[[Tenant | None], Tenant]:
        def require(current: Tenant | None) -> Tenant:
            if current is None:
                raise UnknownTenant(name)
            return current

        return require

    def add(self, name: str, values: Mapping[str, Any]) -> Tenant:
        """A new stored tenant (`rokt-sfmc tenants add`); pending until its settings are complete."""
        settable = {k: v for k, v in values.items() if k not in REGISTRY_ONLY_FIELDS}
        defaults = {"rokt_api_base_url": self.settings.rokt_api_default_base_url}
        tenant = tenant_from_mapping(name, {**defaults, **settable, "status": TenantStatus.PENDING.value})
        self._check_eid_free(tenant.sfmc_eid, name)
        self._check_values(tenant)

        def create(current: Tenant | None) -> Tenant:
            if current is not None:
                raise ValueError(f"tenant {name!r} exists")
            return tenant

        if name in self.pinned:
            raise ValueError(f"tenant {name!r} exists")
        return self._modify(name, create)

    def _check_values(self, tenant: Tenant, before: Tenant | None = None) -> None:
        """Weak or published secrets and plain-http vendor URLs are refused (a ValidationError
        naming the field); on an update only the fields it changes are checked."""
        only = None
        if before is not None:
            only = {f for f in asdict(tenant) if getattr(tenant, f) != getattr(before, f)}
        problems = tenant_problems(tenant, sandbox=self.settings.sandbox, only=only)
        if problems:
            raise ValidationError(problems)

    def _check_eid_free(self, eid: str, name: str) -> None:
        if not eid:
            return
        owner = self.by_eid(eid)
        if owner is not None and owner.name != name:
            raise ValidationError({"sfmc_eid": [f"enterprise {eid} already belongs to tenant {owner.name}"]})

    def update(self, name: str, changes: Mapping[str, Any]) -> Tenant:
        """Change a stored tenant. A secret given as "" keeps its stored value (write-only fields
        of App Settings); status, pinning and rotation state are not changed here."""
        kept = {
            k: v
            for k, v in changes.items()
            if k not in REGISTRY_ONLY_FIELDS
            and k != "name"
            and not (k in SECRET_TENANT_FIELDS and v in ("", None))
        }

        def apply(current: Tenant | None) -> Tenant:
            current = self._existing(name)(current)
            values = {k: v for k, v in asdict(current).items() if k != "name"}
            tenant = tenant_from_mapping(name, {**values, **kept})
            self._check_eid_free(tenant.sfmc_eid, name)
            self._check_values(tenant, before=current)
            self._check_required_kept(current, tenant)
            return self._keep_previous_jwt_secret(current, tenant)

        return self._modify(name, apply)

    def _check_required_kept(self, current: Tenant, tenant: Tenant) -> None:
        """An active tenant keeps what it needs to send: blanking a required setting (clearing the
        account code, dropping the server-to-server client without a sign-in) is refused, naming
        each field, instead of leaving journeys running against a tenant that cannot send.
        Disable it first to take it apart; a pending tenant is filled in step by step."""
        if current.status != TenantStatus.ACTIVE:
            return
        has_token = self.has_refresh_token(current.name)
        before = set(missing_settings(current, has_token))
        lost = [f for f in missing_settings(tenant, has_token) if f not in before]
        if lost:
            message = "required while the tenant is active: journeys send with it"
            raise ValidationError({f: [message] for f in lost})

    def _keep_previous_jwt_secret(self, current: Tenant, tenant: Tenant) -> Tenant:
        """A changed JWT signing secret: the earlier one(s) still verify for
        `JWT_SECRET_GRACE_HOURS` (executes JB signed before the change and is retrying, activity
        UI sessions signed with it), then expire. No restart: the version bump propagates."""
        if tenant.jb_jwt_secret == current.jb_jwt_secret or not current.jb_jwt_secret:
            return tenant
        grace = self.settings.jwt_secret_grace_hours * 3600
        if grace <= 0:
            return replace(tenant, jb_jwt_secret_previous="", jb_jwt_previous_until=0.0)
        now = time.time()
        earlier = [s for s in current.jwt_secrets(now) if s != tenant.jb_jwt_secret]
        return replace(
            tenant,
            jb_jwt_secret_previous=PREVIOUS_SEPARATOR.join(earlier[:MAX_PREVIOUS_JWT_SECRETS]),
            jb_jwt_previous_until=now + grace if earlier else 0.0,
        )

    def set_status(self, name: str, status: TenantStatus) -> Tenant:
        """Disable or enable (an enabled tenant that still misses settings stays pending). On
        enable, `resumed_at` restarts the time budget of work that waited while it was disabled."""

        def apply(current: Tenant | None) -> Tenant:
            current = self._existing(name)(current)
            wanted = status
            if status == TenantStatus.ACTIVE and missing_settings(current, self.has_refresh_token(name)):
                wanted = TenantStatus.PENDING
            resumed = (
                time.time()
                if current.status == TenantStatus.DISABLED and wanted != TenantStatus.DISABLED
                else None
            )
            return replace(current, status=wanted, resumed_at=resumed or current.resumed_at)

        return self._modify(name, apply)

    def remove(self, name: str) -> bool:
        """The tenant's record, refresh token and EID index entry gone (the last step of
        erasing a tenant: pipeline/upkeep/tenant_erasure.py); False when it was not stored."""
        if name in self.pinned:
            raise TenantPinned(
                f"tenant {name!r} is pinned by TENANTS_FILE or the environment; remove it there"
            )
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hget(keys.registry_tenants(), name)
            pipe.hgetall(keys.registry_eid_index())
            raw, eids = pipe.execute()
            pipe.hdel(keys.registry_tenants(), name)
            pipe.hdel(keys.registry_refresh_tokens(), name)
            for eid in [eid for eid, owner in eids.items() if owner == name]:
                pipe.hdel(keys.registry_eid_index(), eid)
            pipe.incr(keys.registry_version())
            pipe.execute()
        self._checked_at = float("-inf")
        return raw is not None

    def sign_in(self, *, eid: str, mid: str, tssd: str, refresh_token: str | None, stack: str = "") -> Tenant:
        """The tenant of an admin who signed in to App Settings: found by enterprise id, or created
        pending on the account's first sign-in (adopting a stored tenant of that name that names
        no enterprise yet). Records the account's tenant subdomain, its stack (who may frame its
        pages; a sign-in that names none keeps the known one) and the offline refresh token
        (background calls); a new refresh token clears SFMC's refusal of the old one."""
        if not EID_PATTERN.match(eid):
            raise ValueError("enterprise id is not a plain identifier")
        auth_base = self.settings.tssd_auth_url(tssd)
        found = self.by_eid(eid)
        if found is not None and found.pinned:
            return found
        name = found.name if found is not None else tenant_name_for_eid(eid)
        if name in self.pinned:
            raise ValueError(f"tenant {name!r} is pinned without this enterprise id")

        def apply(current: Tenant | None) -> Tenant:
            if current is None:
                return tenant_from_mapping(
                    name,
                    {
                        "status": TenantStatus.PENDING.value,
                        "rokt_api_base_url": self.settings.rokt_api_default_base_url,
                        "sfmc_eid": eid,
                        "sfmc_tssd": tssd,
                        "sfmc_stack": stack,
                        "sfmc_account_id": mid,
                        "sfmc_auth_base_url": auth_base,
                        "sfmc_auth_mode": (
                            SfmcAuthMode.REFRESH_TOKEN if refresh_token else SfmcAuthMode.CLIENT_CREDENTIALS
                        ).value,
                    },
                )
            if current.sfmc_eid not in ("", eid):
                raise ValueError(f"tenant {name!r} belongs to another enterprise")
            derived = self.settings.tssd_auth_url(current.sfmc_tssd) if current.sfmc_tssd else ""
            return replace(
                current,
                sfmc_eid=eid,
                sfmc_tssd=tssd,
                sfmc_stack=stack or current.sfmc_stack,
                # follows the account's tssd unless an operator set another authorization base
                sfmc_auth_base_url=(
                    auth_base if current.sfmc_auth_base_url in ("", derived) else current.sfmc_auth_base_url
                ),
                sfmc_account_id=current.sfmc_account_id or mid,
            )

        tenant = self._modify(name, apply, refresh_token=refresh_token)
        log.info("sign-in: enterprise %s -> tenant %s (%s)", eid, tenant.name, tenant.status)
        return tenant

    def rotate_webhook_secret(self, name: str) -> str:
        """A new webhook secret (the HMAC key), returned once, and a new URL path token (its own
        random value: App Settings shows the URL with it). Every earlier secret and path token
        still in its grace period stays accepted until `WEBHOOK_SECRET_GRACE_HOURS` after this
        rotation, so Rokt's management centre can be updated meanwhile (whichever it holds)."""
        new = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
        new_token = secrets.token_urlsafe(WEBHOOK_SECRET_BYTES)
        now = time.time()

        def apply(current: Tenant | None) -> Tenant:
            current = self._existing(name)(current)
            earlier = list(current.webhook_secrets(now))
            tokens = list(
                _with_mode_on(current).webhook_path_tokens(now)
            )  # kept whatever the mode: it may be switched on again
            keep = bool(earlier or tokens)
            return replace(
                current,
                rokt_webhook_secret=new,
                rokt_webhook_secret_previous=PREVIOUS_SEPARATOR.join(earlier[:MAX_PREVIOUS_WEBHOOK_SECRETS]),
                rokt_webhook_path_token=new_token,
                rokt_webhook_path_token_previous=PREVIOUS_SEPARATOR.join(
                    tokens[:MAX_PREVIOUS_WEBHOOK_SECRETS]
                ),
                rokt_webhook_previous_until=now + self.settings.webhook_secret_grace_hours * 3600
                if keep
                else 0.0,
            )

        self._modify(name, apply)
        return new

    def replace_refresh_token(self, name: str, old: str, new: str) -> bool:
        """Store SFMC's rotated refresh token, unless the stored one is no longer `old` (another
        process stored its successor): a refresh token is single use. Compare-and-set under WATCH,
        retried when an unrelated write touched the hash meanwhile."""
        for _attempt in range(MODIFY_ATTEMPTS):
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(keys.registry_refresh_tokens())
                    sealed = pipe.hget(keys.registry_refresh_tokens(), name)
                    if not sealed or self.box.open(sealed) != old:
                        return False
                    pipe.multi()
                    pipe.hset(keys.registry_refresh_tokens(), name, self.box.seal(new))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        raise RegistryBusy(f"tenant {name!r}: refresh token store busy")

    def reseal(self) -> int:
        """Every stored secret sealed again under the first SECRET_KEY (key rotation)."""
        count = 0
        for name in self.r.hkeys(keys.registry_tenants()):
            self._modify(name, lambda current: current and replace(current))  # re-encoded: sealed anew
            count += 1
        for name, sealed in self.r.hgetall(keys.registry_refresh_tokens()).items():
            self.r.hset(keys.registry_refresh_tokens(), name, self.box.reseal(sealed))
        return count
