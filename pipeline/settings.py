"""The one settings object, built from environment variables.

Each setting is declared once, as a field of ``Settings`` or ``Tenant`` made by ``setting()``:
its default (what an unset or empty variable takes; an empty default means "required where
used"), what it means, and how its variable (the upper-cased field name) is read. From those
declarations come ``SETTINGS_TABLE`` (the docs' table and .env.example's check) and
``load_settings``. Tenants live in the registry (``pipeline.tenancy.tenants``: App Settings,
``rokt-sfmc tenants add``); ``TENANTS_FILE`` (TOML) or, without it, the tenant variables (a single
tenant named ``default``) seed pinned tenants.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import ValidationError

from pipeline.vocabulary import DNS_LABEL, SfmcAuthMode, TenantStatus
from schemas.tenants import TenantSchema

DEFAULT_TENANT = "default"

# `{stack}` in an origin pattern: the label of the tenant's SFMC stack (`s4` for stackKey "S4",
# learnt at sign-in), or `*` (any stack) while it is unknown (pipeline.web.origins.frame_origins).
STACK_PLACEHOLDER = "{stack}"
# Journey Builder's origin on the tenant's stack (docs/vendors/sfmc-app.md A.1).
JB_ORIGIN_PATTERN = "https://jbinteractions.{stack}.marketingcloudapps.com"
# Marketing Cloud's own pages, which frame the app (App Settings): classic and current hosts.
MC_ORIGIN_PATTERNS = ("https://mc.{stack}.exacttarget.com", "https://*.{stack}.marketingcloudapps.com")
# scheme://host[:port]; `*` may stand in a host label or for the port (one or more [A-Za-z0-9-])
_ORIGIN_PATTERN = re.compile(r"^https?://[A-Za-z0-9*-]+(\.[A-Za-z0-9*-]+)*(:([0-9]+|\*))?$")
# a stack's label in a host name: stackKey "S4" -> "s4" (one DNS label)
STACK_LABEL = re.compile(DNS_LABEL)


def _secret_keys(value: str) -> tuple[str, ...]:
    keys = tuple(item.strip() for item in value.split(",") if item.strip())
    for key in keys:
        if len(key) < 32:
            raise ValueError("SECRET_KEY: each comma-separated key must be at least 32 characters")
    return keys


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r}: must be 0 or more")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value!r}: must be 1 or more")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not 0 < number < float("inf"):  # NaN and inf too
        raise ValueError(f"{value!r}: must be a number more than 0")
    return number


def _log_format(value: str) -> str:
    value = value.strip().lower()
    if value not in ("json", "text"):
        raise ValueError("LOG_FORMAT: json or text")
    return value


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_BROKER_SCHEMES = (*AMQP_SCHEMES, "redis", "rediss", "redis+sentinel", "sentinel")


def _broker_url(value: str) -> str:
    """`BROKER_URL`: a RabbitMQ (`amqp://user:password@host:5672/vhost`, `amqps://` for TLS) or
    Redis URL; unset: REDIS_URL is the broker too."""
    value = value.strip()
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in _BROKER_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in _BROKER_SCHEMES)
        raise ValueError(f"BROKER_URL: not a broker URL (it may hold a password: not shown); use {schemes}")
    return value


def _history_url(value: str) -> str:
    if not value.startswith(("sqlite://", "postgresql+psycopg://")):
        raise ValueError("HISTORY_URL: sqlite:///PATH or postgresql+psycopg://user:PASSWORD@host/db")
    return value


def is_amqp(url: str) -> bool:
    """A RabbitMQ broker URL (`amqp://`, `amqps://`, `pyamqp://`)."""
    return url.split("://", 1)[0].lower() in AMQP_SCHEMES


def stack_label(stack_key: str) -> str:
    """The label of a stack in Marketing Cloud's host names (`S4` -> `s4`); "" for a value that is
    no single DNS label (then nothing is derived from it)."""
    label = stack_key.strip().lower()
    return label if STACK_LABEL.fullmatch(label) else ""


def parse_origin_patterns(value: str) -> tuple[str, ...]:
    """`JB_ALLOWED_ORIGINS`: comma-separated origin patterns, e.g. `https://jbinteractions.{stack}.marketingcloudapps.com`
    or `http://127.0.0.1:*`. `{stack}` (a whole host label) is the tenant's stack, `*` until it is
    known. A wildcard must leave at least two fixed labels to its right (so it can be written as a
    CSP `frame-ancestors` source: `https://*.marketingcloudapps.com`)."""
    patterns = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    if not patterns:
        raise ValueError("JB_ALLOWED_ORIGINS: no origin pattern")
    for pattern in patterns:
        any_stack = pattern.replace(STACK_PLACEHOLDER, "*")
        labels = pattern.split("://", 1)[-1].split(":", 1)[0].split(".")
        if not _ORIGIN_PATTERN.match(any_stack) or any("{" in x and x != STACK_PLACEHOLDER for x in labels):
            raise ValueError(f"JB_ALLOWED_ORIGINS: {pattern!r} is not scheme://host[:port]")
        host = any_stack.split("://", 1)[1].split(":", 1)[0]
        labels = host.split(".")
        wild = [i for i, label in enumerate(labels) if "*" in label]
        if wild and len(labels) - wild[-1] - 1 < 2:
            raise ValueError(f"JB_ALLOWED_ORIGINS: {pattern!r}: too broad a wildcard")
    return patterns


# -- secret strength -------------------------------------------------------------------------
# Secrets anyone can read: the sandbox's (pipeline/sandbox/__init__.py, which `pipeline` never
# imports; tests/unit/test_settings.py checks both lists agree). Accepted only with SANDBOX=1.
KNOWN_PUBLIC_SECRETS = frozenset(
    {
        "sandbox-jwt-signing-secret-0123456789abcdef",
        "sandbox-webhook-secret",
        "sandbox-webhook-path-token-0123456789abcdef",
        "sandbox-secret-key-for-sealing-tenant-secrets-0123456789",
    }
)
# The secrets we authenticate callers with. The strength of a given string cannot be measured,
# only its shape: at least 32 characters (HS256 keys shorter than the hash are weak, RFC 7518
# 3.2), at least 8 distinct characters, and not one short pattern repeated. A generated
# `secrets.token_urlsafe(32)` (43 characters, 256 random bits) always passes.
STRONG_SECRET_FIELDS = ("jb_jwt_secret", "rokt_webhook_secret", "rokt_webhook_path_token")
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 8
# Vendor base URLs of a tenant: credentials and contact data travel to them.
TENANT_HTTPS_ONLY = ("rokt_api_base_url", "sfmc_auth_base_url")


def _repeats_a_pattern(value: str) -> bool:
    """`abcabcabc...`: the whole value is a shorter piece repeated at least twice."""
    n = len(value)
    return any(n % size == 0 and value == value[:size] * (n // size) for size in range(1, n // 2 + 1))


def secret_problem(value: str, *, sandbox: bool) -> str | None:
    """Why `value` is no acceptable authentication secret (None: it is). Empty is "not set"."""
    if not value:
        return None
    if value in KNOWN_PUBLIC_SECRETS:
        return None if sandbox else "is a published sandbox secret (accepted only with SANDBOX=1)"
    if len(value) < SECRET_MIN_LENGTH:
        return f"too short: at least {SECRET_MIN_LENGTH} random characters (e.g. a generated one)"
    if len(set(value)) < SECRET_MIN_DISTINCT or _repeats_a_pattern(value):
        return "too predictable: a repeated pattern; use a generated secret"
    return None


def tenant_problems(tenant: Tenant, *, sandbox: bool, only: set[str] | None = None) -> dict[str, list[str]]:
    """What load-time validation refuses in a tenant: weak or public secrets, and vendor base
    URLs that are not https (plain http only with SANDBOX=1). `only`: check these fields only."""
    problems: dict[str, list[str]] = {}
    for name in STRONG_SECRET_FIELDS:
        if only is None or name in only:
            problem = secret_problem(getattr(tenant, name), sandbox=sandbox)
            if problem:
                problems[name] = [problem]
    if only is None or "reporting_time_zone" in only:
        problem = zone_problem(tenant.reporting_time_zone)
        if problem:
            problems["reporting_time_zone"] = [problem]
    for name in TENANT_HTTPS_ONLY:
        if only is None or name in only:
            url = getattr(tenant, name)
            if url and not sandbox and not url.startswith("https://"):
                problems[name] = ["must be an https:// URL (plain http only with SANDBOX=1)"]
    return problems


def zone_problem(name: str) -> str:
    """Why `name` is not a usable reporting time zone ('' when it is)."""
    try:
        ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not an IANA time zone (e.g. Europe/London, America/New_York)"
    return ""


def setting(default: Any, help: str, *, parse: Callable[[str], Any] = str, repr: bool = True) -> Any:
    """One setting, declared once: its default (what an unset or empty variable takes), what it
    means (the docs' table and .env.example) and how its variable is read (Settings fields only;
    a tenant's are read by schemas.tenants). The variable is the upper-cased field name."""
    return field(default=default, repr=repr, metadata={"help": help, "parse": parse})


def _with_previous(current: str, previous: str, until: float, now: float) -> tuple[str, ...]:
    values = [current] if current else []
    if previous and now < until:
        values.extend(v for v in previous.split("\n") if v and v not in values)
    return tuple(values)


@dataclass(frozen=True)
class Tenant:
    """One brand: its SFMC package and Rokt Calendar account. Secrets never print."""

    name: str
    jb_jwt_secret: str = setting(
        "",
        "JWT signing secret of the installed package (≥32 characters, no sandbox secret)",
        repr=False,
    )
    rokt_api_base_url: str = setting("https://api.roktcalendar.com", "Rokt Calendar API")
    rokt_client_id: str = setting("", "Rokt OAuth client id")
    rokt_client_secret: str = setting("", "Rokt OAuth client secret", repr=False)
    rokt_account_code: str = setting("", "Rokt Calendar account code")
    rokt_rate_limit: float = setting(50.0, "Rokt requests per second per account, global across workers")
    sfmc_auth_base_url: str = setting("", "SFMC authorization base URI (`.../v2/token` is appended)")
    sfmc_client_id: str = setting("", "SFMC installed-package client id")
    sfmc_client_secret: str = setting("", "SFMC installed-package client secret", repr=False)
    sfmc_account_id: str = setting("", "SFMC MID of the business unit")
    sfmc_status_de_key: str = setting("RoktCalendarEventStatus", "external key of the status data extension")
    sfmc_subscription_de_key: str = setting("RoktCalendarSubscription", "external key of the subscription DE")
    sfmc_performance_de_key: str = setting(
        "RoktCalendarPerformance", "external key of the performance DE (one row per day and activity)"
    )
    sfmc_rate_limit: float = setting(40.0, "SFMC REST calls per second per MID, global")
    rokt_webhook_secret: str = setting(
        "",
        "HMAC key of webhook signatures (`X-Rokt-Signature`); ≥32 characters, no sandbox secret",
        repr=False,
    )
    # App Settings and sign-in (the registry); a TOML/env tenant is `pinned`: read-only there
    rokt_account_id: str = setting("", "Rokt Calendar account id (shown in App Settings)")
    status: TenantStatus = TenantStatus.ACTIVE
    pinned: bool = False
    sfmc_eid: str = setting(
        "",  # enterprise id: who signs in maps to this tenant
        "enterprise id of the SFMC account: an admin of it who signs in manages this tenant",
    )
    sfmc_tssd: str = setting(
        "",  # the account's tenant subdomain, from the sign-in redirect
        "the SFMC account's tenant subdomain",
    )
    sfmc_stack: str = setting(
        "",  # recorded at sign-in from /v2/userinfo's stack key
        (
            "the SFMC account's stack (`s4`), from its sign-in: `{stack}` in JB_ALLOWED_ORIGINS and "
            "MC_ALLOWED_ORIGINS; unknown: any stack"
        ),
    )
    frame_origins: str = setting(
        "",
        (
            "comma-separated origins that alone may frame this tenant's pages, instead of those its "
            "stack gives (rare: a Marketing Cloud host the defaults miss)"
        ),
    )
    reporting_time_zone: str = setting(
        "UTC",
        "IANA time zone of the tenant's report days (`Europe/London`; App Settings): a day counts there",
    )
    sfmc_auth_mode: SfmcAuthMode = setting(
        SfmcAuthMode.CLIENT_CREDENTIALS,
        "`client_credentials` or `refresh_token` (the offline token of an admin's sign-in)",
    )
    # after a rotation the previous webhook secret is still accepted until this epoch second
    # (newline-separated: a second rotation within the grace period keeps the first secret too)
    rokt_webhook_secret_previous: str = field(default="", repr=False)
    rokt_webhook_previous_until: float = 0.0
    resumed_at: float = 0.0  # when last enabled after being disabled: work that waited restarts its budget
    # The webhook URL's last path segment (`/t/<t>/webhooks/rokt/<token>`): a bearer token of its
    # own, never the HMAC key; rotated with the webhook secret (its previous ones share the grace
    # period). Path mode off, or no token: header-only (X-Rokt-Signature).
    rokt_webhook_path_token: str = setting(
        "",
        (
            "bearer token of the webhook URL `/t/<tenant>/webhooks/rokt/<token>` (≥32 characters, not the "
            "HMAC key); unset: header-only"
        ),
        repr=False,
    )
    rokt_webhook_path_mode: bool = setting(
        True,
        "`false`: the URL token is refused, webhooks must be signed (header-only)",
    )
    rokt_webhook_path_token_previous: str = field(default="", repr=False)
    # a changed JWT signing secret: the previous one(s) still verify until this epoch second
    jb_jwt_secret_previous: str = field(default="", repr=False)
    jb_jwt_previous_until: float = 0.0

    def webhook_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets a webhook may be signed with now: the current one, and the previous ones
        during their grace period."""
        return _with_previous(
            self.rokt_webhook_secret, self.rokt_webhook_secret_previous, self.rokt_webhook_previous_until, now
        )

    def webhook_path_tokens(self, now: float) -> tuple[str, ...]:
        """The path tokens the webhook URL may carry now; none when path mode is off."""
        if not self.rokt_webhook_path_mode:
            return ()
        return _with_previous(
            self.rokt_webhook_path_token,
            self.rokt_webhook_path_token_previous,
            self.rokt_webhook_previous_until,
            now,
        )

    def jwt_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets an execute JWT (and an activity UI session) may be signed with now."""
        return _with_previous(
            self.jb_jwt_secret, self.jb_jwt_secret_previous, self.jb_jwt_previous_until, now
        )


# Tenant fields that hold a secret: sealed at rest in the registry, never shown or logged.
SECRET_TENANT_FIELDS = frozenset(
    {
        "jb_jwt_secret",
        "rokt_client_secret",
        "sfmc_client_secret",
        "rokt_webhook_secret",
        "rokt_webhook_secret_previous",
        "rokt_webhook_path_token",
        "rokt_webhook_path_token_previous",
        "jb_jwt_secret_previous",
    }
)
# Fields the registry keeps that no TOML table or env var sets.
REGISTRY_ONLY_FIELDS = frozenset(
    {
        "status",
        "pinned",
        "rokt_webhook_secret_previous",
        "rokt_webhook_previous_until",
        "resumed_at",
        "rokt_webhook_path_token_previous",
        "jb_jwt_secret_previous",
        "jb_jwt_previous_until",
    }
)
# the keys of a `[tenants.<name>]` table, and (upper-cased) the env vars of the `default` tenant
TENANT_KEYS = tuple(f.name for f in fields(Tenant) if f.name != "name" and f.name not in REGISTRY_ONLY_FIELDS)


@dataclass(frozen=True)
class Settings:
    tenants: Mapping[str, Tenant]
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        (
            "Redis for ledger, limiter, token cache, beat schedule (and the broker without BROKER_URL); "
            "TLS: `rediss://:PASSWORD@host:port/0?ssl_ca_certs=/path/ca.pem` (SECURITY.md)"
        ),
    )
    broker_url: str = setting(
        "",  # the Celery broker; empty: REDIS_URL (see `broker`)
        (
            "Celery broker of every process; unset: REDIS_URL. Production: RabbitMQ "
            "`amqp://USER:PASSWORD@host:5672/VHOST` (quorum queues, publisher confirms; "
            "docs/architecture.md, Broker)"
        ),
        parse=_broker_url,
    )
    public_base_url: str = setting(
        "http://127.0.0.1:8000",
        "base URL written into config.json",
        parse=lambda value: value.rstrip("/"),
    )
    flower_basic_auth: str | None = setting(None, "`user:password` for Flower", repr=False)
    http_connect_timeout: float = setting(3.05, "seconds to connect to Rokt/SFMC", parse=float)
    http_read_timeout: float = setting(15.0, "seconds to wait for a Rokt/SFMC answer", parse=float)
    # a Rokt call its limiter cannot admit within this long is rescheduled, not slept (ratelimit.py)
    rokt_limit_sleep_ms: int = setting(
        25,
        (
            "milliseconds a Rokt call may sleep for its rate-limit slot; a later slot is taken as a "
            "ticket and the task rescheduled to it; at least 1000 on RabbitMQ, whose delays count whole "
            "seconds (docs/architecture.md, the Rokt stage)"
        ),
        parse=_non_negative_int,
    )
    # arrival jitter between our workers and a vendor that the limiters leave room for (ratelimit.py)
    rate_limit_jitter_ms: int = setting(
        40,
        (
            "milliseconds of arrival jitter (network, busy hosts) the Rokt and SFMC limiters leave room "
            "for, at the cost of a longer interval; raise it when a vendor answers 429 while we keep "
            "under its rate (docs/architecture.md, the Rokt stage)"
        ),
        parse=_non_negative_int,
    )
    event_job_share: float = setting(
        0.5,
        (
            "the share of a tenant's Rokt rate an event job (correction, cancel, withdrawal) may take "
            "while creates wait for their slots; alone, a job uses the whole rate "
            "(docs/events-after-sending.md)"
        ),
        parse=float,
    )
    event_job_parallel: int = setting(
        4, "chunks of one event job worked on at once (each calls Rokt one after another)", parse=int
    )
    event_job_idle_seconds: int = setting(
        120,
        "seconds a running event job may make no progress before the reconciler sends its steps again",
        parse=int,
    )
    click_repeat_seconds: float = setting(
        10.0,
        (
            "seconds in which repeated clicks on one event's tracked links count once (a double tap; "
            "also bounds what one link can make us write); 0 counts every click"
        ),
        parse=float,
    )
    performance_days: int = setting(
        400,
        "days each day's performance figures are kept (rokt-sfmc report, the Performance page)",
        parse=_positive_int,
    )
    execution_ttl_days: int = setting(
        30,
        (
            "days an execution is kept: in Redis while it waits for something (accepted, failed), "
            "in the history store once finished (docs/history.md)"
        ),
        parse=int,
    )
    history_url: str = setting(
        "sqlite:///rokt-sfmc-history.db",
        (
            "the history store of finished executions: `postgresql+psycopg://user:PASSWORD@host/db` "
            "in production, a SQLite file (embedded, one host) by default (docs/history.md)"
        ),
        parse=_history_url,
        repr=False,
    )
    execution_tombstone_seconds: int = setting(
        3600,
        (
            "seconds a finished execution's tombstone keeps execute's dedupe in Redis once the history "
            "store holds it: more than Journey Builder's longest retry window (about 11 minutes)"
        ),
        parse=_positive_int,
    )
    log_level: str = setting("INFO", "logging level of every process", parse=str.upper)
    log_format: str = setting(
        "json",  # json lines for collectors; text for a terminal
        "`json` (one JSON object a line, for a log collector) or `text` (for a terminal)",
        parse=_log_format,
    )
    exporter_port: int = setting(
        9808,
        "port of `rokt-sfmc exporter` (Prometheus metrics read from Redis at scrape time)",
        parse=int,
    )
    # execute answers 200 once its claim reached this many Redis replicas (WAIT; 0: off), else 503
    redis_wait_replicas: int = setting(
        0,
        (
            "execute answers 200 only once its claim reached this many Redis replicas (`WAIT`; count them "
            "all), else 503 and Journey Builder retries; 0: off (docs/architecture.md, Durability)"
        ),
        parse=_non_negative_int,
    )
    redis_wait_timeout_ms: int = setting(
        500,
        "milliseconds execute waits for REDIS_WAIT_REPLICAS before its 503",
        parse=_positive_int,
    )
    # retention of contact data in Redis (pipeline/upkeep/privacy.py; 0 = no end)
    dead_letter_retention_days: int = setting(
        30,
        "days a dead letter is kept from its failure (and a replayed one from its replay); 0: no end",
        parse=_non_negative_int,
    )
    subscription_retention_days: int = setting(
        0,
        "days a live subscription is kept (history store) after its last event; 0: while it is live",
        parse=_non_negative_int,
    )
    ended_subscription_retention_days: int = setting(
        30,
        "days an unsubscribed or removed subscription is kept (history store); 0: no end",
        parse=_non_negative_int,
    )
    webhook_receipt_days: int = setting(
        7,
        (
            "days a webhook receipt is kept: its envelope in Redis until processed, its eventId in "
            "the history store (a later re-send from Rokt's dashboard is still a duplicate)"
        ),
        parse=_non_negative_int,
    )
    webhook_dedupe_minutes: int = setting(
        120,
        (
            "minutes a processed webhook's dedupe marker stays in Redis: Rokt retries for 30 minutes "
            "and may deliver twice, a lost task is redelivered within 15; later ones are told by the store"
        ),
        parse=_positive_int,
    )
    erasure_audit_days: int = setting(
        730,
        "days the record of an erasure (`rokt-sfmc forget`, no contact data) is kept; 0: no end",
        parse=_non_negative_int,
    )
    reconcile_queued_after: float = setting(
        600.0,
        "seconds before a still-queued execution is re-driven",
        parse=float,
    )
    reconcile_confirm_after: float = setting(
        900.0,
        "seconds before an unconfirmed accepted execution is checked at Rokt",
        parse=float,
    )
    reconcile_final_after: float = setting(
        7200.0,
        "seconds an accepted execution may stay unconfirmed before it fails",
        parse=float,
    )
    dlq_retry_after: float = setting(
        600.0,
        "seconds before a retryable dead letter is replayed once automatically",
        parse=float,
    )
    outbox_claim_idle_seconds: float = setting(
        180.0,
        "seconds before a batch held by a lost flush is taken over",
        parse=float,
    )
    intake_reclaim_seconds: float = setting(
        60.0,
        "seconds before accepted executions held by a lost intake pump are taken over",
        parse=_positive_float,
    )
    # who may frame the activity UI and talk to it through Postmonger (also its frame-ancestors)
    jb_allowed_origins: tuple[str, ...] = setting(
        (JB_ORIGIN_PATTERN,),
        (
            "comma-separated origins allowed to frame the activity UI and exchange Postmonger messages "
            "with it (`*`: one DNS label or a port; `{stack}`: the tenant's stack, `*` until known)"
        ),
        parse=parse_origin_patterns,
    )
    # the app in Marketing Cloud (sign-in, App Settings)
    secret_key: tuple[str, ...] = setting(
        (),  # the first seals, every one opens
        (
            "comma-separated keys (≥32 characters) that seal tenant secrets in Redis: the first seals, "
            "all open (rotation: put the new key first, run `rokt-sfmc tenants reseal`, drop the old)"
        ),
        parse=_secret_keys,
        repr=False,
    )
    sfmc_app_client_id: str = setting(
        "",
        "client id of the package's Web App API integration (App Settings sign-in)",
    )
    sfmc_app_client_secret: str = setting("", "its client secret", repr=False)
    sfmc_app_auth_base_url: str = setting(
        "",
        "the package's authorization base URI (`/v2/authorize` is appended)",
        parse=lambda value: value.rstrip("/"),
    )
    sfmc_tssd_auth_url: str = setting(
        "https://{tssd}.auth.marketingcloudapis.com",
        "an account's authorization base URI; `{tssd}` is the sign-in's tenant subdomain",
        parse=lambda value: value.rstrip("/"),
    )
    sfmc_app_scopes: str = setting(
        "offline data_extensions_read data_extensions_write journeys_read journeys_execute "
        "list_and_subscribers_read list_and_subscribers_write",
        "scopes asked at sign-in (`offline`: background calls with the refresh token)",
        parse=lambda value: " ".join(value.split()),
    )
    mc_allowed_origins: tuple[str, ...] = setting(
        MC_ORIGIN_PATTERNS,
        (
            "comma-separated origins allowed to frame App Settings (`frame-ancestors`; `{stack}`: the "
            "signed-in tenant's stack; the sign-in pages themselves: `*`)"
        ),
        parse=parse_origin_patterns,
    )
    # where tenants created at run time (sign-in, `tenants add`) reach Rokt unless they say otherwise
    rokt_api_default_base_url: str = setting(
        "https://api.roktcalendar.com",
        "Rokt Calendar API of tenants created by sign-in or `tenants add` without their own",
        parse=lambda value: value.rstrip("/"),
    )
    webhook_secret_grace_hours: float = setting(
        72.0,
        "hours the previous webhook secret and path token are still accepted after a rotation",
        parse=float,
    )
    jwt_secret_grace_hours: float = setting(
        24.0,
        (
            "hours the previous JWT signing secret still verifies executes and activity UI sessions after "
            "it is changed in App Settings or `tenants update` (0: at once)"
        ),
        parse=float,
    )
    # failed execute/webhook authentications per tenant and client address before a 429 (0: off)
    auth_failure_limit: int = setting(
        20,
        (
            "failed execute/webhook authentications per tenant and client address within the window "
            "before answers become 429 with Retry-After (0: no limit)"
        ),
        parse=int,
    )
    auth_failure_window_seconds: int = setting(300, "the window of AUTH_FAILURE_LIMIT, in seconds", parse=int)
    auth_failure_addresses_max: int = setting(
        2000,
        (
            "client addresses whose failures are counted per tenant, route and window: a ceiling on what "
            "unauthenticated callers can store; addresses beyond it are not limited (never locked out)"
        ),
        parse=_positive_int,
    )
    # App Settings sign-ins started and not finished (GET /app/login): a fixed ceiling, so that a
    # flood of unauthenticated sign-ins cannot fill Redis (pipeline/web/signin_states.py)
    signin_states_max: int = setting(
        5000,
        "sign-ins started and not yet finished (10 minutes each) in all before `/app/login` answers 429",
        parse=_positive_int,
    )
    signin_states_per_address: int = setting(
        30,
        "sign-ins started and not yet finished from one client address before `/app/login` answers 429",
        parse=_positive_int,
    )
    # proxies in front of the web tier: the client's address is what the nearest of them saw
    trusted_proxy_hops: int = setting(
        0,
        (
            "proxies in front of the web tier that append the caller's address to X-Forwarded-For "
            "(a TLS terminator: 1); 0: the socket's address is the client's and the header is ignored"
        ),
        parse=int,
    )
    tenant_refresh_seconds: float = setting(
        2.0,
        "seconds before a process sees a tenant added or changed in App Settings",
        parse=float,
    )
    sandbox: bool = setting(
        False,
        "`1` only with the sandbox simulators (plain-http vendor URLs, the sandbox's published secrets)",
        parse=_flag,
    )

    def tssd_auth_url(self, tssd: str) -> str:
        """The authorization base URI of one account (`tssd` is validated by the caller)."""
        return self.sfmc_tssd_auth_url.replace("{tssd}", tssd).rstrip("/")

    @property
    def broker(self) -> str:
        """The Celery broker every process connects to: BROKER_URL, or REDIS_URL without it."""
        return self.broker_url or self.redis_url

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout, self.http_read_timeout)

    def tenant(self, name: str) -> Tenant | None:
        return self.tenants.get(name)


