"""Webhook delivery as Rokt does it (docs/vendors/rokt-calendar-api.md §9.1): POST JSON to the configured
URL, any 2xx acknowledges, anything else is retried until a window closes; optionally some
deliveries are duplicated and all are delayed by a random amount (so they arrive reordered).

One scheduler thread keeps a heap of due deliveries and hands them to a small thread pool.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import requests

from pipeline.web.webhook_auth import SIGNATURE_HEADER, signature_header


@dataclass
class WebhookConfig:
    url: str = ""  # empty: webhooks are recorded as undeliverable, never sent
    secret: str = ""
    mode: str = "header"  # "header": X-Rokt-Signature; "path": secret as last path segment
    duplicate_rate: float = 0.0  # share of webhooks delivered twice
    reorder_ms: float = 0.0  # each delivery waits a random 0..reorder_ms first
    retry_interval_ms: float = 500.0  # Rokt: "a few minutes", scaled down
    retry_window_s: float = 60.0  # Rokt: 30 minutes, scaled down

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise KeyError(name)
            current = getattr(self, name)
            setattr(self, name, type(current)(value))


@dataclass
class SenderCounters:
    webhooks_created: int = 0
    delivery_attempts: int = 0
    webhooks_delivered: int = 0
    duplicate_deliveries: int = 0
    failed_attempts: int = 0
    webhooks_abandoned: int = 0


class WebhookSender:
    def __init__(self, workers: int = 16) -> None:
        self.config = WebhookConfig()
        self.counters = SenderCounters()
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, dict[str, Any], float]] = []
        self._seq = itertools.count()
        self._inflight = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        self._session = requests.Session()
        self._stopped = False
        threading.Thread(target=self._run, daemon=True, name="webhook-scheduler").start()

    def reset(self) -> None:
        with self.lock:
            self._heap.clear()
            self.config = WebhookConfig()
            self.counters = SenderCounters()

    def send(self, envelope: dict[str, Any], delay: float = 0.0) -> None:
        """Queue one webhook (and maybe a duplicate), `delay` seconds from now at the earliest."""
        with self.lock:
            self.counters.webhooks_created += 1
            copies = 2 if random.random() < self.config.duplicate_rate else 1
            self.counters.duplicate_deliveries += copies - 1
            first = time.monotonic() + delay
            for _ in range(copies):
                due = first + random.uniform(0, self.config.reorder_ms / 1000)
                heapq.heappush(self._heap, (due, next(self._seq), envelope, first))
            self._wake.notify()

    def pending(self) -> int:
        with self.lock:
            return len(self._heap) + self._inflight

    def state(self) -> dict[str, Any]:
        with self.lock:
            config = asdict(self.config)
            config.pop("secret")
            return {
                **asdict(self.counters),
                "webhooks_pending": len(self._heap) + self._inflight,
                "webhook": config,
            }

    def stop(self) -> None:
        with self.lock:
            self._stopped = True
            self._wake.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        with self.lock:
            while not self._stopped:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _due, _seq, envelope, first = heapq.heappop(self._heap)
                    self._inflight += 1
                    self._pool.submit(self._deliver, envelope, first)
                    continue
                timeout = (self._heap[0][0] - now) if self._heap else None
                self._wake.wait(timeout)

    def _deliver(self, envelope: dict[str, Any], first: float) -> None:
        with self.lock:
            config = WebhookConfig(**asdict(self.config))
        delivered = False
        if config.url:
            body = json.dumps(envelope).encode()
            url, headers = config.url, {"Content-Type": "application/json"}
            if config.mode == "path":
                url = f"{url.rstrip('/')}/{config.secret}"
            elif config.secret:
                headers[SIGNATURE_HEADER] = signature_header(config.secret, body)
            try:
                response = self._session.post(url, data=body, headers=headers, timeout=10)
                delivered = 200 <= response.status_code < 300
            except requests.RequestException:
                delivered = False
        with self.lock:
            self._inflight -= 1
            self.counters.delivery_attempts += 1 if config.url else 0
            if delivered:
                self.counters.webhooks_delivered += 1
                return
            if config.url:
                self.counters.failed_attempts += 1
            retry_at = time.monotonic() + config.retry_interval_ms / 1000
            if config.url and retry_at - first <= config.retry_window_s:
                heapq.heappush(self._heap, (retry_at, next(self._seq), envelope, first))
                self._wake.notify()
            else:
                self.counters.webhooks_abandoned += 1
