"""Tracked links on a real redis-server: the click script's Lua (cjson, HSETNX, the day's figures)
as Redis runs it, under concurrent clicks: within the repeat window one click counts, whatever
the concurrency; without a window every click counts once, the first once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.infra import keys
from pipeline.infra.redis_clients import redis_client
from pipeline.sandbox import processes
from pipeline.settings import load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from tests.unit.conftest import ENV
from tests.unit.web.test_links import APP, SALE, T, send

pytestmark = pytest.mark.integration
CLICKS = 200


@pytest.fixture(autouse=True)
def fresh_simulators() -> None:
    """This module runs on a redis-server of its own: the session stack is neither needed nor touched."""


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    child, url = processes.start_redis(tmp_path_factory.mktemp("links"))
    try:
        yield url
    finally:
        child.stop()


def test_concurrent_clicks_count_exactly_on_real_redis(redis_url, tmp_path):
    env = {**ENV, "REDIS_URL": redis_url, "HISTORY_URL": f"sqlite:///{tmp_path}/h.db"}
    rt = Runtime(load_settings({**env, "CLICK_REPEAT_SECONDS": "10"}), redis_client(redis_url))
    ex, (sale, app) = send(rt)
    web = create_app(rt)  # one app, a client per click (building apps in threads trips CPython 3.11's ast)
    client = web.test_client()

    def click(n: int) -> str:
        return web.test_client().get(sale if n % 2 else app).headers.get("Location", "")

    rows_before = rt.redis.xlen(keys.outbox(T, "status"))
    with ThreadPoolExecutor(16) as pool:  # a burst: one click of the window counts, one row
        targets = list(pool.map(click, range(CLICKS)))
    assert sorted(set(targets)) == sorted({SALE, APP})
    assert rt.redis.hget(keys.execution(T, ex), "clicks") == "1"
    assert rt.redis.xlen(keys.outbox(T, "status")) == rows_before + 1
    web = create_app(Runtime(load_settings({**env, "CLICK_REPEAT_SECONDS": "0"}), rt.redis))  # every click
    with ThreadPoolExecutor(16) as pool:
        targets = list(pool.map(click, range(CLICKS)))
    record = rt.redis.hgetall(keys.execution(T, ex))
    assert int(record["clicks"]) == CLICKS + 1 and record["firstClickedAt"]
    day = rt.redis.hgetall(keys.performance_day(T, rt.reporting_days.today(T)))
    assert day["*|clicks"] == str(CLICKS + 1) and day["*|clickers"] == "1" and day["a:act-1|clickers"] == "1"
    assert rt.redis.xlen(keys.outbox(T, "status")) == rows_before + 1 + CLICKS
    tampered = sale[:-1] + ("A" if sale[-1] != "A" else "B")
    assert client.get(tampered).status_code == 404
    assert int(rt.redis.hget(keys.execution(T, ex), "clicks")) == CLICKS + 1
