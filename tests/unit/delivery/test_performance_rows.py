"""The performance data extension's rows: built from the day figures, upserted into the SFMC
simulator (on loopback) every hour for today and once more after the tenant's midnight for the
days that ended, with Journey Builder's names where SFMC gives them, else the ids."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from pipeline.delivery import performance_rows
from pipeline.infra import keys
from pipeline.sandbox import sfmc
from pipeline.sandbox.common import ServerThread
from pipeline.settings import load_settings
from pipeline.stores import performance
from pipeline.stores.deadletters import count_dead_letters
from pipeline.stores.ledger import event_id_for
from pipeline.subscriptions import dataextensions
from pipeline.subscriptions.dataextensions import PERFORMANCE_DE
from pipeline.tenancy import handles as runtime_module
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep import replay
from pipeline.vocabulary import Stage
from tasks.performance import MAX_PERFORMANCE_RETRIES, export_performance_all_task, export_performance_task
from tests.unit.conftest import ENV
from tests.unit.tasks.test_retries import run

T = "default"
ZONE = "Pacific/Auckland"  # UTC+13 in December (daylight time)
JOURNEY = "0b5f2a4e-1111-4c3b-9a55-000000000001"
ACTIVITY = "2ad157c6-d111-4124-b996-4a3a48b2b168"
OTHER = "2ad157c6-d111-4124-b996-4a3a48b2b169"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[sfmc.SfmcSimulator, str]]:
    sim = sfmc.SfmcSimulator()
    thread = ServerThread(sim.app).start()
    try:
        yield sim, thread.url
    finally:
        thread.stop()


@pytest.fixture
def url(server) -> str:
    requests.post(f"{server[1]}/__sandbox__/reset", timeout=5).raise_for_status()
    return server[1]


@pytest.fixture
def rt(url, fake_redis, monkeypatch) -> Runtime:
    env = {
        **ENV,
        "SFMC_AUTH_BASE_URL": url,
        "SANDBOX": "1",
        "SFMC_CLIENT_ID": sfmc.DEFAULT_CLIENT_ID,
        "SFMC_CLIENT_SECRET": sfmc.DEFAULT_CLIENT_SECRET,
        "REPORTING_TIME_ZONE": ZONE,
    }
    runtime = Runtime(load_settings(env), fake_redis)
    monkeypatch.setattr(runtime_module, "_runtime", (os.getpid(), runtime))  # what the tasks look up
    return runtime


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


def count(rt, day: str, **fields: int) -> None:
    rt.redis.hset(keys.performance_day(T, day), mapping={k.replace("__", "|"): v for k, v in fields.items()})


def rows(url: str, rt) -> dict[tuple[str, str], dict]:
    de = rt.tenant(T).sfmc_performance_de_key
    found = requests.get(f"{url}/__sandbox__/rows", params={"de": de}, timeout=5).json()["rows"]
    return {(row["Date"], row["ActivityId"]): row for row in found}


def name_journey(url: str, name: str, activities: list[dict]) -> None:
    body = {"id": JOURNEY, "version": 1, "status": "Published", "name": name, "activities": activities}
    requests.post(f"{url}/__sandbox__/journeys", json=body, timeout=5).raise_for_status()


def test_a_days_rows_carry_its_figures_exactly(rt, url):
    day = "2026-12-08"
    rt.redis.hset(
        keys.performance_day(T, day),
        mapping={
            "*|entered": 7,
            "*|created": 5,
            "*|in_calendars": 4,
            "*|not_sent:no_subscription": 1,
            "*|not_sent:missing_field": 1,
            "*|failed:Rokt said no": 1,
            "*|subscribed": 3,
            "*|unsubscribed": 1,
            "*|clicks": 6,
            "*|clickers": 2,
            f"a:{ACTIVITY}|entered": 7,
            f"a:{ACTIVITY}|created": 5,
            f"a:{ACTIVITY}|in_calendars": 4,
            f"a:{ACTIVITY}|not_sent:no_subscription": 1,
            f"a:{ACTIVITY}|not_sent:missing_field": 1,
            f"a:{ACTIVITY}|failed:Rokt said no": 1,
            f"a:{ACTIVITY}|clicks": 6,
            f"a:{ACTIVITY}|clickers": 2,
            f"a:{ACTIVITY}|updated": 1,
            f"a:{ACTIVITY}|deleted": 1,
            f"a:{ACTIVITY}|withdrawn": 1,
            f"a:{ACTIVITY}|removed": 2,
            "t:tpl-1|entered": 7,
            f"j:{ACTIVITY}": JOURNEY,
        },
    )
    report = performance_rows.export(rt, T, days=[day])
    assert report.rows == 2 and report.calls == 1 and report.finalised == ""
    written = rows(url, rt)
    assert set(written) == {(day, "*"), (day, ACTIVITY)}  # templates have no row
    tenant, activity = written[(day, "*")], written[(day, ACTIVITY)]
    figures = performance.read_days(rt.redis, T, [day], activity=ACTIVITY)[0].figures
    for column, figure in performance_rows.COLUMN_FIGURES.items():
        assert activity[column] == figures[figure], column
    assert (activity["Entered"], activity["Sent"], activity["NotSent"], activity["Failed"]) == (7, 5, 2, 1)
    assert (activity["RemovedBySubscribers"], activity["Deleted"], activity["Withdrawn"]) == (2, 1, 1)
    assert (tenant["Subscribed"], tenant["Unsubscribed"], tenant["NetSubscribers"]) == (3, 1, 2)
    assert tenant["Entered"] == 7 and tenant["ActivityName"] == performance_rows.ALL_ACTIVITIES
    assert "Subscribed" not in activity  # the tenant's figures only on the tenant's row
    assert activity["TimeZone"] == ZONE and activity["JourneyId"] == JOURNEY
    assert activity["UpdatedAt"].endswith("+00:00")


def test_every_hour_today_and_after_the_tenants_midnight_yesterday_once_more(rt, url):
    """Auckland is UTC+13: its 8 December starts at 11:00 UTC on the 7th."""
    count(rt, "2026-12-07", **{"*__entered": 1})
    count(rt, "2026-12-08", **{"*__entered": 2})
    # 10:07 UTC on the 7th = 23:07 on the 7th in Auckland: the first run ever writes its yesterday too
    first = performance_rows.export(rt, T, now=at("2026-12-07T10:07:00"))
    assert first.days == ["2026-12-06", "2026-12-07"] and first.finalised == "2026-12-06"
    count(rt, "2026-12-07", **{"*__entered": 5})  # more that evening
    # 11:07 UTC = 00:07 on the 8th in Auckland: the 7th once more (final), and the new day
    after = performance_rows.export(rt, T, now=at("2026-12-07T11:07:00"))
    assert after.days == ["2026-12-07", "2026-12-08"] and after.finalised == "2026-12-07"
    assert rt.redis.get(keys.performance_exported(T)) == "2026-12-07"
    written = rows(url, rt)
    assert written[("2026-12-07", "*")]["Entered"] == 5 and written[("2026-12-08", "*")]["Entered"] == 2
    # the next hours: today only
    again = performance_rows.export(rt, T, now=at("2026-12-07T12:07:00"))
    assert again.days == ["2026-12-08"] and again.rows == 1


def test_missed_hours_and_a_missed_midnight_are_caught_up(rt, url):
    rt.redis.set(keys.performance_exported(T), "2026-12-03")
    # beat was down from the 4th to the 8th (Auckland days): each ended day is written once more
    report = performance_rows.export(rt, T, now=at("2026-12-08T02:07:00"))
    assert report.days == ["2026-12-04", "2026-12-05", "2026-12-06", "2026-12-07", "2026-12-08"]
    assert rt.redis.get(keys.performance_exported(T)) == "2026-12-07"
    assert {d for d, _a in rows(url, rt)} == set(report.days)  # a day of zeros says nothing happened


def test_a_gap_longer_than_a_batch_is_written_a_batch_a_run_and_no_day_is_skipped(rt, url):
    """Beat down, credentials refused (no dead letter) or the tenant disabled for weeks: every
    ended day since the marker is written, CATCH_UP_DAYS a run, oldest first."""
    rt.redis.set(keys.performance_exported(T), "2026-11-10")
    count(rt, "2026-11-11", **{"*__entered": 4})  # the first day of the gap
    count(rt, "2026-11-20", **{"*__entered": 6})
    now = at("2026-12-08T02:07:00")  # the 8th in Auckland
    written_days: list[str] = []
    for _run in range(10):
        report = performance_rows.export(rt, T, now=now)
        assert len(report.days) <= performance_rows.CATCH_UP_DAYS + 1 and report.days[-1] == "2026-12-08"
        assert rt.redis.get(keys.performance_exported(T)) == report.finalised
        written_days.extend(report.days[:-1])
        if report.finalised == "2026-12-07":
            break
    assert written_days == performance.day_range(datetime(2026, 11, 11).date(), datetime(2026, 12, 7).date())
    written = rows(url, rt)
    assert written[("2026-11-11", "*")]["Entered"] == 4 and written[("2026-11-20", "*")]["Entered"] == 6
    assert performance_rows.export(rt, T, now=now).days == ["2026-12-08"]  # caught up


def test_days_whose_figures_are_gone_are_not_written(rt):
    rt.redis.set(keys.performance_exported(T), "2020-01-01")
    days, finalised = performance_rows.days_to_write(rt, T, at("2026-12-08T02:07:00"))
    kept = rt.settings.performance_days
    assert days[0] == (datetime(2026, 12, 8) - timedelta(days=kept - 1)).date().isoformat()
    assert len(days) == performance_rows.CATCH_UP_DAYS + 1 and finalised == days[-2]


def test_the_marker_never_moves_back(rt, url):
    rt.redis.set(keys.performance_exported(T), "2026-12-09")  # a zone changed eastwards, say
    report = performance_rows.export(rt, T, now=at("2026-12-07T12:07:00"))
    assert report.days == ["2026-12-08"]
    assert rt.redis.get(keys.performance_exported(T)) == "2026-12-09"


def test_names_come_from_journey_builder_else_the_ids(rt, url):
    day = "2026-12-08"
    count(rt, day, **{f"a:{ACTIVITY}__entered": 1, f"a:{OTHER}__entered": 1})
    rt.redis.hset(keys.performance_day(T, day), mapping={f"j:{ACTIVITY}": JOURNEY, f"j:{OTHER}": JOURNEY})
    # SFMC's latest version holds the first activity only; its name starts like a formula
    name_journey(url, "=Welcome  series", [{"id": ACTIVITY, "name": "Save the date"}])
    report = performance_rows.export(rt, T, days=[day])
    assert report.names_looked_up == 1  # one journey asked about for both activities
    written = rows(url, rt)
    named, unnamed = written[(day, ACTIVITY)], written[(day, OTHER)]
    assert named["ActivityName"] == "Save the date" and named["JourneyName"] == "'=Welcome series"
    assert unnamed["ActivityName"] == OTHER and unnamed["JourneyName"] == "'=Welcome series"
    # the report's shape for the Performance page: raw names (not cell-escaped), ids where unknown
    found = performance.report(rt.redis, T, ZONE, datetime(2026, 12, 8).date(), datetime(2026, 12, 8).date())
    assert found["scopes"]["activityNames"] == {
        ACTIVITY: {"journey": "=Welcome series", "activity": "Save the date"},
        OTHER: {"journey": "=Welcome series", "activity": OTHER},
    }
    # looked up again only after a day
    reads = requests.get(f"{url}/__sandbox__/state", timeout=5).json()
    performance_rows.export(rt, T, days=[day])
    assert requests.get(f"{url}/__sandbox__/state", timeout=5).json().get("journey_reads") == reads.get(
        "journey_reads"
    )


def test_a_journey_sfmc_does_not_know_leaves_the_ids(rt, url):
    day = "2026-12-08"
    count(rt, day, **{f"a:{ACTIVITY}__entered": 1})
    rt.redis.hset(keys.performance_day(T, day), f"j:{ACTIVITY}", JOURNEY)
    performance_rows.export(rt, T, days=[day])  # the simulator answers 404
    row = rows(url, rt)[(day, ACTIVITY)]
    assert row["ActivityName"] == ACTIVITY and row["JourneyName"] == JOURNEY
    found = performance.report(rt.redis, T, ZONE, datetime(2026, 12, 8).date(), datetime(2026, 12, 8).date())
    assert found["scopes"]["activityNames"] == {ACTIVITY: {"journey": JOURNEY, "activity": ACTIVITY}}


def test_names_are_capped_and_one_line(rt):
    performance.save_names(rt.redis, T, ACTIVITY, "J\n" + "x" * 500, " A\tb ")
    assert performance.names_of(rt.redis, T, [ACTIVITY])[ACTIVITY]["journey"] == "J " + "x" * 198
    assert performance.names_of(rt.redis, T, [ACTIVITY])[ACTIVITY]["activity"] == "A b"
    assert rt.redis.ttl(keys.activity_names(T, ACTIVITY)) > 0  # bounded


def test_a_name_that_fills_its_column_and_starts_like_a_formula_still_fits(rt, url):
    """clean_name caps at NAME_LENGTH; the `'` neutralise adds must not make it one too long (SFMC
    would refuse the whole rowset, every hour). A journey id or an activity id too long for its
    column is left out rather than cut, the other rows are written."""
    day = "2026-12-08"
    long_journey = "j" * 150  # execute does not bound journeyId; the column holds 100
    long_activity = "a" * 150  # execute accepts 200; the key column holds 100
    count(
        rt, day, **{f"a:{ACTIVITY}__entered": 1, f"a:{OTHER}__entered": 1, f"a:{long_activity}__entered": 1}
    )
    rt.redis.hset(
        keys.performance_day(T, day), mapping={f"j:{ACTIVITY}": JOURNEY, f"j:{OTHER}": long_journey}
    )
    performance.save_names(rt.redis, T, ACTIVITY, "=" + "J" * 300, "+" + "A" * 300)
    performance.save_names(rt.redis, T, OTHER, "", "")
    report = performance_rows.export(rt, T, days=[day])
    assert report.rows == 3  # the tenant's and the two activities whose ids fit
    written = rows(url, rt)
    assert set(written) == {(day, "*"), (day, ACTIVITY), (day, OTHER)}
    for row in written.values():  # what SFMC checks: no text longer than its column
        for column in PERFORMANCE_DE.columns:
            if column.type == "Text":
                assert len(str(row.get(column.name, ""))) <= column.length, (column.name, row)
    named = written[(day, ACTIVITY)]
    assert len(named["JourneyName"]) == 200 and named["JourneyName"].startswith("'=J")
    assert len(named["ActivityName"]) == 200 and named["ActivityName"].startswith("'+A")
    other = written[(day, OTHER)]
    assert other["JourneyId"] == "" and other["JourneyName"] == "j" * 150


def test_the_claim_names_the_activitys_journey_for_the_day(rt):
    record = {
        "contactKey": "C1",
        "eventId": event_id_for("e1"),
        "activityId": ACTIVITY,
        "journeyId": JOURNEY,
        "args": {},
    }
    assert rt.ledger.claim(T, "e1", record)
    today = rt.reporting_days.today(T)
    raws = performance.read_raw(rt.redis, T, [today])
    assert performance.journeys_of(raws) == {ACTIVITY: JOURNEY}
    # the field is no figure: the day's figures and scopes read as before
    assert performance.read_days(rt.redis, T, [today], activity=ACTIVITY)[0].figures["entered"] == 1
    assert performance.scopes_of(raws)["activities"] == [ACTIVITY]


def test_many_activities_go_in_rowset_calls_of_50(rt, url):
    day = "2026-12-08"
    count(rt, day, **{f"a:act-{n:03d}__entered": 1 for n in range(60)})
    report = performance_rows.export(rt, T, days=[day])
    assert report.rows == 61 and report.calls == 2
    assert len(rows(url, rt)) == 61


def install_done(rt, *des) -> None:
    """The install progress of a finished install that made or found `des` (and the folder)."""
    steps = [{"name": "folder Rokt Calendar", "result": "exists", "detail": ""}]
    steps += [
        {"name": f"data extension {de.name} ({de.key_of(rt.tenant(T))})", "result": "exists"} for de in des
    ]
    rt.redis.set(keys.install_progress(T), json.dumps({"state": "done", "steps": steps, "error": ""}))


def test_a_tenant_installed_before_the_performance_de_waits_without_dead_letters(rt, url, sent_tasks, caplog):
    """Installed before the performance DE existed: SFMC has no such DE, and every hour would
    dead-letter. The export waits (logged once), the marker stays; Install again closes the gap."""
    rt.redis.set(keys.performance_exported(T), "2026-12-05")
    count(rt, "2026-12-06", **{"*__entered": 2})
    install_done(rt, dataextensions.SUBSCRIPTION_DE, dataextensions.STATUS_DE)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(f"{url}/v2/token")
        de = rt.tenant(T).sfmc_performance_de_key
        refused = mock.post(f"{url}/hub/v1/dataevents/key:{de}/rowset", status=400, json={"message": "no DE"})
        with caplog.at_level("WARNING"):
            first = run(export_performance_task, T)
            second = run(export_performance_task, T)
    assert first["rows"] == 0 and first["skipped"] and second["skipped"] and refused.call_count == 0
    assert count_dead_letters(rt.redis, T) == 0
    assert rt.redis.get(keys.performance_exported(T)) == "2026-12-05"
    assert sum("not installed" in r.getMessage() for r in caplog.records) == 1  # once, not every hour
    # Install again (now with the performance DE): the next run writes the days waiting
    install_done(rt, *dataextensions.DATA_EXTENSIONS)
    report = performance_rows.export(rt, T, now=at("2026-12-08T02:07:00"))
    assert report.days[0] == "2026-12-06" and rows(url, rt)[("2026-12-06", "*")]["Entered"] == 2


def test_an_install_not_known_to_lack_the_performance_de_exports(rt, url):
    """Never installed here (made by hand, say), or an install running or failed: try, as before."""
    count(rt, "2026-12-08", **{"*__entered": 1})
    assert performance_rows.export(rt, T, now=at("2026-12-08T02:07:00")).rows == 2
    rt.redis.set(keys.install_progress(T), json.dumps({"state": "failed", "steps": [], "error": "x"}))
    assert performance_rows.export(rt, T, now=at("2026-12-08T02:07:00")).rows == 1


# --- the tasks ---------------------------------------------------------------------------------


def test_beat_sends_one_export_per_active_tenant(rt, sent_tasks):
    run(export_performance_all_task)
    assert [(s.name, s.args) for s in sent_tasks] == [(export_performance_task.name, [T])]


def test_the_task_writes_and_reports(rt, url):
    count(rt, "2026-12-08", **{"*__entered": 1})
    found = run(export_performance_task, T, ["2026-12-08"])
    assert found["rows"] == 1 and rows(url, rt)[("2026-12-08", "*")]["Entered"] == 1


def test_a_refusal_is_a_dead_letter_per_day_and_its_replay_writes_the_day_again(rt, url, sent_tasks):
    count(rt, "2026-12-08", **{"*__entered": 3})
    de = rt.tenant(T).sfmc_performance_de_key
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(f"{url}/v2/token")  # the simulator's token; its rowset refuses
        mock.post(
            f"{url}/hub/v1/dataevents/key:{de}/rowset",
            status=400,
            json={"errorcode": 10000, "message": "no such data extension"},
        )
        found = run(export_performance_task, T, ["2026-12-08"])
    assert found == {"days": ["2026-12-08"], "rows": 0, "deadLettered": 1}
    letter = replay.show_dead_letter(rt, T, "performance:2026-12-08")
    assert letter["stage"] == Stage.RECORD_PERFORMANCE and letter["payload"] == {"day": "2026-12-08"}
    assert "no such data extension" in letter["reason"]
    replayed = replay.replay(rt, T, [letter], lambda *_: None, lambda *_: None)
    assert replayed.replayed == 1 and count_dead_letters(rt.redis, T) == 0
    sent = [s for s in sent_tasks if s.name == export_performance_task.name]
    assert sent[-1].args == [T, ["2026-12-08"]]
    run(export_performance_task, *sent[-1].args)  # what the worker then does
    assert rows(url, rt)[("2026-12-08", "*")]["Entered"] == 3


def test_a_replay_of_a_day_whose_figures_are_gone_does_nothing(rt, sent_tasks):
    letter = {"id": "performance:2025-01-01", "stage": "record_performance", "payload": {"day": "2025-01-01"}}
    letter.update(failedAt="2026-12-08T00:00:00+00:00", errorClass="permanent", reason="x", attempts=1)
    assert not replay.replay_one(rt, T, letter, lambda *_: None, lambda *_: None)
    assert not [s for s in sent_tasks if s.name == export_performance_task.name]


def test_sfmc_down_is_retried_then_dead_lettered(rt, url, sent_tasks):
    count(rt, "2026-12-08", **{"*__entered": 1})
    requests.post(f"{url}/__sandbox__/faults", json={"error_rate": 1.0}, timeout=5).raise_for_status()
    from celery.exceptions import Retry

    with pytest.raises(Retry):
        run(export_performance_task, T, ["2026-12-08"])
    assert count_dead_letters(rt.redis, T) == 0
    found = run(export_performance_task, T, ["2026-12-08"], retries=MAX_PERFORMANCE_RETRIES)
    assert found["deadLettered"] == 1
    assert replay.show_dead_letter(rt, T, "performance:2026-12-08")["errorClass"] != "permanent"
