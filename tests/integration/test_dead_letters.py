"""Dead letters, replay and reconciliation on the real stack."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests

from pipeline.infra import dispatch, keys
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.settings import load_settings
from pipeline.stores.ledger import event_id_for, execution_id
from pipeline.tenancy.handles import Runtime
from pipeline.upkeep.reconcile import Thresholds, reconcile
from pipeline.upkeep.replay import list_dead_letters, list_replayed, replay_one
from tests.integration.helpers import args_of, cli

pytestmark = pytest.mark.integration


def test_permanent_failures_are_dead_lettered_and_replay_once_after_the_fix(stack: Stack):
    payloads = stack.prepare("dlq", jbsim.make_contacts(200, seed=20))
    doomed = [p for p in payloads if args_of(p)["subscriptionId"] == jbsim.UNKNOWN_SUBSCRIPTION_ID]
    assert doomed
    jbsim.drive(stack.execute_url("dlq"), stack.jwt_secret, payloads)
    stack.wait_terminal("dlq", 200)

    listed = cli(
        stack, "dlq", "list", "--tenant", "dlq", "--stage", "create_event", "--error-class", "permanent"
    )
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(letters) == len(doomed)
    assert all("not found" in letter["reason"] for letter in letters)
    shown = json.loads(cli(stack, "dlq", "show", "--tenant", "dlq", letters[0]["id"]).stdout)
    assert shown["payload"]["args"]["subscriptionId"] == jbsim.UNKNOWN_SUBSCRIPTION_ID
    assert shown["payload"]["journeyId"] == "journey-dlq"

    dry = json.loads(cli(stack, "replay", "--tenant", "dlq", "--dry-run").stdout)
    assert dry["selected"] == len(doomed) and dry["replayed"] == 0

    # the fix: the subscription exists now
    requests.post(
        f"{stack.rokt_url}/__sandbox__/subscriptions",
        json={"accountCode": "dlq", "subscriptions": [{"subscriptionId": jbsim.UNKNOWN_SUBSCRIPTION_ID}]},
        timeout=5,
    )
    runtime = Runtime(load_settings(stack.env))
    first = list_dead_letters(runtime, "dlq")[0]
    replayed = json.loads(cli(stack, "replay", "--tenant", "dlq", "--journey", "journey-dlq").stdout)
    assert replayed["replayed"] == len(doomed)
    # replaying the same letter again (a second operator, a stale list) enqueues nothing
    assert replay_one(runtime, "dlq", first, dispatch.enqueue_execution, dispatch.enqueue_webhook) is False
    assert json.loads(cli(stack, "replay", "--tenant", "dlq").stdout)["selected"] == 0

    def all_accepted() -> bool:
        return Counter(r["Status"] for r in stack.rows("dlq"))["failed"] == 0

    stack.wait(all_accepted, 60, "replayed executions to be accepted")
    # the replayed letters are done: in the history store (the workers' flush), none left in Redis
    stack.wait(
        lambda: len(list_replayed(runtime, "dlq")) == len(doomed), 30, "replayed letters in the history store"
    )
    assert not runtime.redis.exists(keys.dead_letters_replayed("dlq"))
    listed = cli(stack, "dlq", "list", "--tenant", "dlq", "--replayed").stdout.splitlines()
    assert sorted(json.loads(line)["id"] for line in listed) == sorted(d["id"] for d in letters)
    rokt = stack.rokt_state()
    # (the replayed contacts now share one subscription, so equal titles there are not duplicates)
    assert rokt["repeated_event_posts"] == 0
    assert rokt["event_posts"] == sum(1 for r in stack.rows("dlq") if r["Status"] == "accepted")
    # the day figures: each failure counted once where it failed (by stage and class, not by
    # its text), and the replay's sends as created
    report = json.loads(cli(stack, "report", "--tenant", "dlq").stdout)
    assert report["totals"]["failed"] == len(doomed) and report["totals"]["created"] >= len(doomed)
    assert report["failedReasons"] == [{"reason": "create_event:permanent", "count": len(doomed)}]


def test_reconcile_redrives_lost_executions_and_confirms_through_rokt(stack: Stack, monkeypatch):
    runtime = Runtime(load_settings(stack.env))
    payloads = stack.prepare("recon", jbsim.make_contacts(30, seed=4))
    jbsim.drive(stack.execute_url("recon"), stack.jwt_secret, payloads[:20])
    stack.wait_terminal("recon", 20)

    # an execution whose task was lost (claimed, its intake entry gone, as a broker losing the
    # message would leave it): only the reconciler sees it
    lost = payloads[20]
    execution = execution_id(lost["activityId"], lost["definitionInstanceId"])  # as execute names it
    args = args_of(lost)
    monkeypatch.setattr(keys, "intake", lambda t: keys.tenant_prefix(t) + "intake-unread")
    runtime.ledger.claim(
        "recon", execution, {"contactKey": lost["keyValue"], "eventId": event_id_for(execution), "args": args}
    )
    monkeypatch.undo()
    assert runtime.ledger.open_count("recon") == 1

    now = Thresholds(queued_after=0, confirm_after=0, final_after=3600, dead_letter_cool_down=3600)
    time.sleep(1)  # Rokt lands the accepted events
    report = reconcile(runtime, "recon", dispatch.enqueue_execution, dispatch.enqueue_webhook, now)
    assert report.redriven == 1
    accepted = sum(1 for r in stack.rows("recon") if r["Status"] == "accepted")
    assert report.checked == accepted and report.confirmed == accepted  # no webhooks: Rokt's GET told us
    stack.wait(
        lambda: len(stack.rows("recon")) == 21 and runtime.ledger.open_count("recon") == 0,
        30,
        "the re-driven row",
    )
    statuses = {r["ContactKey"]: r["Status"] for r in stack.rows("recon")}
    assert statuses[lost["keyValue"]] in (
        "accepted",
        "confirmed",
        "no_subscription",
        "missing_field",
        "failed",
    )
    assert sum(1 for s in statuses.values() if s == "accepted") <= 1  # only the re-driven one may still wait
