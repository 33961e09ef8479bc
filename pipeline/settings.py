"""The one settings object, built from environment variables.

Every variable the service reads is listed in ``SETTINGS_TABLE`` (rendered into the README),
read once here with its coercion and default. Per-tenant values come from ``TENANTS_FILE``
(TOML) or, without it, from the same variables for a single tenant named ``default``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache

from marshmallow import ValidationError

DEFAULT_TENANT = "default"

# name, meaning, default (None = required where used)
SETTINGS_TABLE: list[tuple[str, str, str | None]] = [
    ("REDIS_URL", "Redis for broker, ledger, limiter, token cache", "redis://127.0.0.1:6379/0"),
    ("PUBLIC_BASE_URL", "base URL written into config.json", "http://127.0.0.1:8000"),
    ("TENANTS_FILE", "TOML file of tenants; without it one tenant `default` from the env", None),
    ("JB_JWT_SECRET", "JWT signing secret of the installed package", None),
    ("ROKT_API_BASE_URL", "Rokt Calendar API", "https://api.roktcalendar.com"),
    ("ROKT_CLIENT_ID", "Rokt OAuth client id", None),
    ("ROKT_CLIENT_SECRET", "Rokt OAuth client secret", None),
    ("ROKT_ACCOUNT_CODE", "Rokt Calendar account code", None),
    ("ROKT_RATE_LIMIT", "Rokt requests per second per account, global across workers", "50"),
    ("SFMC_AUTH_BASE_URL", "SFMC authorization base URI (`.../v2/token` is appended)", None),
    ("SFMC_CLIENT_ID", "SFMC installed-package client id", None),
    ("SFMC_CLIENT_SECRET", "SFMC installed-package client secret", None),
    ("SFMC_ACCOUNT_ID", "SFMC MID of the business unit", None),
    ("SFMC_STATUS_DE_KEY", "external key of the status data extension", "RoktCalendarEventStatus"),
    ("SFMC_SUBSCRIPTION_DE_KEY", "external key of the subscription DE", "RoktCalendarSubscription"),
    ("SFMC_RATE_LIMIT", "SFMC REST calls per second per MID, global", "40"),
    ("ROKT_WEBHOOK_SECRET", "shared secret for webhook authentication", None),
    ("FLOWER_BASIC_AUTH", "`user:password` for Flower", None),
    ("HTTP_CONNECT_TIMEOUT", "seconds to connect to Rokt/SFMC", "3.05"),
    ("HTTP_READ_TIMEOUT", "seconds to wait for a Rokt/SFMC answer", "15"),
    ("EXECUTION_TTL_DAYS", "days the execution ledger keeps a record (JB retry window)", "30"),
    ("LOG_LEVEL", "logging level of every process", "INFO"),
    ("RECONCILE_QUEUED_AFTER", "seconds before a still-queued execution is re-driven", "600"),
    ("RECONCILE_CONFIRM_AFTER", "seconds before an unconfirmed accepted execution is checked at Rokt", "900"),
    ("RECONCILE_FINAL_AFTER", "seconds an accepted execution may stay unconfirmed before it fails", "7200"),
    ("DLQ_RETRY_AFTER", "seconds before a retryable dead letter is replayed once automatically", "600"),
    ("OUTBOX_CLAIM_IDLE_SECONDS", "seconds before a batch held by a lost flush is taken over", "180"),
]
_DEFAULTS = {name: default for name, _meaning, default in SETTINGS_TABLE}

TENANT_KEYS = (
    "jb_jwt_secret",
    "rokt_api_base_url",
    "rokt_client_id",
    "rokt_client_secret",
    "rokt_account_code",
    "rokt_rate_limit",
    "sfmc_auth_base_url",
    "sfmc_client_id",
    "sfmc_client_secret",
    "sfmc_account_id",
    "sfmc_status_de_key",
    "sfmc_subscription_de_key",
    "sfmc_rate_limit",
    "rokt_webhook_secret",
)


@dataclass(frozen=True)
class Tenant:
    """One brand: its SFMC package and Rokt Calendar account. Secrets never print."""

    name: str
    jb_jwt_secret: str = field(default="", repr=False)
    rokt_api_base_url: str = "https://api.roktcalendar.com"
    rokt_client_id: str = ""
    rokt_client_secret: str = field(default="", repr=False)
    rokt_account_code: str = ""
    rokt_rate_limit: float = 50.0
    sfmc_auth_base_url: str = ""
    sfmc_client_id: str = ""
    sfmc_client_secret: str = field(default="", repr=False)
    sfmc_account_id: str = ""
    sfmc_status_de_key: str = "RoktCalendarEventStatus"
    sfmc_subscription_de_key: str = "RoktCalendarSubscription"
    sfmc_rate_limit: float = 40.0
    rokt_webhook_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    redis_url: str
    public_base_url: str
    tenants: Mapping[str, Tenant]
    flower_basic_auth: str | None = field(default=None, repr=False)
    http_connect_timeout: float = 3.05
    http_read_timeout: float = 15.0
    execution_ttl_days: int = 30
    log_level: str = "INFO"
    reconcile_queued_after: float = 600.0
    reconcile_confirm_after: float = 900.0
    reconcile_final_after: float = 7200.0
    dlq_retry_after: float = 600.0
    outbox_claim_idle_seconds: float = 180.0

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout, self.http_read_timeout)

    def tenant(self, name: str) -> Tenant | None:
        return self.tenants.get(name)


def _tenant_from_mapping(name: str, values: Mapping[str, object]) -> Tenant:
    from schemas.tenants import TenantSchema  # schemas never import settings: no cycle

    loaded = TenantSchema().load({**values, "name": name})
    known = {f.name for f in fields(Tenant)}
    return Tenant(**{k: v for k, v in loaded.items() if k in known})


def load_tenants(env: Mapping[str, str]) -> dict[str, Tenant]:
    path = env.get("TENANTS_FILE")
    if path:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
        tables = document.get("tenants", {})
        if not tables:
            raise ValueError(f"{path}: no [tenants.<name>] tables")
        try:
            return {name: _tenant_from_mapping(name, table) for name, table in tables.items()}
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid tenant: {exc.messages}") from exc
    values = {
        key: env.get(key.upper(), _DEFAULTS.get(key.upper()))
        for key in TENANT_KEYS
        if env.get(key.upper(), _DEFAULTS.get(key.upper())) is not None
    }
    try:
        return {DEFAULT_TENANT: _tenant_from_mapping(DEFAULT_TENANT, values)}
    except ValidationError as exc:
        raise ValueError(f"invalid tenant settings: {exc.messages}") from exc


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        return env.get(name, _DEFAULTS[name])

    return Settings(
        redis_url=get("REDIS_URL") or "",
        public_base_url=(get("PUBLIC_BASE_URL") or "").rstrip("/"),
        tenants=load_tenants(env),
        flower_basic_auth=get("FLOWER_BASIC_AUTH"),
        http_connect_timeout=float(get("HTTP_CONNECT_TIMEOUT") or 3.05),
        http_read_timeout=float(get("HTTP_READ_TIMEOUT") or 15),
        execution_ttl_days=int(get("EXECUTION_TTL_DAYS") or 30),
        log_level=(get("LOG_LEVEL") or "INFO").upper(),
        reconcile_queued_after=float(get("RECONCILE_QUEUED_AFTER") or 600),
        reconcile_confirm_after=float(get("RECONCILE_CONFIRM_AFTER") or 900),
        reconcile_final_after=float(get("RECONCILE_FINAL_AFTER") or 7200),
        dlq_retry_after=float(get("DLQ_RETRY_AFTER") or 600),
        outbox_claim_idle_seconds=float(get("OUTBOX_CLAIM_IDLE_SECONDS") or 180),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return load_settings()
