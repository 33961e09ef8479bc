"""Events after sending (issue 24) in the activity UI, with real workers, Redis and the Rokt
simulator holding the events: editing an event already in calendars says how many and asks
whether the change reaches them, and the correction's progress runs to its end on the page and
in the running view; "Cancel this event" names the count (and notices when it moved), deletes
the events through its confirmation and archives the event, which can be restored for future
contacts; step 2's "cancel when the journey is stopped" is saved, summarised, restored and
accepted by execute.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from pipeline.journeys.templates import create_template, get_template
from pipeline.sandbox import jbsim
from tests.browser.a11y import violations
from tests.browser.conftest import SCREENSHOTS, activity_frame, frame_screenshot, screenshot, updates

pytestmark = pytest.mark.browser

EVENT_KEY = "DEAudience-after-send"
START = (datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%dT09:00:00")
SALE = {
    "name": "Summer sale",
    "title": "🎉 {{FirstName}}, the summer sale starts Friday",
    "description": 'See you in {{City | default: "town"}}',
    "start": START,
    "timezone": "Australia/Sydney",
    "missingFieldPolicy": "strict",
}
SATURDAY = "🎉 {{FirstName}}, the summer sale starts Saturday"
NAMES = ["Ava", "Noah", "Mia", "Leo", "Zoe"]


@pytest.fixture(scope="module")
def sending(ui):
    """Workers running and the simulators empty: the module's executions reach Rokt."""
    ui.start_workers()
    ui.stack.reset_simulators()
    return ui


def contacts(prefix: str, cities: list[str]) -> list[jbsim.Contact]:
    return [
        jbsim.Contact(
            key=f"{prefix}-{i}",
            first_name=NAMES[i % len(NAMES)],
            email=f"{prefix.lower()}{i}@example.com",
            city=city,
            has_subscription=True,
        )
        for i, city in enumerate(cities)
    ]


def execute(ui, saved: dict[str, Any], people: list[jbsim.Contact]) -> list[str]:
    """Journey Builder's execute for each contact at the saved activity (their subscriptions
    seeded at the Rokt simulator first); returns the execution ids."""
    jbsim.seed_subscriptions(ui.stack.rokt_url, ui.stack.tenant(ui.tenant).rokt_account_code, people)
    payloads = [
        jbsim.execute_payload(
            contact, saved, "journey-after-send", EVENT_KEY, jbsim.contact_fields(contact, EVENT_KEY)
        )
        for contact in people
    ]
    sent = jbsim.drive(ui.stack.execute_url(ui.tenant), ui.stack.jwt_secret, payloads, duplicate_every=0)
    assert sent.ok == len(people), sent.summary()
    return [sent.answers[contact.key]["executionId"] for contact in people]


def send(ui, saved: dict[str, Any], people: list[jbsim.Contact]) -> list[str]:
    """execute() for each contact, returning once Rokt accepted every one's event."""
    ledger = ui.stack.runtime.ledger
    wanted = ledger.activity_stats(ui.tenant, saved["id"])["counts"]["accepted"] + len(people)
    ids = execute(ui, saved, people)
    ui.stack.wait(
        lambda: ledger.activity_stats(ui.tenant, saved["id"])["counts"]["accepted"] == wanted,
        60,
        f"{len(people)} events accepted by Rokt",
    )
    return ids


def calendars(ui, people: list[jbsim.Contact]) -> dict[str, list[str]]:
    """The titles each contact's calendar shows now (the Rokt simulator's calendars)."""
    held = requests.get(f"{ui.stack.rokt_url}/__sandbox__/calendars", timeout=10).json()
    return {c.key: sorted(e["title"] for e in held.get(c.subscription_id, {}).values()) for c in people}


def row(frame, placeholder: str):
    return frame.locator(f'#mapping-rows tr[data-placeholder="{placeholder}"]')


def figure(panel, name: str):
    return panel.locator(f'dd[data-figure="{name}"]')


