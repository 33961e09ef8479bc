"""The app's Performance page and its data route: the session of App Settings, the API's report
(pipeline/web/performance.py) as JSON and CSV, bad queries answered naming the field, charts
drawn as SVG whose bars carry the figures, each beside its table."""

import csv
import io
import re
import sys
from datetime import date, timedelta

import pytest

from pipeline.infra import keys
from pipeline.settings import load_settings
from pipeline.stores import performance
from pipeline.tenancy.handles import Runtime
from pipeline.web import charts, create_app
from pipeline.web.origins import PAGE_POLICY
from tests.unit.web.test_app_settings import BASE, ENV, Browser

ACTIVITY = "act-1111"
OTHER = "act-2222"


@pytest.fixture
def runtime(fake_redis):
    return Runtime(load_settings(ENV), fake_redis)


@pytest.fixture
def tenant(runtime):
    return runtime.registry.sign_in(eid="1", mid="11", tssd="acme", refresh_token="refresh-x").name


@pytest.fixture
def browser(runtime, fake_redis, tenant):
    return Browser(create_app(runtime), fake_redis, tenant, "1")


def today() -> date:
    return date.fromisoformat(performance.local_day("UTC"))


def put_day(r, tenant: str, day: date, fields: dict[str, int]) -> None:
    """A day's figures as the counting scripts leave them (`<scope>|<figure>[:<reason>]`)."""
    r.hset(keys.performance_day(tenant, day.isoformat()), mapping={k: str(v) for k, v in fields.items()})


@pytest.fixture
def figures(fake_redis, tenant):
    t = today()
    put_day(
        fake_redis,
        tenant,
        t,
        {
            "*|subscribed": 5,
            "*|unsubscribed": 2,
            "*|entered": 10,
            "*|created": 7,
            "*|in_calendars": 6,
            "*|clickers": 2,
            "*|updated": 1,
            "*|removed": 1,
            "*|not_sent:no_subscription": 2,
            "*|failed:create_event:client_error": 1,
            f"a:{ACTIVITY}|entered": 8,
            f"a:{ACTIVITY}|created": 6,
            f"a:{ACTIVITY}|in_calendars": 5,
            f"a:{ACTIVITY}|clickers": 2,
            f"a:{OTHER}|entered": 2,
            f"a:{OTHER}|created": 1,
            f"a:{OTHER}|in_calendars": 1,
        },
    )
    put_day(fake_redis, tenant, t - timedelta(days=1), {"*|subscribed": 1, "*|unsubscribed": 4})
    return t


