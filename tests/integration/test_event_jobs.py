"""Events already sent, corrected, cancelled and withdrawn on the real stack (issue 24): contacts
driven through execute, jobs started through the API (an API key) and the CLI, run by the rokt
workers on the `event-jobs` queue; what counts is what every simulated calendar holds at the end,
and each contact's status row at the SFMC simulator.

The crash tests SIGKILL a rokt worker in the middle of a correction and restart Redis in the middle
of a cancel. With the Redis broker a killed worker's messages come back only after the visibility
timeout, so the reconciler (beat's, here run by the test with a short EVENT_JOB_IDLE_SECONDS)
sends the lost steps again; neither result may change.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
import requests

from pipeline.infra import dispatch, keys
from pipeline.infra.queues import EVENT_JOB_STEP_TASK, EVENT_JOBS_QUEUE
from pipeline.sandbox import jbsim, processes
from pipeline.sandbox.stack import Stack
from pipeline.settings import load_settings
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep.reconcile import Thresholds, reconcile
from pipeline.vocabulary import JOB_STAGES
from tests.integration.helpers import args_of, cli, expected_outcomes

pytestmark = pytest.mark.integration

# the sale's day, far enough ahead that no event of these tests has started or ended
SALE_DAY = date.today() + timedelta(days=60)
# the correction: the sale moved a day later, and the title now names the contact's city with no
# default (strict), so a contact without a city keeps its old event
MOVED_TITLE = "Moved to Saturday: {{FirstName}} in {{City}}, the sale starts a day later"
# what the test's stand-in for beat's reconciler waits before it sends a job's steps again (120 s by
# default): longer than a chunk takes at the tenant's 50/s, and short on purpose, so a step whose
# original still waits for its retry (after the Redis restart) is sent again too and two runs of
# one chunk go at once: the results must not change either
IDLE_SECONDS = 6
STEP_LINE = re.compile(re.escape(EVENT_JOB_STEP_TASK) + r"\[([0-9a-f-]+)\] (received|succeeded|retry|raised)")


def sale_template(day: date) -> dict[str, Any]:
    """The demo template with the sale on `day` (the demo's own date may be past)."""
    return {**jbsim.DEMO_TEMPLATE, "start": f"{day}T09:00:00", "end": f"{day}T10:00:00"}


class Api:
    """The tenant's `/t/<tenant>/api` with an API key of its own, as a script would call it."""

    def __init__(self, stack: Stack, tenant: str) -> None:
        self.key = apikeys.create_key(stack.redis, tenant, "event jobs test")
        self.key_id = self.key[len(apikeys.PREFIX) :][: apikeys.ID_LENGTH]
        self.base = f"{stack.web_url}/t/{tenant}/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.key}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=30, **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.call("GET", f"/event-jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()


@dataclass
class Journey:
    """A journey's run at one tenant: its template, contacts and how each ended."""

    tenant: str
    api: Api
    template_id: str
    payloads: list[dict[str, Any]]
    subscription_of: dict[str, str]  # contact key -> subscription id ("" without one)
    rows: dict[str, dict[str, Any]]  # contact key -> status row

    def args(self, contact_key: str) -> dict[str, Any]:
        """The contact's inArguments as execute merged them: what its event was rendered from."""
        return args_of(next(p for p in self.payloads if p["keyValue"] == contact_key))

    @property
    def held(self) -> dict[str, dict[str, Any]]:
        """The accepted contacts' rows: the events Rokt holds."""
        return {key: row for key, row in self.rows.items() if row["Status"] == "accepted"}


def send_journey(stack: Stack, tenant: str, count: int, seed: int) -> Journey:
    """A template made through the API, the contacts' subscriptions at Rokt, and a journey that
    sends it: every contact through execute (jbsim), until every status row is in SFMC."""
    api = Api(stack, tenant)
    created = api.call("POST", "/templates", json=sale_template(SALE_DAY))
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    contacts = jbsim.make_contacts(count, seed=seed)
    jbsim.seed_subscriptions(stack.rokt_url, stack.tenant(tenant).rokt_account_code, contacts)
    activity = stack.saved_activity(tenant, template_id)
    payloads = [jbsim.execute_payload(c, activity, f"journey-{tenant}") for c in contacts]
    result = jbsim.drive(stack.execute_url(tenant), stack.jwt_secret, payloads)
    assert result.ok == count and result.non_200 == 0
    rows = stack.wait_terminal(tenant, count)
    assert Counter(row["Status"] for row in rows) == expected_outcomes(payloads)
    wait_calendars_settled(stack)
    return Journey(
        tenant,
        api,
        template_id,
        payloads,
        {c.key: c.subscription_id for c in contacts},
        {row["ContactKey"]: row for row in rows},
    )


def calendars(stack: Stack) -> dict[str, dict[str, dict[str, Any]]]:
    """What every subscription's calendar shows now: {subscriptionId: {eventId: event}}."""
    return requests.get(f"{stack.rokt_url}/__sandbox__/calendars", timeout=30).json()


def wait_calendars_settled(stack: Stack) -> dict[str, Any]:
    """Every change Rokt accepted shows in the calendars (they land after a delay)."""
    state: dict[str, Any] = {}

    def settled() -> bool:
        nonlocal state
        state = stack.rokt_state()
        return state["pending_calendar_entries"] == 0 and state["pending_calendar_changes"] == 0

    stack.wait(settled, 30, "calendar changes landing")
    return state


def wait_job(stack: Stack, api: Api, job_id: str, timeout: float = 90, supervise: bool = False) -> dict:
    """The job once done (polled through the API; through a Redis restart, whatever answers)."""
    job: dict[str, Any] = {}

    def done() -> bool:
        nonlocal job
        try:
            job = api.job(job_id)
        except (requests.RequestException, AssertionError):  # the app's Redis restarting
            return False
        return job["state"] == "done"

    stack.wait(done, timeout, f"event job {job_id}", supervise=supervise)
    return job


def wait_rows(stack: Stack, tenant: str, expected: dict[str, str], timeout: float = 60) -> dict[str, dict]:
    """The status rows once every contact of `expected` (contact key -> Status) has its Status."""
    rows: dict[str, dict[str, Any]] = {}

    def arrived() -> bool:
        nonlocal rows
        rows = {row["ContactKey"]: row for row in stack.rows(tenant)}
        return all(rows.get(key, {}).get("Status") == status for key, status in expected.items())

    try:
        stack.wait(arrived, timeout, f"status rows of {tenant}")
    except TimeoutError as exc:
        wrong = Counter(
            rows.get(k, {}).get("Status") for k, s in expected.items() if rows.get(k, {}).get("Status") != s
        )
        raise TimeoutError(f"status rows still not there: {dict(wrong)}") from exc
    return rows


def expected_event(journey: Journey, contact_key: str, before: dict[str, Any]) -> dict[str, Any]:
    """What the contact's calendar must show after the correction: the event as it was, with the
    title of the corrected template filled from the contact's own values, one day later."""
    args = journey.args(contact_key)
    title = MOVED_TITLE.replace("{{FirstName}}", args["FirstName"]).replace("{{City}}", args["City"])
    moved = SALE_DAY + timedelta(days=1)
    return {**before, "title": title, "start": f"{moved}T09:00:00", "end": f"{moved}T10:00:00"}


def has_city(journey: Journey, contact_key: str) -> bool:
    """Whether the contact renders under the corrected template (its City is strict there)."""
    return bool(str(journey.args(contact_key).get("City") or "").strip())


def corrected_template() -> dict[str, Any]:
    """The template as edited: the sale a day later, the title naming the contact's city."""
    moved = sale_template(SALE_DAY + timedelta(days=1))
    return {**moved, "title": MOVED_TITLE}


def check_corrected_calendars(
    stack: Stack, journey: Journey, before: dict[str, dict[str, dict[str, Any]]]
) -> None:
    """Every accepted contact's calendar holds exactly its one event: the corrected content, or,
    for a contact without a city (kept), the old one; no other calendar holds anything."""
    after = calendars(stack)
    held_subscriptions = set()
    for key, row in journey.held.items():
        subscription = journey.subscription_of[key]
        held_subscriptions.add(subscription)
        old = before[subscription][row["RoktEventId"]]
        assert list(after[subscription]) == [row["RoktEventId"]], key  # one event, the contact's
        wanted = expected_event(journey, key, old) if has_city(journey, key) else old
        assert after[subscription][row["RoktEventId"]] == wanted, key
    assert all(not events for sub, events in after.items() if sub not in held_subscriptions)


@contextmanager
def reconciling(stack: Stack, tenant: str) -> Iterator[list[int]]:
    """Beat's reconciliation of `tenant` every second, with EVENT_JOB_IDLE_SECONDS short; yields
    a list that ends holding how many job steps it sent again. Redis away: it tries next second."""
    runtime = Runtime(load_settings({**stack.env, "EVENT_JOB_IDLE_SECONDS": str(IDLE_SECONDS)}))
    # only the event jobs' part matters here: nothing else is re-driven or checked at Rokt
    thresholds = Thresholds(
        queued_after=3600, confirm_after=3600, final_after=86400, dead_letter_cool_down=3600
    )
    resent = [0]
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1.0):
            try:
                report = reconcile(
                    runtime, tenant, dispatch.enqueue_execution, dispatch.enqueue_webhook, thresholds
                )
            except Exception:  # Redis or the broker restarting: the next second
                continue
            resent[0] += report.event_job_steps_resent

    thread = threading.Thread(target=run, name="reconciler", daemon=True)
    thread.start()
    try:
        yield resent
    finally:
        stop.set()
        thread.join(timeout=30)


