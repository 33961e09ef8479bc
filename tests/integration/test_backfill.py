"""`rokt-sfmc backfill`: existing subscriptions into SFMC, sync and async, resumable."""

from __future__ import annotations

import csv
import json

import pytest
import requests

from pipeline.clients.errors import ClientError
from pipeline.infra.cellsafe import FORMULA_PROBLEM
from pipeline.sandbox.stack import Stack
from pipeline.settings import load_settings
from pipeline.subscriptions.backfill import run_backfill
from pipeline.tenancy.handles import Runtime
from tests.integration.helpers import cli, subscription_de

pytestmark = pytest.mark.integration
COLUMNS = ["CalendarSubscriptionId", "SubscriberExternalId", "Email", "optIn1", "TagText", "RemovedDateTime"]


def write_csv(path, count, bad=()):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(count):
            writer.writerow(
                {
                    "CalendarSubscriptionId": "" if i in bad else f"sub-{i:05d}",
                    "SubscriberExternalId": f"BF{i:05d}",
                    "Email": f"b{i}@example.com",
                    "optIn1": "maybe" if i == 7 else ("true" if i % 2 else "false"),
                    "TagText": "Team A",
                    "RemovedDateTime": "2025-01-01T00:00:00Z" if i % 10 == 0 else "",
                }
            )


def test_csv_backfill_maps_matches_batches_and_reruns_safely(stack: Stack, tmp_path):
    stack.seed_sfmc_contacts([f"BF{i:05d}" for i in range(0, 120, 3)])
    path = tmp_path / "subscriptions.csv"
    write_csv(path, 120, bad={3})
    result = cli(stack, "backfill", "--tenant", "backfill", "--from", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 120 and summary["mode"] == "sync"
    assert summary["rejected"] == 2 and summary["written"] == 118
    assert any("CalendarSubscriptionId" in r for r in summary["reasons"])
    assert any("optIn1" in r for r in summary["reasons"])
    assert summary["matched"] + summary["created"] == 118
    rows = {r["CalendarSubscriptionId"]: r for r in stack.rows("backfill", subscription_de("backfill"))}
    assert len(rows) == 118
    assert rows["sub-00001"]["optIn1"] is True and rows["sub-00002"]["optIn1"] is False
    assert rows["sub-00010"]["RemovedDateTime"] == "2025-01-01T00:00:00Z"
    assert rows["sub-00000"]["ContactMatch"] == "matched" and rows["sub-00001"]["ContactMatch"] == "created"
    assert stack.sfmc_state()["max_rows_per_rowset"] <= 50

    calls_before = stack.sfmc_state()["rowset_calls"]
    again = json.loads(cli(stack, "backfill", "--tenant", "backfill", "--from", str(path)).stdout)
    assert again["resumed_from"] == 120 and again["written"] == 0
    assert stack.sfmc_state()["rowset_calls"] == calls_before


def test_large_files_use_the_async_api_and_an_interrupted_run_resumes(stack: Stack, tmp_path):
    path = tmp_path / "subscriptions.jsonl"
    with path.open("w") as fh:
        for i in range(1200):
            fh.write(
                json.dumps(
                    {
                        "calendarSubscriptionId": f"async-{i:05d}",
                        "subscriberId": f"AS{i:05d}",
                        "emailAddress": f"a{i}@example.com",
                        "accountCode": "backfill",
                    }
                )
                + "\n"
            )
        fh.write("not json\n")
    runtime = Runtime(load_settings(stack.env))
    sfmc = stack.sfmc_url

    def interrupt(done: int, _total: int) -> None:
        if done == 500:  # the first chunk is written: SFMC goes down
            requests.post(f"{sfmc}/__sandbox__/faults", json={"error_rate": 1.0}, timeout=5)

    with pytest.raises(ClientError):
        run_backfill(runtime, "backfill", path, async_threshold=100_000, on_progress=interrupt)
    assert len(stack.rows("backfill", subscription_de("backfill"))) == 500
    requests.post(f"{sfmc}/__sandbox__/faults", json={"error_rate": 0}, timeout=5)

    resumed = run_backfill(runtime, "backfill", path, async_threshold=100_000)
    assert resumed.resumed_from == 500 and resumed.written == 700 and resumed.rejected == 1

    path2 = tmp_path / "more.jsonl"
    path2.write_text(path.read_text().replace("async-", "bulk-"))
    bulk = run_backfill(runtime, "backfill", path2, async_threshold=1000, poll_seconds=0.05)
    assert bulk.mode == "async" and bulk.written == 1200 and bulk.rejected == 1
    assert stack.sfmc_state()["async_calls"] == 1
    rows = stack.rows("backfill", subscription_de("backfill"))
    assert sum(1 for r in rows if r["CalendarSubscriptionId"].startswith("bulk-")) == 1200


def test_a_bom_bad_lines_and_formulas_end_in_the_summary_not_a_traceback(stack: Stack, tmp_path):
    """A BOM before the header is read as no BOM; a bad byte or CSV line is a rejected record, not
    an exception; a value starting `=` reaches SFMC as text, not a formula; an identity that would
    start like one is refused, one that is a phone number is kept as is."""
    path = tmp_path / "excel-export.csv"
    path.write_bytes(
        "\ufeffCalendarSubscriptionId,SubscriberExternalId,TagText\r\n".encode()
        + b'bom-1,BOM1,=HYPERLINK("https://evil.example")\r\n'
        + b"bom-2,BOM2,caf\xe9\r\n"  # Latin-1
        + b'bom-3,BOM3,"'
        + b"x" * 140_000
        + b'"\r\n'  # past the csv module's field limit
        + b"bom-4,+61 400 123 456,@team\r\n"
        + b"bom-5,-BOM5,ok\r\n"
    )
    result = cli(stack, "backfill", "--tenant", "backfill", "--from", str(path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["records"], summary["written"], summary["rejected"]) == (5, 2, 3)
    assert summary["reasons"][0] == "line 3: not UTF-8 (byte 15)"
    assert summary["reasons"][1].startswith("line 4: not valid CSV (field larger than field limit")
    assert summary["reasons"][2] == f"line 6: SubscriberExternalId: {FORMULA_PROBLEM}"
    rows = {r["CalendarSubscriptionId"]: r for r in stack.rows("backfill", subscription_de("backfill"))}
    assert rows["bom-1"]["TagText"] == '\'=HYPERLINK("https://evil.example")'
    assert rows["bom-4"]["TagText"] == "'@team" and rows["bom-4"]["SubscriberExternalId"] == "+61 400 123 456"