def cells(html: str, table_id: str) -> list[list[str]]:
    """The rows of table `table_id` as the page renders them (header and data cells)."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table, f"no table {table_id}"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
        for r in rows
    ]


def test_without_a_session_the_page_signs_in_and_the_data_route_answers_401(runtime):
    client = create_app(runtime).test_client()
    page = client.get("/app/performance", base_url=BASE)
    assert page.status_code == 302 and page.headers["Location"].endswith("/app/login")
    data = client.get("/app/performance/data", base_url=BASE, headers={"Accept": "application/json"})
    assert data.status_code == 401 and data.get_json()["code"] == "session_ended"
    assert client.get("/app/performance/data?format=csv", base_url=BASE).status_code in (302, 401)


def test_the_data_route_is_the_apis_report_of_the_sessions_tenant(browser, figures, fake_redis, tenant):
    first = figures - timedelta(days=1)
    answer = browser.get(f"/app/performance/data?from={first}&to={figures}")
    assert answer.status_code == 200
    found = answer.get_json()
    assert found == performance.report(fake_redis, tenant, "UTC", first, figures)
    assert found["totals"]["subscribed"] == 6 and found["totals"]["net"] == 0
    assert answer.headers["Content-Security-Policy"].startswith(PAGE_POLICY)
    one = browser.get(f"/app/performance/data?from={figures}&to={figures}&activity={ACTIVITY}").get_json()
    assert one["totals"]["entered"] == 8 and "subscribed" not in one["totals"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-02-30", "from"),
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-05-02&to=2026-05-01", "to"),
        ("activity=a&template=t", "template"),
        ("format=xlsx", "format"),
        ("colour=red", "colour"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_field(browser, query, field):
    answer = browser.get(f"/app/performance/data?{query}")
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["error"] == "invalid_payload" and field in body["fields"]


def test_a_range_past_what_is_kept_names_from(browser, runtime):
    kept = runtime.settings.performance_days
    old = today() - timedelta(days=kept + 5)
    answer = browser.get(f"/app/performance/data?from={old}&to={old}")
    assert answer.status_code == 400 and "from" in answer.get_json()["fields"]


def test_csv_has_a_row_a_day_and_the_totals(browser, figures):
    first = figures - timedelta(days=1)
    answer = browser.get(f"/app/performance/data?from={first}&to={figures}&format=csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert (
        f'filename="rokt-calendar-performance-{first}-{figures}.csv"' in answer.headers["Content-Disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [r["date"] for r in rows] == [first.isoformat(), figures.isoformat(), "total"]
    assert [r["subscribed"] for r in rows] == ["1", "5", "6"]
    assert [r["net"] for r in rows] == ["-3", "3", "0"]


def test_page_shows_each_chart_beside_its_table(browser, figures):
    first = figures - timedelta(days=1)
    answer = browser.get(f"/app/performance?from={first}&to={figures}")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert answer.headers["Content-Security-Policy"].startswith(PAGE_POLICY)
    assert "<script>" not in html and "style=" not in html  # nothing the CSP would refuse
    assert 'aria-current="page">Performance</a>' in html and ">App Settings</a>" in html
    assert cells(html, "table-subscribers")[1:] == [
        [first.isoformat(), "1", "4", "-3"],
        [figures.isoformat(), "5", "2", "3"],
        ["Total", "6", "6", "0"],
    ]
    assert f'data-date="{first}" data-figure="unsubscribed" data-value="4"' in html
    assert f'data-date="{first}" data-figure="net" data-value="-3"' in html
    assert cells(html, "table-events")[2] == [figures.isoformat(), "6", "1", "1"]
    assert cells(html, "table-funnel-all")[1:] == [
        ["Entered", "10", "100%"],
        ["Sent", "7", "70%"],
        ["In calendars", "6", "60%"],
        ["Clicked", "2", "20%"],
    ]
    # each activity's funnel, most entered first
    assert cells(html, "table-funnel-0")[1][1] == "8" and cells(html, "table-funnel-1")[1][1] == "2"
    assert cells(html, "table-reasons")[1:] == [
        ["No calendar subscription", "Not sent", "2"],
        ["Rokt refused the event", "Failed", "1"],
    ]
    assert f'href="/app/performance/data?from={first}&amp;to={figures}&amp;format=csv"' in html
    assert 'id="empty"' not in html


def test_the_filter_shows_one_activitys_funnel_and_keeps_it_in_the_csv_link(browser, figures):
    answer = browser.get(f"/app/performance?from={figures}&to={figures}&activity={ACTIVITY}")
    html = answer.get_data(as_text=True)
    assert f'<option value="{ACTIVITY}" selected>' in html
    assert 'id="table-subscribers"' not in html and 'id="subscribers-note"' in html
    assert [row[1] for row in cells(html, "table-funnel-0")[1:]] == ["8", "6", "5", "2"]
    assert 'id="table-funnel-1"' not in html
    assert f"activity={ACTIVITY}" in re.search(r'class="csv" href="([^"]+)"', html).group(1)


def test_activity_names_are_shown_when_the_report_carries_them(browser, figures, monkeypatch):
    page_module = sys.modules[
        "pipeline.web.app_performance"
    ]  # `pipeline.web.app_performance` is the blueprint
    real = page_module.report_all_for

    def named(rt, tenant, query):
        found, each = real(rt, tenant, query)
        found["scopes"]["activityNames"] = {ACTIVITY: {"journey": "Welcome", "activity": "Send invite"}}
        return found, each

    monkeypatch.setattr(page_module, "report_all_for", named)
    html = browser.get("/app/performance").get_data(as_text=True)
    assert f'<option value="{ACTIVITY}">Welcome \u203a Send invite</option>' in html
    assert f'<option value="{OTHER}">{OTHER}</option>' in html  # no name known: its id


def test_an_empty_range_says_so(browser):
    html = browser.get("/app/performance").get_data(as_text=True)
    assert "No events in this range" in html
    assert 'id="no-reasons"' in html
    start = (today() - timedelta(days=6)).isoformat()
    assert f'value="{start}"' in html  # the default: the last 7 days
    assert 'aria-current="true">Last 7 days</a>' in html


def test_a_bad_date_on_the_page_is_said_beside_its_input(browser):
    answer = browser.get("/app/performance?from=2026-02-30&to=2026-03-01")
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert 'role="alert"' in html and '<a href="#q-from">From</a>: Not a valid date.' in html
    assert re.search(r'id="q-from" name="from" value="2026-02-30"[^>]*aria-invalid="true"', html)


def test_charts_scale_negative_values_and_escape_labels():
    days = [{"date": "2026-05-01", "a": 3, "n": -2}, {"date": "2026-05-02", "a": 0, "n": 5}]
    svg = str(
        charts.daily_bars(
            "c", "T <x>", days, [charts.Series("a", "A", charts.BLUE)], charts.Series("n", "N", charts.INK)
        )
    )
    assert "T &lt;x&gt;" in svg and "<x>" not in svg
    assert svg.count('data-figure="a"') == 2 and 'data-figure="n" data-value="-2"' in svg
    bars = str(charts.horizontal_bars("h", "H", [("<b>", 4), ("two", 2)], of=4))
    assert "&lt;b&gt;: 4 (100%)" in bars and "two: 2 (50%)" in bars


def test_the_page_reads_each_days_figures_once(browser, runtime, tenant, figures, monkeypatch):
    """Every activity's funnel, the scopes and the names come from one read of each day's hash,
    not a report per activity (each reading every day three times)."""
    for n in range(11):  # more activities on each day, each counting
        put_day(runtime.redis, tenant, today() - timedelta(days=n), {f"a:act-{n:02d}|entered": n + 1})
    reads: list[str] = []
    real = keys.performance_day
    monkeypatch.setattr(keys, "performance_day", lambda t, day: reads.append(day) or real(t, day))
    html = browser.get("/app/performance?" + f"from={(today() - timedelta(days=29)).isoformat()}").get_data(
        as_text=True
    )
    assert len(reads) == 30 and len(set(reads)) == 30  # 30 days, each read once
    assert 'id="table-funnel-11"' in html and 'id="table-funnel-12"' not in html  # the 12 funnels


def test_report_all_is_the_report_and_each_activitys_report_totals(runtime, tenant, figures):
    first, last = today() - timedelta(days=6), today()
    found, each = performance.report_all(runtime.redis, tenant, "UTC", first, last)
    assert found == performance.report(runtime.redis, tenant, "UTC", first, last)
    assert set(each) == set(found["scopes"]["activities"]) and each
    for activity, totals in each.items():
        alone = performance.report(runtime.redis, tenant, "UTC", first, last, activity=activity)
        assert totals == alone["totals"]
    with_template = performance.report_all(runtime.redis, tenant, "UTC", first, last, template="tpl-1")[0]
    assert with_template == performance.report(runtime.redis, tenant, "UTC", first, last, template="tpl-1")


def test_the_csv_link_and_the_presets_keep_the_template_filter(browser, figures):
    html = browser.get("/app/performance?template=tpl-1").get_data(as_text=True)
    assert "template=tpl-1" in re.search(r'class="csv" href="([^"]+)"', html).group(1)
    assert '<input type="hidden" name="template" value="tpl-1">' in html
    presets = re.findall(r'href="(/app/performance\?[^"]+)"', html)
    assert presets and all("template=tpl-1" in href for href in presets)
