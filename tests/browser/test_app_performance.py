"""The app's Performance page in a real browser, framed from another site as Marketing Cloud
frames it, signed in as an admin through the SFMC simulator (as tests/browser/test_app_settings.py).

The figures are written into Redis as the counting scripts leave them (`keys.performance_day`,
`<scope>|<figure>[:<reason>]`), 30 days of them for two activities: real executions count only
today (the page's ranges, presets and empty states need many days), need workers and the
simulators' confirmations and clicks, and the whole pipeline's counting is the integration
test's (tests/integration). What the page shows is then checked against what its data route
answers, which is the API's report (`pipeline.web.performance`): every table, the bars' values,
the CSV download. axe-core checks each screen. SAVE_SCREENSHOTS=1 rewrites docs/app/performance*.png.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, send_file
from playwright.sync_api import expect

from pipeline.infra import keys
from pipeline.sandbox import SANDBOX_EID
from pipeline.sandbox.common import ServerThread
from pipeline.sandbox.hosts import HOSTS
from pipeline.sandbox.processes import free_port
from pipeline.sandbox.stack import Stack
from pipeline.stores import performance
from pipeline.tenancy.tenants import tenant_name_for_eid
from tests.browser.a11y import violations
from tests.browser.conftest import VIEWPORT, frame_screenshot

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "app"
WELCOME, WINBACK = "3f9c1a2e-welcome-journey-send", "8d41b7c0-winback-journey-send"
DAYS = 30
SUBSCRIBER_SERIES = ("subscribed", "unsubscribed", "net")
EVENT_SERIES = ("in_calendars", "updated", "removed")


def seed(r: Any, tenant: str, today: date) -> None:
    """DAYS days of figures: each activity's, and the tenant's as their sums plus subscriptions."""
    for back in range(DAYS):
        day = today - timedelta(days=back)
        fields: dict[str, int] = {}
        for activity, size in ((WELCOME, 40), (WINBACK, 15)):
            entered = size + (back * 7) % 23
            created = entered - 2 - back % 5
            figures = {
                "entered": entered,
                "created": created,
                "in_calendars": created - 1 - back % 3,
                "clickers": created // 4,
                "clicks": created // 3,
                "updated": back % 4,
                "removed": back % 3,
                "not_sent:no_subscription": 1 + back % 4,
                "not_sent:missing_field": 1 if back % 5 == 0 else 0,
            }
            for figure, n in figures.items():
                fields[f"a:{activity}|{figure}"] = n
                fields[f"*|{figure}"] = fields.get(f"*|{figure}", 0) + n
        fields["*|subscribed"] = 6 + (back * 5) % 11
        fields["*|unsubscribed"] = 1 + (back * 3) % 7
        fields["*|failed:create_event:client_error"] = 1 if back % 6 == 0 else 0
        r.hset(keys.performance_day(tenant, day.isoformat()), mapping={k: str(v) for k, v in fields.items()})


class PerfEnv:
    def __init__(self, stack: Stack, host_url: str, context: Any) -> None:
        self.stack = stack
        self.host_url = host_url
        self.context = context
        self.tenant = tenant_name_for_eid(SANDBOX_EID)
        self.today = date.fromisoformat(performance.local_day("UTC"))

    def open(self, page: Any, path: str = "/app/login") -> Any:
        page.goto(f"{self.host_url}/?src={self.stack.web_url}{path}")
        return page.frame_locator("#app")


@pytest.fixture(scope="module")
def perf_env(chromium: Path, browser, tmp_path_factory) -> Iterator[PerfEnv]:
    """The stack without workers (the page only reads), Marketing Cloud's stand-in on another site."""
    host = Flask(__name__)
    host.add_url_rule("/", "host", lambda: send_file(HOSTS / "mc.html"))
    host_port = free_port()
    host_url = f"http://localhost:{host_port}"
    server = ServerThread(host, "127.0.0.1", host_port).start()
    try:
        with Stack(
            tmp_path_factory.mktemp("browser-perf-stack"),
            {},
            web="thread",
            env={"MC_ALLOWED_ORIGINS": host_url},
            worker_name="bwperf",
        ) as stack:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=True)
            try:
                env = PerfEnv(stack, host_url, context)
                seed(stack.runtime.redis, env.tenant, env.today)
                yield env
            finally:
                context.close()
    finally:
        server.stop()


