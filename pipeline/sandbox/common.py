"""What both simulators share: faults, request counting, 1-second windows, a threaded server."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server


@dataclass
class Faults:
    error_rate: float = 0.0  # share of API calls answered 500
    latency_ms: float = 0.0  # added to every API call
    rate_limit: float = 0.0  # API calls per second per account; 0 = unlimited
    token_lifetime: float = 0.0  # seconds; 0 = the simulator's default
    land_delay_ms: float = 300.0  # Rokt: 202 now, the calendar entry after this delay
    fail_next: float = 0  # the next N API calls are answered 500 (deterministic faults)
    # Rokt: the next N creates are applied, then answered 500 (the answer lost on its way back)
    lose_next_answers: float = 0
    # Rokt: 1 = a create whose eventId exists is refused (400 DuplicateEventId), 0 = accepted
    # again without a new event (docs/vendors/rokt-calendar-api.md §7: which one Rokt does is not documented)
    reject_duplicate_events: float = 0

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise KeyError(name)
            setattr(self, name, float(value))


class SlidingWindow:
    """Admits at most `limit` events in any trailing second (what a strict vendor enforces)."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def admit(self, limit: float, now: float) -> bool:
        while self.times and self.times[0] <= now - 1.0:
            self.times.popleft()
        if limit and len(self.times) >= limit:
            return False
        self.times.append(now)
        return True


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass
class Counters:
    token_requests: int = 0
    throttled: int = 0
    injected_errors: int = 0
    requests_per_route: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["requests_per_route"] = dict(self.requests_per_route)
        return data


class Simulator:
    """Base of a simulator: a lock over its state, faults, counters and the control routes."""

    name = "sandbox"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self.counters = Counters()
        self.windows: dict[str, SlidingWindow] = {}
        self.app = Flask(f"{self.name}-sandbox")
        self.app.add_url_rule("/__sandbox__/state", "state", self._state_route, methods=["GET"])
        self.app.add_url_rule("/__sandbox__/faults", "faults", self._faults_route, methods=["POST"])
        self.app.add_url_rule("/__sandbox__/reset", "reset", self._reset_route, methods=["POST"])
        self.app.before_request(self._count)

    def _count(self) -> None:
        if request.url_rule is not None and not request.path.startswith("/__sandbox__"):
            with self.lock:
                self.counters.requests_per_route[f"{request.method} {request.url_rule.rule}"] += 1

    def inject(self) -> bool:
        """Apply latency and maybe an injected 500; True when the call must fail."""
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        with self.lock:
            forced = self.faults.fail_next > 0
            if forced:
                self.faults.fail_next -= 1
            if forced or (self.faults.error_rate and random.random() < self.faults.error_rate):
                self.counters.injected_errors += 1
                return True
        return False

    def admit(self, account: str) -> bool:
        with self.lock:
            window = self.windows.setdefault(account, SlidingWindow())
            if window.admit(self.faults.rate_limit, time.monotonic()):
                return True
            self.counters.throttled += 1
            return False

    def state(self) -> dict[str, Any]:
        """What the simulator holds; each simulator adds its own."""
        return {}

    def reset(self) -> None:
        self.counters = Counters()
        self.windows = {}

    def _state_route(self):
        with self.lock:
            return jsonify({**self.state(), **self.counters.as_dict(), "faults": asdict(self.faults)})

    def _faults_route(self):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="invalid_body", message="JSON object of fault settings"), 400
        try:
            with self.lock:
                self.faults.update(body)
        except (KeyError, TypeError, ValueError) as exc:
            return jsonify(error="invalid_fault", message=f"unknown or invalid fault: {exc}"), 400
        return jsonify(asdict(self.faults))

    def _reset_route(self):
        with self.lock:
            self.reset()
            self.faults = Faults()
        return jsonify(ok=True)


class ServerThread:
    """Serve a WSGI app on loopback in a daemon thread (port 0 picks a free port)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
