"""Clicks on one event's links within CLICK_REPEAT_SECONDS count once: the repeats are
redirected all the same, but write nothing (no counter, no status row, no history entry), so
one holder of a link calling it in a loop cannot make us write more than once a window."""

from dataclasses import replace

from pipeline.infra import keys
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import OutboxKind
from pipeline.web import create_app
from tests.unit.web.test_links import SALE, T, send

WINDOW = 10


def test_repeats_within_the_window_are_redirected_but_write_nothing(settings, fake_redis):
    runtime = Runtime(replace(settings, click_repeat_seconds=WINDOW), fake_redis)
    ex, (sale, app) = send(runtime)
    client = create_app(runtime).test_client()
    status_box = keys.outbox(T, OutboxKind.STATUS_ROWS)
    first = client.get(sale)
    assert first.status_code == 302 and first.headers["Location"] == SALE
    written = (runtime.redis.xlen(status_box), runtime.redis.xlen(keys.outbox(T, OutboxKind.HISTORY)))
    for path in (sale, app, sale) * 20:
        assert client.get(path).status_code == 302
    assert int(runtime.redis.hget(keys.execution(T, ex), "clicks")) == 1
    after = (runtime.redis.xlen(status_box), runtime.redis.xlen(keys.outbox(T, OutboxKind.HISTORY)))
    assert after == written
    day = runtime.redis.hgetall(keys.performance_day(T, runtime.reporting_days.today(T)))
    assert day["*|clicks"] == "1" and day["*|clickers"] == "1"
    # past the window, the next click counts again
    last = float(runtime.redis.hget(keys.execution(T, ex), "lastClickAt"))
    runtime.redis.hset(keys.execution(T, ex), "lastClickAt", last - WINDOW)
    assert client.get(app).status_code == 302
    assert int(runtime.redis.hget(keys.execution(T, ex), "clicks")) == 2