def job_dead_letters(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    """The tenant's dead letters of an event job's stages (its journey's own failures aside)."""
    stages = set(JOB_STAGES.values())
    letters = [json.loads(raw) for raw in stack.redis.hvals(keys.dead_letters(tenant))]
    return [letter for letter in letters if letter["stage"] in stages]


def steps_in_hand(worker: processes.Child, since: int) -> set[str]:
    """Event-job steps the worker received (after offset `since` of its log) and has not ended."""
    held: set[str] = set()
    for task_id, what in STEP_LINE.findall(worker.output()[since:]):
        if what == "received":
            held.add(task_id)
        else:
            held.discard(task_id)
    return held


# -- the tests -------------------------------------------------------------------------------


def test_a_correction_updates_every_calendar_once_and_a_second_run_sends_nothing(stack: Stack):
    journey = send_journey(stack, "ej-correct", 300, seed=24)
    held = journey.held
    kept = {key for key in held if not has_city(journey, key)}
    assert held and kept and len(kept) < len(held)  # both kinds of contact are in the run
    sent = journey.api.call("GET", f"/templates/{journey.template_id}/sent").json()
    assert (sent["held"], sent["beyondRetention"], sent["archived"]) == (len(held), 0, False)
    before = calendars(stack)
    rows_before = journey.rows

    edited = journey.api.call(
        "PUT", f"/templates/{journey.template_id}?applyToSent=true", json=corrected_template()
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == MOVED_TITLE
    job = wait_job(stack, journey.api, edited.json()["job"]["id"])

    outcomes = job["outcomes"]
    assert (job["kind"], job["total"], job["done"], job["toDo"]) == ("correct", len(held), len(held), 0)
    assert outcomes["updated"] == len(held) - len(kept) and outcomes["kept"] == len(kept)
    assert sum(outcomes.values()) == len(held) and job["failed"] == 0
    assert set(job["notes"]) == {held[key]["ExecutionId"] for key in kept}  # why each was kept
    assert all("City" in note for note in job["notes"].values())
    assert job["startedBy"] == f"API key {journey.api.key_id}"
    rokt = wait_calendars_settled(stack)
    assert rokt["event_updates"] == len(held) - len(kept)  # one call per changed event, none else
    assert rokt["events"] == len(held) and rokt["event_posts"] == len(held)  # nothing created again
    assert rokt["duplicate_calendar_entries"] == 0 and rokt["unknown_event_changes"] == 0
    check_corrected_calendars(stack, journey, before)
    rows = wait_rows(stack, journey.tenant, {key: "accepted" if key in kept else "updated" for key in held})
    for key in set(held) - kept:  # the row says when it was updated; the event is the same one
        assert rows[key]["UpdatedAt"] > rows_before[key]["UpdatedAt"]
        assert rows[key]["RoktEventId"] == held[key]["RoktEventId"]
    untouched = {key: row["Status"] for key, row in journey.rows.items() if key not in held}
    assert {key: rows[key]["Status"] for key in untouched} == untouched

    # the same correction again, from the CLI: every event already shows it, nothing is sent
    started = cli(stack, "events", "correct", "--tenant", journey.tenant, "--template", journey.template_id)
    assert started.returncode == 0, started.stderr
    again_id = json.loads(started.stdout)["id"]
    wait_job(stack, journey.api, again_id, timeout=30)
    shown = cli(stack, "events", "show", "--tenant", journey.tenant, again_id)
    assert shown.returncode == 0, shown.stderr
    again = json.loads(shown.stdout)
    assert again["outcomes"]["unchanged"] == len(held) - len(kept) and again["outcomes"]["kept"] == len(kept)
    assert again["outcomes"]["updated"] == 0 and again["failed"] == 0
    assert again["startedBy"].startswith("CLI")
    rokt_again = stack.rokt_state()
    assert rokt_again["event_updates"] == rokt["event_updates"]  # nothing sent the second time
    check_corrected_calendars(stack, journey, before)
    print(
        f"correction: {len(held)} held ({len(kept)} kept, no city), {rokt['event_updates']} update calls; "
        f"second run: {again['outcomes']['unchanged']} unchanged, 0 calls"
    )


def test_a_cancel_empties_every_calendar_and_archives_the_template(stack: Stack):
    journey = send_journey(stack, "ej-cancel", 80, seed=25)
    held = journey.held
    path = f"/templates/{journey.template_id}"
    assert journey.api.call("GET", f"{path}/sent").json()["held"] == len(held)
    stale = journey.api.call("POST", f"{path}/cancel", json={"confirmCount": len(held) + 1})
    assert stale.status_code == 409 and stale.json()["held"] == len(held)  # the count confirmed is checked

    reason = "legal asked us to pull the event"
    started = journey.api.call("POST", f"{path}/cancel", json={"reason": reason, "confirmCount": len(held)})
    assert started.status_code == 202, started.text
    job = wait_job(stack, journey.api, started.json()["id"])
    assert job["outcomes"]["cancelled"] == job["total"] == len(held) and job["failed"] == 0
    assert sum(job["outcomes"].values()) == len(held)
    rokt = wait_calendars_settled(stack)
    assert rokt["events"] == 0 and rokt["event_deletes"] == len(held)
    assert not any(calendars(stack).values())  # no event of the template in any calendar
    template = journey.api.call("GET", path).json()
    assert template["archivedAt"]
    assert journey.api.call("GET", f"{path}/sent").json() == {
        "templateId": journey.template_id,
        "archived": True,
        "held": 0,
        "beyondRetention": 0,
    }
    rows = wait_rows(stack, journey.tenant, dict.fromkeys(held, "cancelled"))
    assert all(reason in rows[key]["Error"] and not rows[key]["RoktEventId"] for key in held)

    # a contact who reaches the step now is not sent an event: `cancelled`, with the reason
    activity = stack.saved_activity(journey.tenant, journey.template_id)
    late, restored = (
        jbsim.Contact(f"LATE{i:04d}", "Ava", f"late{i}@example.com", "Perth", True) for i in (1, 2)
    )
    jbsim.seed_subscriptions(stack.rokt_url, stack.tenant(journey.tenant).rokt_account_code, [late, restored])
    payload = jbsim.execute_payload(late, activity, f"journey-{journey.tenant}")
    assert jbsim.drive(stack.execute_url(journey.tenant), stack.jwt_secret, [payload]).ok == 1
    late_row = wait_rows(stack, journey.tenant, {late.key: "cancelled"})[late.key]
    assert "cancelled" in late_row["Error"] and not late_row["RoktEventId"]
    assert stack.rokt_state()["event_posts"] == len(held)  # nothing sent for it

    # restored: the next contact is sent the event; the cancelled ones are not created again
    assert journey.api.call("POST", f"{path}/restore").status_code == 200
    payload = jbsim.execute_payload(restored, activity, f"journey-{journey.tenant}")
    assert jbsim.drive(stack.execute_url(journey.tenant), stack.jwt_secret, [payload]).ok == 1
    wait_rows(stack, journey.tenant, {restored.key: "accepted"})
    wait_calendars_settled(stack)
    shown = {sub: events for sub, events in calendars(stack).items() if events}
    assert list(shown) == [restored.subscription_id]
    assert stack.rokt_state()["events"] == 1


def test_a_withdrawal_takes_one_contact_s_event_out_of_their_calendar_only(stack: Stack):
    journey = send_journey(stack, "ej-withdraw", 20, seed=27)
    held = journey.held
    before = calendars(stack)
    gone = sorted(held)[0]
    started = journey.api.call("POST", "/events/remove", json={"contactKey": gone, "reason": "asked"})
    assert started.status_code == 202, started.text
    job = wait_job(stack, journey.api, started.json()["id"])
    assert job["kind"] == "withdraw" and job["contact"] is True
    assert job["outcomes"]["withdrawn"] == job["total"] == 1 and job["failed"] == 0
    assert gone not in str(job)  # the job's record holds no contact key
    rokt = wait_calendars_settled(stack)
    assert rokt["event_removals"] == 1 and rokt["events"] == len(held)  # removed, not deleted
    after = calendars(stack)
    assert after[journey.subscription_of[gone]] == {}
    for key in set(held) - {gone}:  # everyone else keeps their event as it was
        subscription = journey.subscription_of[key]
        assert after[subscription] == before[subscription] and len(after[subscription]) == 1
    rows = wait_rows(stack, journey.tenant, {gone: "withdrawn", **{k: "accepted" for k in held if k != gone}})
    assert "withdrawn" in rows[gone]["Error"]


def test_a_rokt_worker_killed_mid_correction_changes_nothing(stack: Stack):
    journey = send_journey(stack, "ej-kill", 200, seed=28)
    held = journey.held
    kept = {key for key in held if not has_city(journey, key)}
    before = calendars(stack)
    rokt_workers = stack.workers_serving(EVENT_JOBS_QUEUE)
    assert len(rokt_workers) == 2  # one is killed, the other goes on
    logged = {worker.name: len(worker.output()) for worker in rokt_workers}
    restarts = stack.restarts
    stack.faults("rokt", latency_ms=40)  # each call slower: the job is still going when killed

    with reconciling(stack, journey.tenant) as resent:
        edited = journey.api.call(
            "PUT", f"/templates/{journey.template_id}?applyToSent=true", json=corrected_template()
        )
        assert edited.status_code == 200, edited.text
        job_id = edited.json()["job"]["id"]
        victim: processes.Child | None = None
        at_kill: dict[str, Any] = {}

        def caught_mid_chunk() -> bool:  # a worker holds a step, and the job is well under way
            nonlocal victim, at_kill
            at_kill = journey.api.job(job_id)
            if sum(at_kill["outcomes"].values()) < len(held) // 4:
                return False
            for worker in rokt_workers:
                if steps_in_hand(worker, logged[worker.name]):
                    victim = worker
                    return True
            return False

        stack.wait(caught_mid_chunk, 30, "a rokt worker holding a step of the job", interval=0.05)
        assert victim is not None
        victim.kill()  # SIGKILL, main process and threads: a lost container
        victim.process.wait(10)
        progress_at_kill = sum(at_kill["outcomes"].values())
        assert at_kill["state"] != "done" and progress_at_kill < len(held)
        # the supervisor starts it again (same name), as compose's restart policy would
        job = wait_job(stack, journey.api, job_id, timeout=120, supervise=True)
    assert stack.restarts == restarts + 1

    outcomes = job["outcomes"]
    assert job["total"] == len(held) and sum(outcomes.values()) == len(held)  # none lost
    assert job["failed"] == 0 and outcomes["kept"] == len(kept)
    # what the worker died in is done again: updated again (the call sent, the move not recorded)
    # or unchanged (moved, the outcome not recorded); counted once either way
    assert outcomes["updated"] + outcomes["unchanged"] == len(held) - len(kept)
    assert resent[0] >= 1  # the reconciler found the killed worker's step
    rokt = wait_calendars_settled(stack)
    assert rokt["duplicate_calendar_entries"] == 0 and rokt["events"] == len(held)
    assert rokt["event_updates"] >= len(held) - len(kept)
    check_corrected_calendars(stack, journey, before)
    wait_rows(stack, journey.tenant, {key: "accepted" if key in kept else "updated" for key in held})
    assert job_dead_letters(stack, journey.tenant) == []
    print(
        f"killed {victim.name} at {progress_at_kill}/{len(held)}; steps sent again: {resent[0]}; "
        f"update calls {rokt['event_updates']} for {len(held) - len(kept)} changed events; {outcomes}"
    )


def test_a_redis_restart_mid_cancel_changes_nothing(stack: Stack):
    journey = send_journey(stack, "ej-redis", 200, seed=29)
    held = journey.held
    path = f"/templates/{journey.template_id}"
    stack.faults("rokt", latency_ms=40)

    with reconciling(stack, journey.tenant) as resent:
        started = journey.api.call("POST", f"{path}/cancel", json={"reason": "the sale is off"})
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        at_restart: dict[str, Any] = {}

        def under_way() -> bool:
            nonlocal at_restart
            at_restart = journey.api.job(job_id)
            return at_restart["outcomes"]["cancelled"] >= len(held) // 4

        stack.wait(under_way, 30, "the cancel under way", interval=0.05)
        took = stack.restart_redis(down_seconds=2, ping_timeout=60)
        assert at_restart["state"] != "done" and at_restart["outcomes"]["cancelled"] < len(held)
        job = wait_job(stack, journey.api, job_id, timeout=120, supervise=True)

    assert job["total"] == len(held) and job["outcomes"]["cancelled"] == len(held)  # none lost
    assert sum(job["outcomes"].values()) == len(held) and job["failed"] == 0
    rokt = wait_calendars_settled(stack)
    assert rokt["events"] == 0 and rokt["event_deletes"] == len(held)  # each deleted once
    assert rokt["duplicate_calendar_entries"] == 0
    assert not any(calendars(stack).values())
    rows = wait_rows(stack, journey.tenant, dict.fromkeys(held, "cancelled"))
    assert all("the sale is off" in rows[key]["Error"] for key in held)
    assert job_dead_letters(stack, journey.tenant) == []
    print(
        f"Redis restarted at {at_restart['outcomes']['cancelled']}/{len(held)} cancelled; workers answered "
        f"ping {took:.1f} s after; steps sent again: {resent[0]}; delete calls {rokt['event_deletes']}, "
        f"repeats answered EventNotFound {rokt['unknown_event_changes']}"
    )