@pytest.fixture
def perf_page(perf_env: PerfEnv) -> Iterator[Any]:
    """A tab of the module's browser; fails on a script error or anything the CSP refused."""
    page = perf_env.context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"errors in the page: {errors}"


def app_frame(page: Any) -> Any:
    return page.locator("#app").element_handle().content_frame()


def screenshot(page: Any, name: str) -> None:
    frame_screenshot(page, "app", app_frame(page), SCREENSHOTS / f"{name}.png")


def api(page: Any, query: str) -> dict[str, Any]:
    """The page's data route, fetched by the page itself (its session): the API's report."""
    return app_frame(page).evaluate(
        """q => fetch('/app/performance/data?' + q,
                      {credentials: 'same-origin', headers: {Accept: 'application/json'}})
                 .then(r => r.json())""",
        query,
    )


def table(page: Any, table_id: str) -> list[list[str]]:
    """The body and foot rows of a table as the browser shows them."""
    return app_frame(page).evaluate(
        """id => Array.from(document.querySelectorAll('#' + id + ' tbody tr, #' + id + ' tfoot tr'))
                 .map(tr => Array.from(tr.cells).map(c => c.textContent.trim()))""",
        table_id,
    )


def bars(page: Any, chart_id: str, figure: str) -> list[int]:
    return app_frame(page).evaluate(
        """([id, f]) => Array.from(document.querySelectorAll('#' + id + ' [data-figure="' + f + '"]'))
                 .map(n => Number(n.dataset.value))""",
        [chart_id, figure],
    )


def query_of(found: dict[str, Any], activity: str = "") -> str:
    return f"from={found['from']}&to={found['to']}" + (f"&activity={activity}" if activity else "")


def assert_day_tables_match(page: Any, found: dict[str, Any]) -> None:
    """Each day table is the report's rows and totals; each chart's bars are the same figures."""
    days = found["days"]
    for table_id, chart_id, series in (
        ("table-subscribers", "chart-subscribers", SUBSCRIBER_SERIES),
        ("table-events", "chart-events", EVENT_SERIES),
    ):
        expected = [[d["date"], *(str(d[s]) for s in series)] for d in days]
        expected.append(["Total", *(str(found["totals"][s]) for s in series)])
        assert table(page, table_id) == expected
        for s in series:
            assert bars(page, chart_id, s) == [d[s] for d in days]


def funnel_cells(totals: dict[str, Any]) -> list[str]:
    return [str(totals[k]) for k in ("entered", "created", "in_calendars", "clickers")]


@pytest.fixture(scope="module")
def signed_in(perf_env: PerfEnv) -> str:
    page = perf_env.context.new_page()
    try:
        frame = perf_env.open(page)
        expect(frame.locator("#settings h2")).to_have_text("App Settings", timeout=15_000)
    finally:
        page.close()
    return perf_env.tenant


def test_the_tab_opens_the_page_with_the_last_7_days(perf_env, signed_in, perf_page):
    frame = perf_env.open(perf_page, "/app/settings")
    tab = frame.locator('nav.tabs a:has-text("Performance")')
    expect(frame.locator('nav.tabs a[aria-current="page"]')).to_have_text("App Settings")
    tab.focus()
    perf_page.keyboard.press("Enter")  # a link: the keyboard opens it
    expect(frame.locator("h1")).to_have_text("Performance")
    expect(frame.locator('nav.tabs a[aria-current="page"]')).to_have_text("Performance")
    first = (perf_env.today - timedelta(days=6)).isoformat()
    expect(frame.locator("#q-from")).to_have_value(first)
    expect(frame.locator("#q-to")).to_have_value(perf_env.today.isoformat())
    expect(frame.locator('.presets a[aria-current="true"]')).to_have_text("Last 7 days")
    found = api(perf_page, f"from={first}&to={perf_env.today}")
    assert len(found["days"]) == 7
    assert_day_tables_match(perf_page, found)
    assert table(perf_page, "table-funnel-all")[0][1] == str(found["totals"]["entered"])
    assert violations(app_frame(perf_page)) == []


