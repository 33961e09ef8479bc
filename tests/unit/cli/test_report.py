"""`rokt-sfmc report`: a day's figures, a range with its totals, one activity's or template's
days, CSV, the tenant's reporting time zone; every figure read from the counters the pipeline
keeps where things happen (pipeline/stores/performance.py)."""

import csv
import io
import json
from datetime import UTC, datetime

from pipeline.infra import keys
from pipeline.stores import performance
from pipeline.stores.ledger import Ledger
from pipeline.vocabulary import State
from tests.unit.cli.test_cli import T, _run, on_fake_redis  # noqa: F401  (the CLI's fixture)


def test_one_day_counts_subscriptions_net_growth_and_the_moves_after_sending(on_fake_redis, capsys):  # noqa: F811
    on_fake_redis.hset(
        keys.performance_day(T, "2026-12-01"),
        mapping={"*|subscribed": 3, "*|unsubscribed": 1, "*|updated": 2, "*|deleted": 1, "a:x|updated": 9},
    )
    code, out, _err = _run(capsys, "report", "--tenant", T, "--date", "2026-12-01")
    found = json.loads(out)
    (day,) = found["days"]
    assert code == 0 and day["date"] == "2026-12-01" and found["tenant"] == T and found["timeZone"] == "UTC"
    assert (day["subscribed"], day["unsubscribed"], day["net"]) == (3, 1, 2)
    assert (day["updated"], day["deleted"], day["withdrawn"]) == (2, 1, 0)  # not the activity's 9


def test_a_range_has_a_row_a_day_their_totals_and_the_reasons(on_fake_redis, capsys):  # noqa: F811
    on_fake_redis.hset(keys.performance_day(T, "2026-12-01"), "*|in_calendars", 4)
    on_fake_redis.hset(keys.performance_day(T, "2026-12-01"), "*|not_sent:no_subscription", 2)
    on_fake_redis.hset(keys.performance_day(T, "2026-12-03"), "*|in_calendars", 1)
    on_fake_redis.hset(keys.performance_day(T, "2026-12-03"), "*|not_sent:missing_field", 3)
    code, out, _err = _run(capsys, "report", "--tenant", T, "--from", "2026-12-01", "--to", "2026-12-03")
    report = json.loads(out)
    assert code == 0 and [d["date"] for d in report["days"]] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert [d["in_calendars"] for d in report["days"]] == [4, 0, 1] and report["totals"]["in_calendars"] == 5
    assert [d["not_sent"] for d in report["days"]] == [2, 0, 3]
    assert report["notSentReasons"] == [
        {"reason": "missing_field", "count": 3},
        {"reason": "no_subscription", "count": 2},
    ]


def test_an_activitys_and_a_templates_days_come_from_its_executions_moves_as_csv(on_fake_redis, capsys):  # noqa: F811
    ledger = Ledger(on_fake_redis)
    for execution in ("e1", "e2"):
        record = {"activityId": "act-9", "eventId": f"ev-{execution}", "args": {"templateId": "tpl-1"}}
        ledger.claim(T, execution, record)
    ledger.transition(T, "e1", State.ACCEPTED)
    ledger.transition(T, "e1", State.CONFIRMED, (State.ACCEPTED,))
    ledger.transition(T, "e2", State.FAILED, error="'Ann' is not a date", failedAs="render:permanent")
    for scope in (("--activity", "act-9"), ("--template", "tpl-1")):
        code, out, _err = _run(capsys, "report", "--tenant", T, *scope, "--csv")
        row, total = list(csv.DictReader(io.StringIO(out)))
        assert total["date"] == "total" and total["entered"] == row["entered"]
        assert code == 0 and (row["entered"], row["created"], row["in_calendars"]) == ("2", "1", "1")
        assert (row["failed"], row["removed"]) == ("1", "0") and "subscribed" not in row
    code, out, _err = _run(capsys, "report", "--tenant", T, "--activity", "act-9")
    # counted by where and how it failed, never by its text (which may quote the contact's values)
    assert json.loads(out)["failedReasons"] == [{"reason": "render:permanent", "count": 1}]
    assert not any(
        "Ann" in name for name in on_fake_redis.hkeys(keys.performance_day(T, performance.local_day("UTC")))
    )
    ledger.claim(T, "e3", {"activityId": "act-9", "eventId": "ev-e3", "args": {}})
    ledger.transition(T, "e3", State.FAILED, error="free text", failedAs="free text: not a kind")
    code, out, _err = _run(capsys, "report", "--tenant", T, "--activity", "act-9")
    assert {"reason": "other", "count": 1} in json.loads(out)["failedReasons"]
    assert "failedAs" not in on_fake_redis.hgetall(keys.execution(T, "e3"))  # counted, not stored


def test_a_replays_second_send_is_not_a_second_create(on_fake_redis, capsys):  # noqa: F811
    ledger = Ledger(on_fake_redis)
    ledger.claim(T, "e1", {"activityId": "act-9", "eventId": "ev-1", "args": {}})
    ledger.transition(T, "e1", State.ACCEPTED)
    ledger.transition(T, "e1", State.FAILED, (State.ACCEPTED,), error="never confirmed")
    assert ledger.reopen(T, "e1")
    ledger.transition(T, "e1", State.ACCEPTED)
    (day,) = performance.read_days(on_fake_redis, T, [performance.local_day("UTC")], "act-9")
    assert (day.figures["created"], day.figures["failed"]) == (1, 1)


def test_moves_count_in_the_tenants_reporting_day(on_fake_redis):  # noqa: F811
    # 23:30 UTC is already tomorrow in Auckland and still today in Los Angeles
    late = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert performance.local_day("Pacific/Auckland", late) == "2026-12-08"
    assert performance.local_day("America/Los_Angeles", late) == "2026-12-07"
    ledger = Ledger(on_fake_redis, day_of=lambda _tenant: "2026-12-08")
    ledger.claim(T, "e1", {"activityId": "act-9", "eventId": "ev-1", "args": {}})
    assert on_fake_redis.hget(keys.performance_day(T, "2026-12-08"), "a:act-9|entered") == "1"


def test_every_state_says_what_a_move_into_it_counts():
    assert set(performance.MOVE_FIGURES) == set(State)
    for from_queued, otherwise in performance.MOVE_FIGURES.values():
        for figure in (from_queued, otherwise):
            assert figure is None or figure.partition(":")[0] in set(performance.Figure)


def test_a_range_backwards_or_too_long_is_refused(on_fake_redis, capsys):  # noqa: F811
    code, _out, err = _run(capsys, "report", "--tenant", T, "--from", "2026-12-03", "--to", "2026-12-01")
    assert code == 2 and "--from" in err
    code, _out, err = _run(capsys, "report", "--tenant", T, "--from", "2024-01-01", "--to", "2026-12-01")
    assert code == 2 and "400" in err
