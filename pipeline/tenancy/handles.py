"""Per-process handles the pipeline needs: settings, Redis, ledger, clients, limiters.

Built lazily and re-built after a fork (Celery's prefork children must not share sockets
or requests sessions with their parent).

Thread-safe: the Rokt stage runs on a threads pool (worker-rokt), so the runtime, its caches
and what they hand out are shared by every thread of the process. One lock guards creation
(each cache entry is built once and then read without it); each client's one requests session is
shared by every thread, set up once and only read after (pipeline/clients/http.py, new_session),
the Redis client's pool is thread-safe, and the task's log context is a contextvar, per thread.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property

import redis

from pipeline.clients.rokt import RoktClient
from pipeline.clients.sfmc import SfmcClient
from pipeline.infra.crypto import SecretBox
from pipeline.infra.redis_clients import redis_client
from pipeline.settings import Settings, Tenant, get_settings, is_amqp
from pipeline.stores.clicks import ClickCounter
from pipeline.stores.history import HistoryStore
from pipeline.stores.ledger import Ledger
from pipeline.stores.outbox import Outbox
from pipeline.stores.performance import ReportingDays
from pipeline.stores.ratelimit import RateLimiter
from pipeline.tenancy.tenants import TenantRegistry, UnknownTenant
from pipeline.vocabulary import OutboxKind

__all__ = ["Runtime", "UnknownTenant", "get_runtime"]


# Native delayed delivery on RabbitMQ counts whole seconds (pipeline/infra/broker.py rounds a countdown
# up): a ticket holder sent back `budget` before its slot with a budget under 1 s would come back
# after it and lose its place, again and again (a review's model: 3.9 calls/s at a 47.8/s limit).
# With 1 s it comes back within the second before its slot, and sleeps the rest in its thread.
AMQP_MIN_SLEEP_BUDGET = 1.0


def rokt_sleep_budget(settings: Settings) -> float:
    """Seconds a Rokt call may sleep for its slot: ROKT_LIMIT_SLEEP_MS, at least 1 s on RabbitMQ."""
    budget = settings.rokt_limit_sleep_ms / 1000
    return max(budget, AMQP_MIN_SLEEP_BUDGET) if is_amqp(settings.broker) else budget


class Runtime:
    def __init__(self, settings: Settings, r: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = r if r is not None else redis_client(settings.redis_url)
        # built per tenant and rebuilt when its settings change (App Settings, no restart)
        self._rokt: dict[str, tuple[Tenant, RoktClient]] = {}
        self._sfmc: dict[str, tuple[Tenant, SfmcClient]] = {}
        self._limiters: dict[tuple[str, str], tuple[float, RateLimiter]] = {}
        self._outboxes: dict[tuple[str, str], Outbox] = {}
        self._lock = threading.RLock()  # creation only; a built entry is read without it
        self._history: HistoryStore | None = None

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(
            self.redis,
            self.settings.execution_ttl_days,
            day_of=self.reporting_days.today,
            performance_days=self.settings.performance_days,
        )

    @cached_property
    def clicks(self) -> ClickCounter:
        """Counts followed tracked links (pipeline/stores/clicks.py)."""
        return ClickCounter(self.redis)

    @cached_property
    def reporting_days(self) -> ReportingDays:
        """Today in each tenant's reporting time zone: the day its figures count in."""

        def zone_of(name: str) -> str:
            return self.tenant(name).reporting_time_zone

        return ReportingDays(zone_of)

    @property
    def history(self) -> HistoryStore:
        """The history store, its schema brought up to date once per process. Built under the
        lock: worker-rokt's threads may all ask at once, and Alembic's migration is not
        thread-safe (since Python 3.12 `cached_property` no longer locks: two threads migrated
        at once and one failed with KeyError('config'))."""
        store = self._history
        if store is None:
            with self._lock:
                if self._history is None:
                    built = HistoryStore(self.settings.history_url)
                    built.migrate()
                    self._history = built
                store = self._history
        return store

    @cached_property
    def registry(self) -> TenantRegistry:
        return TenantRegistry(self.redis, self.settings)

    @cached_property
    def token_box(self) -> SecretBox | None:
        """Seals the vendor access tokens cached in Redis: the tenant secrets' SECRET_KEY; None
        without one (pinned TENANTS_FILE tenants only: pipeline/clients/tokens.py)."""
        return self.registry.box if self.settings.secret_key else None

    def tenant(self, name: str) -> Tenant:
        tenant = self.registry.get(name)
        if tenant is None:
            raise UnknownTenant(name)
        return tenant

    def rokt(self, name: str) -> RoktClient:
        """The tenant's Rokt client. Its gate is the limiter's `gate`: in create_rokt_event a slot
        further away than ROKT_LIMIT_SLEEP_MS raises RateLimited with a ticket (the task is
        rescheduled to it), it is not slept."""
        tenant = self.tenant(name)
        cached = self._rokt.get(name)
        if cached is None or cached[0] != tenant:
            with self._lock:
                cached = self._rokt.get(name)
                if cached is None or cached[0] != tenant:
                    limiter = self.limiter(name, "rokt")
                    budget = rokt_sleep_budget(self.settings)

                    def gate() -> None:
                        limiter.gate(budget)

                    client = RoktClient(
                        tenant, self.redis, self.settings.http_timeout, gate=gate, box=self.token_box
                    )
                    cached = self._rokt[name] = (tenant, client)
        return cached[1]

    def sfmc(self, name: str) -> SfmcClient:
        tenant = self.tenant(name)
        cached = self._sfmc.get(name)
        if cached is None or cached[0] != tenant:
            with self._lock:
                cached = self._sfmc.get(name)
                if cached is None or cached[0] != tenant:
                    client = SfmcClient(
                        tenant,
                        self.redis,
                        self.settings.http_timeout,
                        gate=self.limiter(name, "sfmc").acquire,
                        credentials=self.registry,
                        app=self.settings,
                        box=self.token_box,
                    )
                    cached = self._sfmc[name] = (tenant, client)
        return cached[1]

    def limiter(self, name: str, vendor: str) -> RateLimiter:
        """The tenant's global limiter for one vendor account (`rokt` or `sfmc`)."""
        tenant = self.tenant(name)
        rate = tenant.rokt_rate_limit if vendor == "rokt" else tenant.sfmc_rate_limit
        cached = self._limiters.get((name, vendor))
        if cached is None or cached[0] != rate:
            with self._lock:
                cached = self._limiters.get((name, vendor))
                if cached is None or cached[0] != rate:
                    jitter = self.settings.rate_limit_jitter_ms / 1000
                    limiter = RateLimiter(self.redis, name, vendor, rate, jitter=jitter)
                    cached = self._limiters[(name, vendor)] = (rate, limiter)
        return cached[1]

    def outbox(self, name: str, kind: OutboxKind) -> Outbox:
        box = self._outboxes.get((name, kind))
        if box is None:
            with self._lock:
                box = self._outboxes.get((name, kind))
                if box is None:
                    idle_ms = int(self.settings.outbox_claim_idle_seconds * 1000)
                    box = self._outboxes[(name, kind)] = Outbox(self.redis, name, kind, idle_ms)
        return box


_runtime: tuple[int, Runtime] | None = None
_runtime_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _runtime_lock
    _runtime_lock = threading.Lock()  # a fork while another thread held it must not deadlock


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_runtime() -> Runtime:
    """This process's runtime: one per process, whichever thread asks first builds it."""
    current = _runtime
    if current is None or current[0] != os.getpid():
        with _runtime_lock:
            current = _runtime
            if current is None or current[0] != os.getpid():
                current = _set_runtime((os.getpid(), Runtime(get_settings())))
    return current[1]


def _set_runtime(value: tuple[int, Runtime]) -> tuple[int, Runtime]:
    global _runtime
    _runtime = value
    return value
