"""What the calendar channel did, measured (issue 25): contacts through two activities on the real
stack (execute, render and the Rokt stage on real workers), subscribes and unsubscribes through
the Rokt simulator's calendar page, confirmations, a subscriber taking events out of the calendar;
then every reader of the day figures (the API the Performance page reads, the CLI) must show the
same numbers, and those must equal what the simulators themselves hold: the calendar entries
there have been, the subscription records, and what each contact's inArguments make of it.

The tenant reports in Pacific/Kiritimati (UTC+14), so its day is not UTC's for most of the day;
the figures are read over the tenant's yesterday and today, so a run across its midnight counts
all the same.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pipeline.infra import dispatch, keys
from pipeline.sandbox import jbsim, monitoring
from pipeline.sandbox.demo import TenantApi
from pipeline.sandbox.stack import Stack
from pipeline.stores import performance
from pipeline.tenancy import apikeys
from pipeline.vocabulary import OutboxKind
from tests.integration.helpers import cli, expected_outcomes

pytestmark = pytest.mark.integration

TENANT = "measure"
PERFORMANCE_DE = "Perf_measure"
ZONE = "Pacific/Kiritimati"
SALE_DAY = date.today() + timedelta(days=45)
TITLES = {"sale": "Winter sale for {{FirstName}}", "vip": "VIP hour for {{FirstName}}"}
FIGURES = ("entered", "created", "in_calendars", "removed", "not_sent", "failed", "clicks", "clickers")
# the performance data extension's column of each figure (pipeline/delivery/performance_rows.py)
DE_COLUMNS = {
    "entered": "Entered",
    "created": "Sent",
    "in_calendars": "InCalendars",
    "removed": "RemovedBySubscribers",
    "not_sent": "NotSent",
    "failed": "Failed",
    "clicks": "Clicks",
    "clickers": "Clickers",
}


def template(kind: str) -> dict[str, Any]:
    return {
        **jbsim.DEMO_TEMPLATE,
        "name": f"Performance test: {kind}",
        "title": TITLES[kind],
        "trackClicks": kind == "sale",  # the sale's links go through our redirect
        "start": f"{SALE_DAY}T09:00:00",
        "end": f"{SALE_DAY}T10:00:00",
    }


def truth_of_activity(
    entries: list[dict[str, Any]], kind: str, payloads: list[dict], served: list[str]
) -> dict[str, int]:
    """An activity's figures as the simulators and the inputs have them: the Rokt calendar
    entries there have been of its template (one subscription a contact), what each contact's
    inArguments make of it, and the redirects served for its events' links (`served`: the event
    id of each)."""
    prefix = TITLES[kind].split("{{")[0]
    mine = [e for e in entries if e["title"].startswith(prefix)]
    outcomes = expected_outcomes(payloads)
    return {
        "entered": len(payloads),
        "created": len({e["eventId"] for e in mine}),
        "in_calendars": sum(1 for e in mine if e["landed"]),
        "removed": sum(1 for e in mine if e["removedBySubscriber"]),
        "not_sent": outcomes["no_subscription"] + outcomes["missing_field"],
        "failed": outcomes["failed"],
        "clicks": sum(1 for event in served if event in {e["eventId"] for e in mine}),
        "clickers": len({event for event in served if event in {e["eventId"] for e in mine}}),
    }


def follow(stack: Stack, link: str) -> requests.Response:
    """A subscriber's phone following a link of the calendar event (our redirect, not followed on)."""
    path = link[link.index(f"/t/{TENANT}/c/") :]
    return requests.get(stack.web_url + path, allow_redirects=False, timeout=10)


def summed(report: dict[str, Any], names: tuple[str, ...]) -> dict[str, int]:
    return {name: report["totals"][name] for name in names}


