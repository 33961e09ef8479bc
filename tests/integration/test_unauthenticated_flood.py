"""No unauthenticated write without a bound: every route of the web app, listed from Flask's URL
map (a new route is walked without anyone adding it here), gets FLOOD_REQUESTS requests without
credentials, every method its rule accepts, its URL variables filled with a real tenant and random
values, from one client address, against a real redis-server (maxmemory, noeviction, as
production runs it). The number of Redis keys and `used_memory` must stay within the bounds below.

Routes run in a process of their own, one at a time (FLOOD_PROCESSES, default 1: `make test` runs
two pytest processes on a 2-core machine, and a flood on both cores starved the other one's
timing-sensitive tests); FLOOD_REQUESTS (environment, default 10,000) sets the requests per route.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
import redis
import responses
from werkzeug.test import EnvironBuilder

from pipeline.sandbox import processes
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from tests.unit.conftest import ENV
from tests.unit.samples import SUBSCRIBE

pytestmark = pytest.mark.integration

FLOOD_REQUESTS = int(os.environ.get("FLOOD_REQUESTS", "10000"))
FLOOD_PROCESSES = int(os.environ.get("FLOOD_PROCESSES", "1"))
ADDRESS = "198.51.100.7"
BASE = "https://rsf.example"
APP_ENV = {
    **ENV,
    "PUBLIC_BASE_URL": BASE,
    "SECRET_KEY": "flood-secret-key-for-sealing-0123456789abcdef",
    "SFMC_APP_CLIENT_ID": "app-client",
    "SFMC_APP_CLIENT_SECRET": "app-client-secret-never-shown-0001",
    "SFMC_APP_AUTH_BASE_URL": "https://app-auth.sfmc.test",
    "ROKT_WEBHOOK_SECRET": "flood-webhook-secret-0123456789abcdefghij",
    "LOG_LEVEL": "ERROR",  # 340,000 refusals would be as many log lines
}
# What unauthenticated requests may leave, whatever their number: the two sign-in sets
# (keys.login_states, login_states_by_address); per route that counts failed authentications
# (execute, webhook) one window (a hash, a field per address) for the real tenant and one for every
# unknown tenant together, the real tenant's failure counters (one hash), and the deployment's salt
# that names addresses: 8. Room for 2 more; a key per
# request, per random tenant name or per state (as `GET /app/login` left before) breaks it at once.
MAX_KEYS = 10
# The sign-in sets at this address's cap (SIGNIN_STATES_PER_ADDRESS, 30 members of ~50 bytes),
# the windows and counters: a few KB; used_memory also moves with Redis's client buffers and the
# allocator. Leftovers of one key a request break it: a sign-in state key was ~300 bytes
# (2,000 requests left 1,336 keys and 408 KB before the ceiling).
MAX_MEMORY_GROWTH = 256 * 1024


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on a redis-server of its own: the session stack is neither needed nor touched."""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    run_dir = tmp_path_factory.mktemp("flood")
    child, url = processes.start_redis(run_dir, extra_options=("--maxmemory", "512mb"))
    try:
        yield url
    finally:
        child.stop()


def _value(name: str, i: int) -> str:
    """A URL variable: every other request a real one, else a random one."""
    real = {"tenant": "default", "filename": "index.html", "path_token": "x" * 43}.get(name, "tpl-1")
    return real if i % 2 == 0 else secrets.token_urlsafe(12)


BODIES = [
    (b"", None),
    (b"{}", "application/json"),
    (b"eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", "application/jwt"),
    (json.dumps(SUBSCRIBE).encode(), "application/json"),
    (b"name=x&csrf_token=forged", "application/x-www-form-urlencoded"),
]


def flood_route(url: str, rule_index: int, requests: int) -> tuple[str, float, dict[int, int]]:
    """`requests` requests without credentials to one rule of the app's URL map (in a process of
    its own); the rule, the seconds taken and the answers by status."""
    logging.disable(logging.CRITICAL)
    r = redis.Redis.from_url(url, decode_responses=True)
    enqueued: list[str] = []
    app = create_app(Runtime(load_settings(APP_ENV), r), enqueue_webhook=lambda _t, e: enqueued.append(e))
    rule = list(app.url_map.iter_rules())[rule_index]
    methods = sorted(rule.methods or ())
    statuses: Counter[int] = Counter()

    def start_response(status: str, _headers: list, _exc: object = None) -> None:
        statuses[int(status.split(" ", 1)[0])] += 1

    started = time.perf_counter()
    with responses.RequestsMock(assert_all_requests_are_fired=False):  # no vendor is ever called
        for i in range(requests):
            path = rule.build({name: _value(name, i) for name in rule.arguments}, append_unknown=False)[1]
            method = methods[i % len(methods)]
            body, content_type = BODIES[i % len(BODIES)] if method not in ("GET", "HEAD") else (b"", None)
            environ = EnvironBuilder(
                path=path,
                base_url=BASE,
                method=method,
                data=body,
                content_type=content_type,
                environ_base={"REMOTE_ADDR": ADDRESS},
            ).get_environ()
            for _chunk in app.wsgi_app(environ, start_response):
                pass
    assert not enqueued, f"{rule.rule}: enqueued without credentials"
    return rule.rule, time.perf_counter() - started, dict(statuses)


def test_every_route_flooded_without_credentials_stays_within_the_bounds(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    load_settings(APP_ENV)  # the settings are valid (else each process fails alike)
    app = create_app(Runtime(load_settings(APP_ENV), r))
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 20  # the whole app, not one blueprint
    keys_before, memory_before = r.dbsize(), r.info("memory")["used_memory"]

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=FLOOD_PROCESSES, mp_context=get_context("spawn")) as pool:
        results = list(
            pool.map(flood_route, [redis_url] * len(rules), range(len(rules)), [FLOOD_REQUESTS] * len(rules))
        )
    elapsed = time.perf_counter() - started

    keys_after, memory_after = r.dbsize(), r.info("memory")["used_memory"]
    report = {
        "requestsPerRoute": FLOOD_REQUESTS,
        "routes": len(rules),
        "seconds": round(elapsed, 1),
        "keys": [keys_before, keys_after],
        "usedMemory": [memory_before, memory_after],
        "keysLeft": sorted(r.scan_iter(count=1000)),
        "perRoute": {rule: {"seconds": round(s, 1), "statuses": st} for rule, s, st in results},
    }
    Path(os.environ.get("FLOOD_REPORT", "/dev/null")).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    for rule, _seconds, statuses in results:
        assert sum(statuses.values()) == FLOOD_REQUESTS, rule
        assert not [s for s in statuses if s >= 500], (rule, statuses)
    assert keys_after - keys_before <= MAX_KEYS, report["keysLeft"]
    assert memory_after - memory_before <= MAX_MEMORY_GROWTH, report
