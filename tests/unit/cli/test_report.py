"""`rokt-sfmc report`: a day's figures, a range with its totals, one activity's days, CSV; every
figure read from the counters the pipeline keeps where states change."""

import csv
import io
import json

from pipeline.infra import keys
from pipeline.stores.ledger import Ledger
from pipeline.vocabulary import State
from tests.unit.cli.test_cli import T, _run, on_fake_redis  # noqa: F401  (the CLI's fixture)


def test_one_day_is_the_days_object_and_counts_the_moves_of_after_sending(on_fake_redis, capsys):  # noqa: F811
    on_fake_redis.hset(
        keys.daily_counts(T, "2026-12-01"), mapping={"subscribed": 3, "updated": 2, "cancelled": 1}
    )
    code, out, _err = _run(capsys, "report", "--tenant", T, "--date", "2026-12-01")
    day = json.loads(out)
    assert code == 0 and day["date"] == "2026-12-01" and day["tenant"] == T
    assert (day["subscribed"], day["updated"], day["cancelled"], day["withdrawn"]) == (3, 2, 1, 0)


def test_a_range_has_a_row_a_day_and_their_totals(on_fake_redis, capsys):  # noqa: F811
    on_fake_redis.hset(keys.daily_counts(T, "2026-12-01"), "confirmed", 4)
    on_fake_redis.hset(keys.daily_counts(T, "2026-12-03"), "confirmed", 1)
    code, out, _err = _run(capsys, "report", "--tenant", T, "--from", "2026-12-01", "--to", "2026-12-03")
    report = json.loads(out)
    assert code == 0 and [d["date"] for d in report["days"]] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert [d["confirmed"] for d in report["days"]] == [4, 0, 1] and report["totals"]["confirmed"] == 5


def test_an_activitys_days_come_from_its_executions_moves_as_csv(on_fake_redis, capsys):  # noqa: F811
    ledger = Ledger(on_fake_redis)
    record = {"activityId": "act-9", "eventId": "ev-1", "args": {"templateId": "tpl-1"}}
    ledger.claim(T, "e1", record)
    ledger.transition(T, "e1", State.ACCEPTED)
    ledger.transition(T, "e1", State.CONFIRMED, (State.ACCEPTED,))
    code, out, _err = _run(capsys, "report", "--tenant", T, "--activity", "act-9", "--csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and (row["accepted"], row["confirmed"], row["removed"]) == ("1", "1", "0")


def test_a_range_backwards_or_too_long_is_refused(on_fake_redis, capsys):  # noqa: F811
    code, _out, err = _run(capsys, "report", "--tenant", T, "--from", "2026-12-03", "--to", "2026-12-01")
    assert code == 2 and "--from" in err
    code, _out, err = _run(capsys, "report", "--tenant", T, "--from", "2024-01-01", "--to", "2026-12-01")
    assert code == 2 and "400" in err