TENANTS_FILE_HELP = (
    "TOML file of pinned tenants; without it, any tenant variable below pins one tenant `default`"
)


def _default_text(f: Any) -> str | None:
    """The docs' rendering of a field's default; None when it has none (required where used)."""
    value = f.default
    if value is MISSING or value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _documented(cls: type) -> list[tuple[str, str, str | None]]:
    return [
        (f.name.upper(), f.metadata["help"], _default_text(f)) for f in fields(cls) if "help" in f.metadata
    ]


# Every variable the service reads: name, meaning, default; built from the declarations above.
SETTINGS_TABLE: list[tuple[str, str, str | None]] = [
    *_documented(Settings),
    ("TENANTS_FILE", TENANTS_FILE_HELP, None),
    *_documented(Tenant),
]
# how each Settings field reads its variable (the upper-cased field name)
_SETTINGS_PARSERS: dict[str, Callable[[str], Any]] = {
    f.name: f.metadata["parse"] for f in fields(Settings) if "parse" in f.metadata
}


# Service-wide vendor URLs that must be https outside the sandbox (empty: not configured).
_HTTPS_ONLY = ("sfmc_app_auth_base_url", "sfmc_tssd_auth_url", "rokt_api_default_base_url")


def tenant_from_mapping(name: str, values: Mapping[str, object]) -> Tenant:
    """Validated by the schema (and `frame_origins` by the origin grammar here); what `values`
    leaves out takes the Tenant field default."""
    if isinstance(values.get("sfmc_stack"), str):  # as SFMC writes it ("S4") or already a label
        values = {**values, "sfmc_stack": stack_label(values["sfmc_stack"]) or values["sfmc_stack"]}
    loaded = TenantSchema().load({**values, "name": name})
    if str(loaded.get("frame_origins") or "").strip():
        try:
            parse_origin_patterns(loaded["frame_origins"])
        except ValueError as exc:
            message = str(exc).replace("JB_ALLOWED_ORIGINS", "frame_origins")
            raise ValidationError({"frame_origins": [message]}) from exc
    return Tenant(**loaded)


