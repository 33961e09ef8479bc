"""`rokt-sfmc demo` end to end, as a user runs it: its own Redis, sandbox, web, worker, beat."""

import json
import subprocess
import sys

import pytest

from pipeline.sandbox.demo import SUBSCRIBER_REMOVALS, TRACKED_CLICKS
from pipeline.sandbox.stack import environ_outside_stacks

pytestmark = pytest.mark.e2e


def test_demo_runs_every_outcome_and_loses_nothing(tmp_path):
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in environ_outside_stacks().items() if k not in ("REDIS_URL", "TENANTS_FILE")}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # unreachable: the demo must bring its own Redis
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--contacts", "300", "--report", str(report_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "bundled redis-server" in completed.stdout
    report = json.loads(report_path.read_text())

    assert report["contacts"] == 300 and report["lost"] == 0
    assert report["execute"]["ok"] == 300 and report["execute"]["non_200"] == 0
    assert report["execute"]["duplicates_sent"] > 0
    outcomes = report["outcomes"]
    assert outcomes["confirmed"] > 0 and outcomes["accepted"] == 0  # Rokt confirmed every event
    assert outcomes["no_subscription"] > 0 and outcomes["missing_field"] > 0
    assert outcomes["failed"] > 0  # a few contacts carry a subscription id Rokt rejects
    assert sum(outcomes.values()) == 300
    rokt = report["rokt"]
    assert rokt["event_posts"] >= outcomes["confirmed"]  # rejected posts are not counted as posts
    assert rokt["calendar_entries"] == outcomes["confirmed"]
    assert rokt["duplicate_calendar_entries"] == 0
    assert rokt["max_posts_in_any_1s_window"] <= 50 and rokt["throttled"] == 0
    sfmc = report["sfmc"]
    assert sfmc["status_rows"] == 300 and sfmc["max_rows_per_rowset"] <= 50
    # releaseOn "confirmed" (the saved activity): each contact released once, at confirmation or
    # at its final outcome
    assert sfmc["released_contacts"] == sfmc["released_unique_contacts"] == 300
    # SFMC: the admin's sign-in (authorization code), then one refresh-token grant whose access
    # token every process shares; Rokt: one token for every process
    assert sfmc["token_requests"] == 2 and sfmc["refresh_grants"] == 1 and rokt["token_requests"] == 1
    # every execution in the history store; a finished one costs Redis a tombstone (~100 bytes),
    # a failed one (a few) stays whole for its replay; before the store: ~3,500 bytes each
    history = report["history"]
    assert history["store"] == "sqlite" and history["archived"] == 300 and history["waiting"] == 0
    assert history["redis_bytes_per_contact"] < 600
    subscriptions = report["subscriptions"]
    assert subscriptions["rows"] == subscriptions["matched"] + subscriptions["created"] > 0
    assert subscriptions["matched"] > 0 and subscriptions["created"] > 0
    assert subscriptions["unsubscribed"] > 0
    assert (
        subscriptions["webhooks_received"]
        == subscriptions["webhooks_sent"] + subscriptions["duplicates_dropped"]
    )
    # after sending: the subscribers' own removals came back as webhooks; the title correction
    # updated every event Rokt still held (a removal the history store had not seen when the job
    # planned is skipped as not held), the cancel deleted every event of the second activity, and
    # every calendar holds what the ledger says (checked against the simulator's calendars)
    after = report["after_send"]
    assert after["removed_by_subscribers"] == SUBSCRIBER_REMOVALS
    assert after["corrected"] == outcomes["confirmed"] - SUBSCRIBER_REMOVALS
    assert after["unchanged"] == 0  # the new title renders differently for every contact
    assert after["skipped"] <= SUBSCRIBER_REMOVALS
    assert after["cancelled"] == after["second_activity_contacts"] > 0
    assert after["failed"] == 0
    assert after["calendars_match"] is True
    # what the channel did, as the app reports it (the day figures through the API), equals the
    # demo's own counts: the contacts it sent through execute and the calendar page, the Rokt
    # simulator's calendar entries, the redirects it was served
    figures = report["report"]
    assert figures["matches_demo"] is True, figures
    assert figures["entered"] == 300 + after["second_activity_contacts"]
    assert (
        figures["removed"] == SUBSCRIBER_REMOVALS and figures["unsubscribes"] == subscriptions["unsubscribed"]
    )
    assert figures["clicks"] == TRACKED_CLICKS  # and a double tap, redirected but counted once
