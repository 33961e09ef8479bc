"""Backfill before go-live (the integration guide's "existing client" scenario).

Existing subscriptions (CSV or JSON Lines) go into the Calendar Subscription data extension
through the same mapping, contact matching and batching as webhooks: sync rowsets of at most
50 rows for small files, the async rows API (at most 32,000 rows per request, then status and
results polling) for large ones. Records are processed in chunks; after each chunk the number
of records done is checkpointed in Redis under the file's content hash, so an interrupted
backfill resumes where it stopped and a finished one re-run writes nothing new.

A record carries either the DE attribute names (`CalendarSubscriptionId`, `SubscriberExternalId`,
`Email`, ...) or Rokt's subscription object names (`calendarSubscriptionId`, `subscriberId`,
`emailAddress`, ...).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from marshmallow import ValidationError

from pipeline.clients.errors import PermanentError
from pipeline.clients.sfmc import ASYNC_ROWS_MAX, ROWSET_MAX_ROWS
from pipeline.delivery.flush import FlushReport, send_bisecting
from pipeline.infra import keys
from pipeline.infra.cellsafe import formula_problem
from pipeline.subscriptions.subscription_rows import (
    CREATED,
    DE_COLUMNS,
    IDENTITY_COLUMNS,
    MATCHED,
    attributes,
    matched_or_failed,
    merge_backfill,
)
from pipeline.tenancy.handles import Runtime
from schemas.rokt_webhook import load_subscription

CHUNK = 500
MAX_LINE_BYTES = 1 << 20  # one physical line; a longer one is rejected without being held
ASYNC_THRESHOLD = 5000  # records; larger files go through the async rows API
BOOLEAN_COLUMNS = ("optIn1", "optIn2")


class BackfillInputError(ValueError):
    """The file cannot be read as CSV or JSON Lines."""


@dataclass
class BackfillSummary:
    records: int = 0
    resumed_from: int = 0
    written: int = 0
    matched: int = 0
    created: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    mode: str = "sync"
    calls: int = 0

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 50:
            self.reasons.append(reason)


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None, problem) for each data record of a .csv or .jsonl file.

    Streams: one physical line at a time (at most MAX_LINE_BYTES), never the whole file. UTF-8
    with or without a BOM; a line that is not UTF-8, too long, not valid CSV or not a JSON
    object becomes a rejected record (None and the problem), and reading goes on. Only a file
    that cannot be read at all (wrong suffix, no CSV header) raises BackfillInputError.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise BackfillInputError(f"{path}: use a .csv or .jsonl file")
    with path.open("rb") as fh:
        lines = _Lines(fh)
        if suffix == ".csv":
            yield from _csv_records(lines, path)
        else:
            yield from _json_records(lines)


class _Lines:
    """The file's physical lines decoded as UTF-8 (a leading BOM dropped), counted; a problem
    with a line (not UTF-8, longer than MAX_LINE_BYTES) is kept in `problem` until taken, and the
    line is given on as decoded with replacement characters (or empty when too long)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.number = 0
        self.problem = ""

    def take_problem(self) -> str:
        problem, self.problem = self.problem, ""
        return problem

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self.fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.number += 1
            if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := self.fh.readline(1 << 16)) and not rest.endswith(b"\n"):
                    pass  # skip the rest of the line without holding it
                self.problem = self.problem or f"line {self.number}: longer than {MAX_LINE_BYTES} bytes"
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem = self.problem or f"line {self.number}: not UTF-8 (byte {exc.start + 1})"
                yield raw.decode("utf-8", errors="replace")


def _csv_records(lines: _Lines, path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    reader = csv.reader(iter(lines))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise BackfillInputError(f"{path}: the CSV header cannot be read ({exc})") from exc
    if lines.problem:
        raise BackfillInputError(f"{path}: the CSV header cannot be read ({lines.take_problem()})")
    start = lines.number + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader starts afresh on the next line
            lines.take_problem()
            yield start, None, f"line {start}: not valid CSV ({exc})"
            start = lines.number + 1
            continue
        number, start = start, lines.number + 1
        problem = lines.take_problem()
        if problem:
            yield number, None, problem
        elif any(cell.strip() for cell in row):  # blank lines are not records
            yield number, {k: v for k, v in zip(header, row, strict=False) if k and v != ""}, ""


def _json_records(lines: _Lines) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    for line in lines:
        number, problem = lines.number, lines.take_problem()
        if problem:
            yield number, None, problem
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"line {number}: not JSON ({exc.msg})"
            continue
        except RecursionError:
            yield number, None, f"line {number}: JSON nested too deeply"
            continue
        except ValueError as exc:  # e.g. an integer past Python's digit limit
            yield number, None, f"line {number}: not JSON ({exc})"
            continue
        if isinstance(record, dict):
            yield number, record, ""
        else:
            yield number, None, f"line {number}: not a JSON object"


def to_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """One record in either naming, as DE attributes (raises ValueError naming the problem)."""
    if "calendarSubscriptionId" not in record:  # the DE's own names
        attrs = {k: record[k] for k in DE_COLUMNS if k in record and record[k] not in (None, "")}
        for name, value in attrs.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"{name}: a {type(value).__name__} is not a text, number or boolean")
        for name in BOOLEAN_COLUMNS:
            if isinstance(attrs.get(name), str):
                text = attrs[name].strip().lower()
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"{name}: {attrs[name]!r} is not a boolean")
                attrs[name] = text in ("true", "1", "yes")
        if not str(attrs.get("CalendarSubscriptionId", "")).strip():
            raise ValueError("CalendarSubscriptionId is required")
        return _identities_checked(attrs)
    details = {k: record.get(k) for k in ("accountCode", "accountId", "accountName")}
    try:
        subscription = load_subscription({"subscription": record})
    except ValidationError as exc:
        raise ValueError(f"invalid subscription: {exc.messages}") from exc
    return _identities_checked(attributes(str(record.get("eventId") or ""), details, subscription))