def _pinned(name: str, values: Mapping[str, object], where: str) -> Tenant:
    """A tenant of the TOML file or the env: read-only in App Settings."""
    registry_only = sorted(set(values) & REGISTRY_ONLY_FIELDS)
    if registry_only:
        raise ValueError(f"{where}: tenant {name!r}: {', '.join(registry_only)} cannot be set here")
    return tenant_from_mapping(name, {**values, "pinned": True})


def _check_pinned(tenants: Mapping[str, Tenant], sandbox: bool, tenants_file: str | None) -> None:
    """Refuse to start with a weak or public secret, or a plain-http vendor URL, naming the
    tenant and the key (the env var of the `default` tenant, the TOML key of a file's)."""
    for name, tenant in tenants.items():
        for key, messages in tenant_problems(tenant, sandbox=sandbox).items():
            where = f"{tenants_file}: tenant {name!r}: {key}" if tenants_file else None
            where = where or f"tenant {name!r}: {key.upper()}"
            raise ValueError(f"{where}: {messages[0]}")


def load_tenants(env: Mapping[str, str]) -> dict[str, Tenant]:
    path = env.get("TENANTS_FILE")
    if path:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
        tables = document.get("tenants", {})
        if not tables:
            raise ValueError(f"{path}: no [tenants.<name>] tables")
        try:
            return {name: _pinned(name, table, path) for name, table in tables.items()}
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid tenant: {exc.messages}") from exc
    values = {key: env[key.upper()] for key in TENANT_KEYS if env.get(key.upper())}
    if not values:
        return {}  # every tenant lives in the registry (App Settings, `rokt-sfmc tenants add`)
    try:
        return {DEFAULT_TENANT: _pinned(DEFAULT_TENANT, values, "environment")}
    except ValidationError as exc:
        raise ValueError(f"invalid tenant settings: {exc.messages}") from exc


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment); unset or empty -> field default."""
    env = os.environ if env is None else env
    values = {
        name: parse(env[name.upper()]) for name, parse in _SETTINGS_PARSERS.items() if env.get(name.upper())
    }
    settings = Settings(tenants=load_tenants(env), **values)
    if not settings.sandbox:  # the app's client secret and sign-in codes travel to these
        for name in _HTTPS_ONLY:
            if getattr(settings, name) and not getattr(settings, name).startswith("https://"):
                raise ValueError(f"{name.upper()}: must be an https:// URL (plain http only with SANDBOX=1)")
        if any(key in KNOWN_PUBLIC_SECRETS for key in settings.secret_key):
            raise ValueError("SECRET_KEY: is a published sandbox key (accepted only with SANDBOX=1)")
    _check_pinned(settings.tenants, settings.sandbox, env.get("TENANTS_FILE") or None)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return load_settings()
