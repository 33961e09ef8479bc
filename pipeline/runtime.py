"""Per-process handles the pipeline needs: settings, Redis, ledger, clients, limiters.

Built lazily and re-built after a fork (Celery's prefork children must not share sockets
or requests sessions with their parent).
"""

from __future__ import annotations

import os
from functools import cached_property

import redis

from pipeline.clients.rokt import RoktClient
from pipeline.clients.sfmc import SfmcClient
from pipeline.ledger import Ledger
from pipeline.outbox import Outbox
from pipeline.ratelimit import RateLimiter
from pipeline.settings import Settings, Tenant, get_settings
from pipeline.store import redis_client
from pipeline.tenants import TenantRegistry, UnknownTenant
from pipeline.vocabulary import OutboxKind

__all__ = ["Runtime", "UnknownTenant", "get_runtime"]


class Runtime:
    def __init__(self, settings: Settings, r: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = r if r is not None else redis_client(settings.redis_url)
        # built per tenant and rebuilt when its settings change (App Settings, no restart)
        self._rokt: dict[str, tuple[Tenant, RoktClient]] = {}
        self._sfmc: dict[str, tuple[Tenant, SfmcClient]] = {}
        self._limiters: dict[tuple[str, str], tuple[float, RateLimiter]] = {}
        self._outboxes: dict[tuple[str, str], Outbox] = {}

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.redis, self.settings.execution_ttl_days)

    @cached_property
    def registry(self) -> TenantRegistry:
        return TenantRegistry(self.redis, self.settings)

    def tenant(self, name: str) -> Tenant:
        tenant = self.registry.get(name)
        if tenant is None:
            raise UnknownTenant(name)
        return tenant

    def rokt(self, name: str) -> RoktClient:
        tenant = self.tenant(name)
        cached = self._rokt.get(name)
        if cached is None or cached[0] != tenant:
            client = RoktClient(
                tenant, self.redis, self.settings.http_timeout, gate=self.limiter(name, "rokt").acquire
            )
            cached = self._rokt[name] = (tenant, client)
        return cached[1]

    def sfmc(self, name: str) -> SfmcClient:
        tenant = self.tenant(name)
        cached = self._sfmc.get(name)
        if cached is None or cached[0] != tenant:
            client = SfmcClient(
                tenant,
                self.redis,
                self.settings.http_timeout,
                gate=self.limiter(name, "sfmc").acquire,
                credentials=self.registry,
                app=self.settings,
            )
            cached = self._sfmc[name] = (tenant, client)
        return cached[1]

    def limiter(self, name: str, vendor: str) -> RateLimiter:
        """The tenant's global limiter for one vendor account (`rokt` or `sfmc`)."""
        tenant = self.tenant(name)
        rate = tenant.rokt_rate_limit if vendor == "rokt" else tenant.sfmc_rate_limit
        cached = self._limiters.get((name, vendor))
        if cached is None or cached[0] != rate:
            cached = self._limiters[(name, vendor)] = (rate, RateLimiter(self.redis, name, vendor, rate))
        return cached[1]

    def outbox(self, name: str, kind: OutboxKind) -> Outbox:
        if (name, kind) not in self._outboxes:
            idle_ms = int(self.settings.outbox_claim_idle_seconds * 1000)
            self._outboxes[(name, kind)] = Outbox(self.redis, name, kind, idle_ms)
        return self._outboxes[(name, kind)]


_runtime: tuple[int, Runtime] | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime[0] != os.getpid():
        _runtime = (os.getpid(), Runtime(get_settings()))
    return _runtime[1]