def _identities_checked(attrs: dict[str, Any]) -> dict[str, Any]:
    """Identities go to SFMC as they are, so one that would start like a formula is refused."""
    for name in sorted(IDENTITY_COLUMNS & attrs.keys()):
        problem = formula_problem(attrs[name])
        if problem:
            raise ValueError(f"{name}: {problem}")
    return attrs


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {**row["keys"], **row["values"]}


def run_backfill(
    rt: Runtime,
    tenant: str,
    path: Path,
    *,
    async_threshold: int = ASYNC_THRESHOLD,
    on_progress: Callable[[int, int], None] | None = None,
    poll_seconds: float = 1.0,
) -> BackfillSummary:
    total = sum(1 for _ in read_records(path))  # a first pass counts; nothing is kept
    summary = BackfillSummary(records=total)
    summary.mode = "async" if total >= async_threshold else "sync"
    checkpoint = keys.backfill_checkpoint(tenant, file_fingerprint(path))
    done = int(rt.redis.get(checkpoint) or 0)
    summary.resumed_from = done
    de_key = rt.tenant(tenant).sfmc_subscription_de_key
    client = rt.sfmc(tenant)
    chunk_size = ASYNC_ROWS_MAX if summary.mode == "async" else CHUNK

    records = islice(read_records(path), done, None)
    start = done
    while chunk := list(islice(records, chunk_size)):
        rows: list[dict[str, Any]] = []
        for number, record, problem in chunk:
            if record is None:
                summary.reject(problem)
                continue
            try:
                attrs = to_attributes(record)
            except ValueError as exc:
                summary.reject(f"line {number}: {exc}")
                continue
            match = matched_or_failed(rt, tenant, attrs)
            summary.matched += match == MATCHED
            summary.created += match == CREATED
            rows.append(merge_backfill(rt, tenant, attrs, match))
        if summary.mode == "async":
            _write_async(rt, client, de_key, rows, summary, poll_seconds)
        else:
            _write_sync(rt, tenant, client, de_key, rows, summary)
        start += len(chunk)
        rt.redis.set(checkpoint, start, ex=30 * 86400)
        if on_progress is not None:
            on_progress(min(start, total), total)
    return summary


def _write_sync(
    rt: Runtime, tenant: str, client: Any, de_key: str, rows: list[dict[str, Any]], summary: BackfillSummary
) -> None:
    report = FlushReport()

    def rejected(row: dict[str, Any], exc: PermanentError) -> None:
        summary.reject(f"{row['keys']['CalendarSubscriptionId']}: {exc.reason}")

    for start in range(0, len(rows), ROWSET_MAX_ROWS):
        batch = rows[start : start + ROWSET_MAX_ROWS]
        before = report.rejected
        send_bisecting(rt, tenant, batch, lambda items: client.upsert_rows(de_key, items), rejected, report)
        summary.written += len(batch) - (report.rejected - before)
    summary.calls += report.calls


def _write_async(
    rt: Runtime,
    client: Any,
    de_key: str,
    rows: list[dict[str, Any]],
    summary: BackfillSummary,
    poll_seconds: float,
) -> None:
    if not rows:
        return
    request_id = client.upsert_rows_async(de_key, [_flat(row) for row in rows])
    summary.calls += 1
    deadline = time.monotonic() + 3600
    while True:
        status = client.async_status(request_id)
        summary.calls += 1
        if status.get("requestStatus") in ("Complete", "Error") or time.monotonic() > deadline:
            break
        time.sleep(poll_seconds)
    failures = client.async_results(request_id) if status.get("hasErrors") else []
    summary.calls += bool(status.get("hasErrors"))
    for item in failures:
        key = (item.get("item") or {}).get("CalendarSubscriptionId", "?")
        summary.reject(f"{key}: {item.get('errorCode', '')} {item.get('message', '')}".strip())
    if status.get("requestStatus") != "Complete":
        summary.reject(f"async request {request_id} ended {status.get('requestStatus', 'unknown')}")
        return
    summary.written += len(rows) - len(failures)
