"""The performance data extension through a real worker: contacts through the whole chain, then
the export task writes the day's rows into the SFMC simulator with the figures the pipeline
counted and the names Journey Builder gives."""

from __future__ import annotations

import pytest
import requests

from pipeline.infra import dispatch
from pipeline.infra.redis_clients import redis_client
from pipeline.sandbox import jbsim
from pipeline.sandbox.stack import Stack
from pipeline.stores import performance
from tests.integration.helpers import expected_outcomes

pytestmark = pytest.mark.integration
TENANT = "perf"
DE = "Perf_perf"


def test_the_days_rows_hold_what_the_pipeline_counted(stack: Stack):
    payloads = stack.prepare(TENANT, jbsim.make_contacts(30, seed=5))
    activity, journey = payloads[0]["activityId"], payloads[0]["journeyId"]
    body = {"id": journey, "version": 1, "status": "Published", "name": "Winter sale",
            "activities": [{"id": activity, "name": "Save the date"}]}  # fmt: skip
    requests.post(f"{stack.sfmc_url}/__sandbox__/journeys", json=body, timeout=5).raise_for_status()
    result = jbsim.drive(stack.execute_url(TENANT), stack.jwt_secret, payloads, concurrency=10)
    assert result.ok == 30
    stack.wait_terminal(TENANT, 30)

    r = redis_client(stack.redis_url)
    today = performance.local_day("Pacific/Auckland")
    dispatch.export_performance(TENANT, [today])

    def written() -> bool:
        return len(stack.rows(TENANT, DE)) == 2

    stack.wait(written, 60, "performance rows")
    rows = {row["ActivityId"]: row for row in stack.rows(TENANT, DE)}
    expected = expected_outcomes(payloads)
    figures = performance.read_days(r, TENANT, [today], activity=activity)[0].figures
    row = rows[activity]
    assert row["Date"] == today and row["TimeZone"] == "Pacific/Auckland"
    assert row["Entered"] == figures["entered"] == 30
    assert row["Sent"] == figures["created"] == expected["accepted"]
    assert row["NotSent"] == expected["missing_field"] + expected["no_subscription"]
    assert row["Failed"] == figures["failed"]
    assert (row["JourneyName"], row["ActivityName"], row["JourneyId"]) == (
        "Winter sale",
        "Save the date",
        journey,
    )
    assert rows["*"]["Entered"] == 30