def test_an_edit_of_an_event_in_calendars_is_applied_to_them_and_its_progress_runs_to_the_end(sending, page):
    ui = sending
    sale = create_template(ui.stack.redis, ui.tenant, SALE)

    # the activity, configured in the page: City mapped, cancel-on-stop switched on
    frame = ui.open(page, ui.new_activity(), schema=jbsim.entry_schema(EVENT_KEY))
    frame.locator(f'#template-list button[data-id="{sale["id"]}"]').click()
    expect(frame.locator("#sent-info")).to_be_hidden()  # nothing sent yet
    expect(frame.locator("#event-cancel")).to_be_hidden()
    frame.locator("#btn-next").click()
    row(frame, "City").locator("select.kind").select_option("field")
    row(frame, "City").locator("select.field").select_option("Home City")
    expect(frame.locator("#cancel-on-stop")).not_to_be_checked()  # off by default
    frame.locator("#cancel-on-stop").check()
    frame.locator("#btn-next").click()
    summary = frame.locator("#summary")
    expect(summary.locator("dt", has_text="When the journey is stopped")).to_have_count(1)
    expect(summary).to_contain_text("cancel the events that have not started yet")
    frame.locator("#btn-done").click()
    page.wait_for_function("() => jb.updates.length === 1")
    saved = updates(page)[0]
    in_arguments = saved["arguments"]["execute"]["inArguments"]
    assert in_arguments[5:7] == [{"releaseAfterSeconds": "3600"}, {"cancelOnStop": True}]

    # five contacts reach the step (execute takes the option in its stride); one has no city
    people = contacts("SALE", ["Sydney", "Perth", "Hobart", "Darwin", ""])
    send(ui, saved, people)
    friday = {c.key: [f"🎉 {c.first_name}, the summer sale starts Friday"] for c in people}
    ui.stack.wait(lambda: calendars(ui, people) == friday, 30, "the events in the calendars")

    # reopened: the option restored, the count shown; no worker, so the job waits where it is
    ui.stop_workers()
    frame = ui.open(page, saved, schema=jbsim.entry_schema(EVENT_KEY))
    expect(frame.locator("#sent-info")).to_have_text("5 events sent with it are in subscribers' calendars.")
    frame.locator("#event-edit").click()
    note = frame.locator("#edit-note")
    expect(note).to_contain_text("5 events sent with this event are in subscribers' calendars")
    frame.locator("#tpl-title").fill(SATURDAY)
    # {{City}} without its default: the contact without a city no longer renders, keeps its event
    frame.locator("#tpl-description").fill("See you in {{City}}")
    frame.locator("#create-submit").click()
    question = frame.locator("#apply-confirm")
    expect(question).to_be_visible()
    expect(frame.locator("#apply-question")).to_have_text(
        "5 events already sent with this template \u2014 apply the change to them too?"
    )
    assert activity_frame(page).evaluate("() => document.activeElement.id") == "apply-yes"
    assert get_template(ui.stack.redis, ui.tenant, sale["id"])["title"] == SALE["title"]  # nothing saved yet
    assert violations(activity_frame(page)) == []
    screenshot(page, "step1-apply-to-sent")
    frame.locator("#apply-yes").click()
    expect(frame.locator("#status")).to_contain_text(
        'Saved your changes to "Summer sale". Contacts who reach this step from now on get the new version. '
        "The 5 events already sent are being updated"
    )
    panel = frame.locator("#job-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".job-title")).to_have_text("Updating the events already sent")
    expect(panel).not_to_have_attribute("data-state", "done")
    stored = get_template(ui.stack.redis, ui.tenant, sale["id"])
    assert (stored["title"], stored["description"]) == (SATURDAY, "See you in {{City}}")
    assert violations(activity_frame(page)) == []

    # the running view of the same activity follows the job too
    running = page.context.new_page()
    hover = ui.open(running, saved, schema=None, file="running.html", wait=False)
    job_box = hover.locator("#jobs .job")
    expect(job_box).to_have_count(1, timeout=15_000)
    expect(job_box.locator(".job-title")).to_have_text("Updating the events already sent")
    expect(job_box).not_to_have_attribute("data-state", "done")

    ui.start_workers()
    expect(panel).to_have_attribute("data-state", "done", timeout=60_000)
    expect(panel.locator(".job-title")).to_have_text("Events already sent: update finished")
    expect(figure(panel, "done")).to_have_text("5 of 5")
    expect(figure(panel, "toDo")).to_have_text("0")
    expect(figure(panel, "updated")).to_have_text("4")
    expect(figure(panel, "unchanged")).to_have_text("0")
    expect(figure(panel, "skipped")).to_have_text("1")
    expect(panel.locator('[data-reason="kept"]')).to_have_text(
        "1: the contact's values no longer fit the new version: the old event stays"
    )
    expect(figure(panel, "failed")).to_have_text("0")
    expect(panel.locator(".job-notes li")).to_have_count(1)
    expect(panel.locator(".job-notes")).to_contain_text("City")
    expect(panel.locator(".job-who")).to_contain_text("Started by Marketing Cloud user")
    assert violations(activity_frame(page)) == []
    screenshot(page, "step1-correction")

    expect(job_box).to_have_attribute("data-state", "done", timeout=15_000)
    expect(figure(job_box, "updated")).to_have_text("4")
    # its contacts' tiles follow the job: four updated, the one that kept its event still accepted
    expect(hover.locator('#counts li[data-state="updated"] .count')).to_have_text("4")
    expect(hover.locator('#counts li[data-state="accepted"] .count')).to_have_text("1")
    running_frame = next(f for f in running.frames if "/activity/" in f.url)
    assert violations(running_frame) == []
    frame_screenshot(running, "activity", running_frame, SCREENSHOTS / "running-job.png")
    running.close()

    # every calendar holds one event: the new title, but for the contact without a city
    expected = {c.key: [f"🎉 {c.first_name}, the summer sale starts Saturday"] for c in people[:4]}
    expected[people[4].key] = friday[people[4].key]
    ui.stack.wait(lambda: calendars(ui, people) == expected, 30, "the calendars updated")

    # the option comes back with the activity
    frame.locator("#btn-next").click()
    expect(frame.locator("#cancel-on-stop")).to_be_checked()


def test_cancelling_an_event_names_the_count_deletes_the_events_and_archives_it(sending, page):
    ui = sending
    flash = create_template(
        ui.stack.redis,
        ui.tenant,
        {"name": "Flash sale", "title": "⚡ {{FirstName}}, flash sale", "start": START, "timezone": "UTC"},
    )
    saved = jbsim.save_activity(
        ui.new_activity(),
        template=flash,
        template_id=flash["id"],
        bindings={"FirstName": jbsim.event_binding(EVENT_KEY, "FirstName")},
    )
    people = contacts("FLASH", ["Sydney", "Perth", "Hobart", "Darwin", "Cairns"])
    send(ui, saved, people[:3])

    frame = ui.open(page, saved, schema=jbsim.entry_schema(EVENT_KEY))
    expect(frame.locator("#sent-info")).to_have_text("3 events sent with it are in subscribers' calendars.")
    frame.locator("#event-cancel").click()
    expect(frame.locator("#cancel-confirm")).to_be_visible()
    expect(frame.locator("#cancel-question")).to_have_text(
        "Delete 3 events from subscribers' calendars? Contacts who reach this step later get no event."
    )
    assert activity_frame(page).evaluate("() => document.activeElement.id") == "cancel-reason"
    frame.locator("#cancel-reason").fill("Legal asked us to pull it")
    assert violations(activity_frame(page)) == []
    screenshot(page, "step1-cancel-confirm")

    # one more contact reaches Rokt while the question is open: the count confirmed is stale
    send(ui, saved, people[3:4])
    frame.locator("#cancel-yes").click()
    expect(frame.locator("#cancel-question")).to_have_text(
        "The count changed meanwhile. Delete 4 events from subscribers' calendars? "
        "Contacts who reach this step later get no event."
    )
    assert get_template(ui.stack.redis, ui.tenant, flash["id"]).get("archivedAt") is None  # nothing done yet
    frame.locator("#cancel-yes").click()

    panel = frame.locator("#job-panel")
    expect(panel).to_be_visible()
    expect(frame.locator("#cancel-confirm")).to_be_hidden()
    expect(panel).to_have_attribute("data-state", "done", timeout=60_000)
    expect(panel.locator(".job-title")).to_have_text("Events deleted from subscribers' calendars")
    expect(figure(panel, "done")).to_have_text("4 of 4")
    expect(figure(panel, "cancelled")).to_have_text("4")
    expect(figure(panel, "failed")).to_have_text("0")
    expect(panel.locator(".job-who")).to_contain_text("Reason: Legal asked us to pull it")
    # archived: the page says so, offers the restore, and no longer offers a cancel
    expect(frame.locator("#archived-note")).to_be_visible()
    expect(frame.locator("#archived-text")).to_contain_text("contacts who reach this step get no event")
    expect(frame.locator("#event-restore")).to_have_text("Restore for future contacts")
    expect(frame.locator("#event-cancel")).to_be_hidden()
    item = frame.locator(f'#template-list button[data-id="{flash["id"]}"]')
    expect(item.locator(".template-meta")).to_contain_text("archived")
    expect(frame.locator("#sent-info")).to_be_hidden()  # none held any more
    assert violations(activity_frame(page)) == []
    screenshot(page, "step1-cancelled")
    empty = {c.key: [] for c in people[:4]}
    ui.stack.wait(lambda: calendars(ui, people[:4]) == empty, 30, "the calendars emptied")

    # a contact who reaches the step now gets no event, and a clear outcome
    [late] = execute(ui, saved, people[4:])
    ledger = ui.stack.runtime.ledger
    ui.stack.wait(lambda: ledger.get(ui.tenant, late).status == "cancelled", 60, "the late contact cancelled")
    assert calendars(ui, people[4:]) == {people[4].key: []}

    frame.locator("#event-restore").click()
    expect(frame.locator("#status")).to_contain_text('Restored "Flash sale"')
    expect(frame.locator("#archived-note")).to_be_hidden()
    expect(item.locator(".template-meta")).not_to_contain_text("archived")
    assert get_template(ui.stack.redis, ui.tenant, flash["id"]).get("archivedAt") is None
    assert calendars(ui, people[:4]) == empty  # cancelled stay cancelled