def test_every_reader_shows_what_the_simulators_saw(stack: Stack) -> None:
    key = apikeys.create_key(stack.redis, TENANT, "performance test")
    api = TenantApi(stack.web_url, TENANT, key)
    account = stack.tenant(TENANT).rokt_account_code
    stack.webhooks_to(TENANT)  # Rokt's webhooks (subscribes, confirmations, removals) reach us
    contacts = jbsim.make_contacts(46, seed=25)
    journeys = {"sale": contacts[:30], "vip": contacts[30:38]}
    leaving_pool = contacts[38:]
    subscribed = jbsim.subscribe_contacts(stack.rokt_url, account, contacts)
    payloads: dict[str, list[dict]] = {}
    activities: dict[str, str] = {}
    for kind, who in journeys.items():
        made = api.call("POST", "/templates", template(kind), expect=201)
        activity = stack.saved_activity(TENANT, made["id"])
        activities[kind] = str(activity["id"])
        payloads[kind] = [jbsim.execute_payload(c, activity, f"journey-{kind}") for c in who]
        result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads[kind], duplicate_every=0)
        assert result.ok == len(who) and result.non_200 == 0
    stack.wait_terminal(TENANT, sum(len(p) for p in payloads.values()))

    def settled() -> bool:
        state = stack.rokt_state()
        return not (state["pending_calendar_entries"] or state["webhooks_pending"])

    stack.wait(settled, 60, "calendar entries landing and their webhooks")
    # two subscribers take the sale's event out of their calendar; three others unsubscribe
    rows: dict[str, dict[str, Any]] = {}

    def confirmed() -> list[jbsim.Contact]:
        rows.update({row["ContactKey"]: row for row in stack.rows(TENANT)})
        return [c for c in journeys["sale"] if rows.get(c.key, {}).get("Status") == "confirmed"]

    stack.wait(lambda: len(confirmed()) >= 20, 60, "the sale's confirmations in the status rows")
    removing = confirmed()[:2]
    for contact in removing:
        requests.post(
            f"{stack.rokt_url}/__sandbox__/remove-event",
            json={"subscriptionId": contact.subscription_id, "eventId": rows[contact.key]["RoktEventId"]},
            timeout=10,
        ).raise_for_status()
    leaving = [c for c in leaving_pool if c.subscription_id][:3]
    for contact in leaving:
        requests.post(
            f"{stack.rokt_url}/__sandbox__/unsubscribe", json={"id": contact.subscription_id}, timeout=10
        ).raise_for_status()
    assert len(removing) == 2 and len(leaving) == 3
    # subscribers follow tracked links of the sale's events: four of them, one of them again
    # (its second link) once the repeat window is past; a double tap on another is redirected
    # but counts once. Each counted 302 is a click, each event clicked a clicker
    shown = requests.get(f"{stack.rokt_url}/__sandbox__/calendars", timeout=30).json()
    tracked = [
        (event_id, [word for word in event["description"].split() if f"/t/{TENANT}/c/" in word])
        for events in shown.values()
        for event_id, event in events.items()
        if event["title"].startswith("Winter sale")
    ]
    served: list[str] = []  # the event of each click that counts

    def click(event_id: str, link: str) -> requests.Response:
        answer = follow(stack, link)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("https://example.com/")
        return answer

    first_click = time.monotonic()
    for event_id, links in tracked[:4]:
        click(event_id, links[0])
        served.append(event_id)
    click(tracked[1][0], tracked[1][1][0])  # a double tap: redirected, not counted
    time.sleep(max(0.0, stack.runtime.settings.click_repeat_seconds + 0.5 - (time.monotonic() - first_click)))
    click(tracked[0][0], tracked[0][1][1])
    served.append(tracked[0][0])
    assert len(served) == 5 and len(set(served)) == 4

    today = date.fromisoformat(performance.local_day(ZONE))
    window = {"from": str(today - timedelta(days=1)), "to": str(today)}

    def truth() -> dict[str, Any]:
        entries = requests.get(f"{stack.rokt_url}/__sandbox__/entries", timeout=30).json()
        state = stack.rokt_state()
        return {
            "tenant": {
                "subscribed": state["subscriptions"],
                "unsubscribed": state["subscriptions"] - state["active_subscriptions"],
            },
            **{kind: truth_of_activity(entries, kind, payloads[kind], served) for kind in journeys},
        }

    def api_figures() -> dict[str, Any]:
        whole = api.call("GET", "/performance?" + "&".join(f"{k}={v}" for k, v in window.items()))
        return {
            "tenant": summed(whole, ("subscribed", "unsubscribed")),
            **{
                kind: summed(
                    api.call("GET", f"/performance?from={window['from']}&activity={activities[kind]}"),
                    FIGURES,
                )
                for kind in journeys
            },
        }

    seen: dict[str, Any] = {}

    def agree() -> bool:
        seen.update(truth=truth(), api=api_figures())
        return seen["truth"] == seen["api"]

    try:
        stack.wait(agree, 60, "the figures to reach the simulators' ground truth")
    except TimeoutError as exc:
        raise AssertionError(f"figures differ: {json.dumps(seen, indent=1)}") from exc
    expected = seen["truth"]
    assert expected["tenant"] == {"subscribed": subscribed, "unsubscribed": 3}
    assert expected["sale"]["removed"] == 2 and expected["sale"]["created"] > 20
    assert (expected["sale"]["clicks"], expected["sale"]["clickers"], expected["vip"]["clicks"]) == (5, 4, 0)
    assert sum(Counter(expected_outcomes(payloads["sale"])).values()) == 30

    # the clicked contacts' status rows carry their clicks, so a journey can branch on them
    def status_clicks() -> tuple[int, int]:
        clicked = [row for row in stack.rows(TENANT) if row.get("RoktEventId") in served]
        return sum(int(row.get("Clicks") or 0) for row in clicked), sum(
            1 for r in clicked if r.get("FirstClickedAt")
        )

    # the redirect only appends the row; beat's outbox pass (every 10 s) sends it, and this stack
    # runs no beat: the test asks for the flush beat would
    def flushed_clicks() -> tuple[int, int]:
        dispatch.schedule_flush(TENANT, OutboxKind.STATUS_ROWS, countdown=0)
        return status_clicks()

    try:
        stack.wait(lambda: flushed_clicks() == (5, 4), 60, "the clicks in the status rows", interval=2)
    except TimeoutError as exc:
        clicked = {r["RoktEventId"]: r for r in stack.rows(TENANT) if r.get("RoktEventId") in served}
        records = {
            e: stack.redis.hgetall(keys.execution(TENANT, r["ExecutionId"])) for e, r in clicked.items()
        }
        detail = {
            e: (r.get("Clicks"), records[e].get("clicks"), records[e].get("archived"), r.get("UpdatedAt"))
            for e, r in clicked.items()
        }
        raise AssertionError(f"status rows' (clicks, first clicks): {status_clicks()} {detail}") from exc

    # the CLI reads the same figures (JSON and CSV)
    for kind in journeys:
        done = cli(
            stack, "report", "--tenant", TENANT, "--from", window["from"], "--activity", activities[kind]
        )
        assert done.returncode == 0, done.stderr
        assert summed(json.loads(done.stdout), FIGURES) == expected[kind]
    done = cli(stack, "report", "--tenant", TENANT, "--from", window["from"], "--csv")
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("total,")
    header = lines[0].split(",")
    sums = Counter()
    for line in lines[1:-1]:  # the last: the range's totals
        for name, value in zip(header, line.split(","), strict=True):
            if name != "date":
                sums[name] += int(value)
    assert {"subscribed": sums["subscribed"], "unsubscribed": sums["unsubscribed"]} == expected["tenant"]
    assert sums["entered"] == sum(expected[kind]["entered"] for kind in journeys)

    # the performance data extension: beat's hourly task, sent here for the window's days, writes
    # a row a day and activity (and the tenant's `*` row) into the SFMC simulator
    days = [window["from"], window["to"]]
    dispatch.export_performance(TENANT, days)
    de_rows: list[dict[str, Any]] = []

    def written() -> bool:
        de_rows[:] = stack.rows(TENANT, PERFORMANCE_DE)
        return {row["ActivityId"] for row in de_rows} >= {"*", *activities.values()}

    stack.wait(written, 60, "the performance data extension's rows")

    def de_sums(activity_id: str) -> dict[str, int]:
        mine = [row for row in de_rows if row["ActivityId"] == activity_id and row["Date"] in days]
        return {figure: sum(int(row[column]) for row in mine) for figure, column in DE_COLUMNS.items()}

    for kind in journeys:
        assert de_sums(activities[kind]) == expected[kind], kind
    tenant_row = [row for row in de_rows if row["ActivityId"] == "*" and row["Date"] in days]
    assert {
        "subscribed": sum(int(row["Subscribed"]) for row in tenant_row),
        "unsubscribed": sum(int(row["Unsubscribed"]) for row in tenant_row),
    } == expected["tenant"]

    # the exporter's series: today's figures of the tenant, as the API has them for today
    exporter, url = monitoring.start_exporter(stack.run_dir, stack.env)
    try:
        text = monitoring.Scraper(url, interval=0.3).scrape()
    finally:
        exporter.stop()
    series = {
        sample.labels["figure"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rsf_performance_today" and sample.labels.get("tenant") == TENANT
    }
    today_row = api.call("GET", f"/performance?from={today}")["days"][-1]
    assert series and all(series[name] == today_row[name] for name in series), (series, today_row)