def test_presets_filter_and_dates_change_what_is_shown(perf_env, signed_in, perf_page):
    frame = perf_env.open(perf_page, "/app/performance")
    frame.locator('.presets a:has-text("Last 30 days")').click()
    expect(frame.locator('.presets a[aria-current="true"]')).to_have_text("Last 30 days")
    start = perf_env.today - timedelta(days=29)
    expect(frame.locator("#q-from")).to_have_value(start.isoformat())
    found = api(perf_page, f"from={start}&to={perf_env.today}")
    assert_day_tables_match(perf_page, found)
    assert [row[1] for row in table(perf_page, "table-funnel-all")] == funnel_cells(found["totals"])
    # each activity's funnel, most entered first, as the API answers for that activity
    for i, activity in enumerate((WELCOME, WINBACK)):
        one = api(perf_page, query_of(found, activity))
        assert [row[1] for row in table(perf_page, f"table-funnel-{i}")] == funnel_cells(one["totals"])
    reasons = {row[0]: int(row[2]) for row in table(perf_page, "table-reasons")}
    assert reasons["No calendar subscription"] == next(
        r["count"] for r in found["notSentReasons"] if r["reason"] == "no_subscription"
    )
    assert reasons["Rokt refused the event"] == found["failedReasons"][0]["count"]
    assert violations(app_frame(perf_page)) == []
    screenshot(perf_page, "performance")

    # the filter: one activity (its funnel, its events; subscriptions are the account's)
    frame.locator("#q-activity").select_option(WINBACK)
    frame.locator("#show").click()
    expect(frame.locator("#shown")).to_contain_text(WINBACK)
    one = api(perf_page, query_of(found, WINBACK))
    assert [row[1] for row in table(perf_page, "table-funnel-0")] == funnel_cells(one["totals"])
    assert table(perf_page, "table-events")[-1] == ["Total", *(str(one["totals"][s]) for s in EVENT_SERIES)]
    expect(frame.locator("#table-subscribers")).to_have_count(0)
    expect(frame.locator("#subscribers-note")).to_be_visible()
    assert violations(app_frame(perf_page)) == []
    screenshot(perf_page, "performance-activity")

    # from/to typed in: a 10-day window, the filter kept
    first, last = perf_env.today - timedelta(days=14), perf_env.today - timedelta(days=5)
    frame.locator("#q-from").fill(first.isoformat())
    frame.locator("#q-to").fill(last.isoformat())
    frame.locator("#show").click()
    expect(frame.locator("#shown")).to_contain_text(f"{first} to {last}")
    ten = api(perf_page, f"from={first}&to={last}&activity={WINBACK}")
    assert len(ten["days"]) == 10
    assert table(perf_page, "table-events")[:-1] == [
        [d["date"], *(str(d[s]) for s in EVENT_SERIES)] for d in ten["days"]
    ]

    # the CSV of that range and filter: what the data route (the API's report) says
    with perf_page.expect_download() as download:
        frame.locator("#range a.csv").click()
    saved = download.value
    assert saved.suggested_filename == f"rokt-calendar-performance-{first}-{last}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(saved.path()).read_text())))
    assert [r["date"] for r in rows] == [*(d["date"] for d in ten["days"]), "total"]
    assert [int(r["entered"]) for r in rows] == [
        *(d["entered"] for d in ten["days"]),
        ten["totals"]["entered"],
    ]
    assert [int(r["clickers"]) for r in rows[:-1]] == [d["clickers"] for d in ten["days"]]


def test_an_empty_range_and_a_bad_range_say_so(perf_env, signed_in, perf_page):
    frame = perf_env.open(perf_page, "/app/performance")
    first, last = perf_env.today - timedelta(days=60), perf_env.today - timedelta(days=45)
    frame.locator("#q-from").fill(first.isoformat())
    frame.locator("#q-to").fill(last.isoformat())
    frame.locator("#show").click()
    expect(frame.locator("#empty")).to_have_text(
        "No events in this range. Choose a longer range or another activity."
    )
    expect(frame.locator("#no-reasons")).to_be_visible()
    assert violations(app_frame(perf_page)) == []
    screenshot(perf_page, "performance-empty")

    # to before from: the page says which field, and the input is marked
    frame.locator("#q-from").fill(last.isoformat())
    frame.locator("#q-to").fill(first.isoformat())
    frame.locator("#show").click()
    expect(frame.locator("#query-errors")).to_contain_text("To: must not be before from")
    expect(frame.locator("#q-to")).to_have_attribute("aria-invalid", "true")
    assert violations(app_frame(perf_page)) == []
    screenshot(perf_page, "performance-error")
