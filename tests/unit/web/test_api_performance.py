"""`GET /t/<tenant>/api/performance`: the report of `rokt-sfmc report` over HTTP, by day in the
tenant's reporting time zone, as JSON or CSV; a bad query is a 400 naming the field."""

import csv
import io
from dataclasses import replace
from datetime import date, timedelta

import pytest

from pipeline.infra import keys
from pipeline.stores import performance
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import State
from pipeline.web import create_app

BASE = "/t/default/api/performance"
ZONE = "Pacific/Auckland"


def _never(*_args):
    raise AssertionError("the API enqueues nothing")


@pytest.fixture
def rt(settings, fake_redis):
    """The unit tenant `default`, reporting in Auckland, and a second one, `other`, in UTC."""
    default = replace(settings.tenants["default"], reporting_time_zone=ZONE)
    other = replace(settings.tenants["default"], name="other")
    return Runtime(replace(settings, tenants={"default": default, "other": other}), fake_redis)


@pytest.fixture
def client(rt):
    client = create_app(rt, enqueue_webhook=_never).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {apikeys.create_key(rt.redis, 'default', 'test')}"
    return client


def _today() -> date:
    return date.fromisoformat(performance.local_day(ZONE))


def test_the_days_count_in_the_tenants_zone_and_match_the_pipelines_moves(client, rt):
    for n in range(3):
        record = {"activityId": "act-1", "eventId": f"ev-{n}", "args": {"templateId": "tpl-1"}}
        rt.ledger.claim("default", f"e{n}", record)
    rt.ledger.transition("default", "e0", State.ACCEPTED)
    rt.ledger.transition("default", "e0", State.CONFIRMED, (State.ACCEPTED,))
    rt.ledger.transition("default", "e1", State.NO_SUBSCRIPTION)
    rt.ledger.transition("default", "e2", State.CANCELLED, error="cancelled: called off")
    body = client.get(BASE).json
    assert body["timeZone"] == ZONE and body["from"] == body["to"] == _today().isoformat()
    (day,) = body["days"]
    assert (day["entered"], day["created"], day["in_calendars"], day["not_sent"]) == (3, 1, 1, 2)
    assert body["notSentReasons"] == [
        {"reason": "cancelled", "count": 1},
        {"reason": "no_subscription", "count": 1},
    ]
    assert body["scopes"]["activities"] == ["act-1"] and body["scopes"]["templates"] == ["tpl-1"]
    assert body["scopes"]["activityNames"] == {"act-1": {"activity": "act-1", "journey": ""}}  # no name yet
    one = client.get(BASE, query_string={"activity": "act-1"}).json
    assert one["activity"] == "act-1" and one["totals"]["entered"] == 3 and "subscribed" not in one["totals"]
    assert client.get(BASE, query_string={"activity": "act-2"}).json["totals"]["entered"] == 0


def test_a_range_as_csv_has_a_row_a_day_and_the_totals_with_safe_cells(client, rt):
    first = _today() - timedelta(days=2)
    rt.redis.hset(keys.performance_day("default", first.isoformat()), mapping={"*|subscribed": 5})
    rt.redis.hset(keys.performance_day("default", _today().isoformat()), mapping={"*|unsubscribed": 2})
    answer = client.get(BASE, query_string={"from": first.isoformat(), "format": "csv"})
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [row["date"] for row in rows] == [
        *(str(first + timedelta(days=n)) for n in range(3)),
        "total",
    ]
    assert [row["net"] for row in rows] == ["5", "0", "-2", "3"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-12-05", "to": "2026-12-01"}, "to"),
        ({"from": "2020-01-01", "to": "2026-12-01"}, "from"),
        ({"activity": "a", "template": "t"}, "template"),
        ({"format": "xml"}, "format"),
        ({"days": "7"}, "days"),
        ({"activity": "x" * 201}, "activity"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_field(client, query, field):
    answer = client.get(BASE, query_string=query)
    assert answer.status_code == 400 and field in answer.json["fields"], answer.json


def test_another_tenants_key_or_none_reads_nothing(client, rt):
    other = client.application.test_client()
    assert other.get(BASE).status_code == 401
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {apikeys.create_key(rt.redis, 'other', 'x')}"
    assert other.get(BASE).status_code in (401, 403)
