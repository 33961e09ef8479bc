"""Backfill input handling: streamed, BOM-tolerant, every bad line a rejected record."""

import json
import tracemalloc

import pytest

from pipeline.infra.cellsafe import FORMULA_PROBLEM
from pipeline.subscriptions import backfill
from pipeline.subscriptions.backfill import BackfillInputError, read_records, run_backfill


class FakeSfmc:
    """What run_backfill calls on the SFMC client: every contact exists, every row is taken."""

    def __init__(self):
        self.rows = []

    def contact_exists(self, key):
        return True

    def create_contact(self, key, email):  # pragma: no cover - every contact exists
        raise AssertionError("no contact is created here")

    def upsert_rows(self, de_key, rows):
        self.rows.extend(rows)


@pytest.fixture
def sfmc(runtime, monkeypatch):
    client = FakeSfmc()
    monkeypatch.setattr(runtime, "sfmc", lambda _tenant: client)
    return client


def records(path):
    return list(read_records(path))


def test_a_bom_does_not_break_the_csv_header(tmp_path):
    path = tmp_path / "subs.csv"
    path.write_bytes("\ufeffCalendarSubscriptionId,Email\r\nsub-1,a@example.com\r\n".encode())
    assert records(path) == [(2, {"CalendarSubscriptionId": "sub-1", "Email": "a@example.com"}, "")]
    jsonl = tmp_path / "subs.jsonl"
    jsonl.write_bytes('\ufeff{"CalendarSubscriptionId": "sub-1"}\n'.encode())
    assert records(jsonl) == [(1, {"CalendarSubscriptionId": "sub-1"}, "")]


def test_bad_csv_lines_become_rejected_records_and_reading_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(backfill.csv, "field_size_limit", backfill.csv.field_size_limit)
    backfill.csv.field_size_limit(100)
    try:
        path = tmp_path / "subs.csv"
        path.write_bytes(
            b"CalendarSubscriptionId,TagText\n"
            b"sub-1,ok\n"
            b"sub-2,caf\xe9\n"  # Latin-1, not UTF-8
            b'sub-3,"' + b"x" * 200 + b'"\n'  # a field past the csv module's limit
            b"\n"
            b'sub-4,"two\nlines"\n'
            b"sub-5,fine\n"
        )
        got = records(path)
    finally:
        backfill.csv.field_size_limit(131072)
    assert [(n, r) for n, r, _ in got if r] == [
        (2, {"CalendarSubscriptionId": "sub-1", "TagText": "ok"}),
        (6, {"CalendarSubscriptionId": "sub-4", "TagText": "two\nlines"}),
        (8, {"CalendarSubscriptionId": "sub-5", "TagText": "fine"}),
    ]
    problems = [p for _n, r, p in got if r is None]
    assert problems == [
        "line 3: not UTF-8 (byte 10)",
        "line 4: not valid CSV (field larger than field limit (100))",
    ]


def test_bad_json_lines_become_rejected_records(tmp_path):
    path = tmp_path / "subs.jsonl"
    path.write_bytes(
        b'{"CalendarSubscriptionId": "a"}\n'
        b"not json\n"
        b'{"x": "caf\xe9"}\n'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"\n"
        + b"1" * 5000
        + b"\n[1]\n\n"
        + b'{"CalendarSubscriptionId": "b"}'
    )
    got = records(path)
    assert [(n, r) for n, r, _ in got if r] == [
        (1, {"CalendarSubscriptionId": "a"}),
        (8, {"CalendarSubscriptionId": "b"}),
    ]
    problems = [p for _n, r, p in got if r is None]
    assert problems[0] == "line 2: not JSON (Expecting value)"
    assert problems[1] == "line 3: not UTF-8 (byte 11)"
    assert problems[2] == "line 4: JSON nested too deeply"
    assert problems[3].startswith("line 5: not JSON (Exceeds the limit")
    assert problems[4] == "line 6: not a JSON object"


def test_an_overlong_line_is_rejected_without_being_held(tmp_path, monkeypatch):
    monkeypatch.setattr(backfill, "MAX_LINE_BYTES", 64)
    path = tmp_path / "subs.jsonl"
    path.write_text('{"CalendarSubscriptionId": "' + "x" * 500 + '"}\n{"CalendarSubscriptionId": "b"}\n')
    assert records(path) == [
        (1, None, "line 1: longer than 64 bytes"),
        (2, {"CalendarSubscriptionId": "b"}, ""),
    ]


def test_an_unreadable_header_or_a_wrong_suffix_is_an_input_error(tmp_path):
    path = tmp_path / "subs.csv"
    path.write_bytes(b"Calendar\xffSubscriptionId\nx\n")
    with pytest.raises(BackfillInputError, match="header"):
        records(path)
    with pytest.raises(BackfillInputError, match=r"use a \.csv or \.jsonl"):
        records(tmp_path / "subs.xlsx")


def test_every_bad_record_ends_in_the_summary_never_a_traceback(runtime, sfmc, tmp_path):
    path = tmp_path / "subs.jsonl"
    path.write_bytes(
        b'{"CalendarSubscriptionId": "s1", "SubscriberExternalId": "E1", "TagText": "=HYPERLINK(\\"x\\")"}\n'
        b"\xff\xfe\n"
        b"[[[[" + b"[" * 100_000 + b"\n"
        b'{"CalendarSubscriptionId": {"nested": 1}}\n'
        b'{"CalendarSubscriptionId": "s2", "SubscriberExternalId": "-E2", "Email": "+x@example.com"}\n'
        b'{"CalendarSubscriptionId": "s3", "SubscriberExternalId": "+61 400 123 456",'
        b' "Email": "a=b@example.com"}\n'
    )
    summary = run_backfill(runtime, "default", path)
    assert (summary.records, summary.written, summary.rejected) == (6, 2, 4)
    assert summary.reasons == [
        "line 2: not UTF-8 (byte 1)",
        "line 3: JSON nested too deeply",
        "line 4: CalendarSubscriptionId: a dict is not a text, number or boolean",
        f"line 5: Email: {FORMULA_PROBLEM}",  # identities are refused, never rewritten
    ]
    rows = {row["keys"]["CalendarSubscriptionId"]: row["values"] for row in sfmc.rows}
    assert rows["s1"]["TagText"] == '\'=HYPERLINK("x")'  # neutralised before SFMC
    assert "s2" not in rows
    assert rows["s3"]["SubscriberExternalId"] == "+61 400 123 456"  # a phone number, as is
    assert rows["s3"]["Email"] == "a=b@example.com"


def test_the_file_is_streamed_not_loaded_whole(runtime, sfmc, tmp_path):
    path = tmp_path / "subs.csv"
    with path.open("w") as fh:
        fh.write("CalendarSubscriptionId,Email,TagText\n")
        for i in range(5_000):  # no CalendarSubscriptionId: rejected before any Redis or SFMC work
            fh.write(f",person{i}@example.com,Some tag text {i}\n")
    progress = []
    tracemalloc.start()
    try:
        summary = run_backfill(
            runtime,
            "default",
            path,
            async_threshold=10**9,
            on_progress=lambda done, _total: progress.append(done),
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.records == 5_000 and summary.rejected == 5_000 and len(summary.reasons) == 50
    assert progress[0] == backfill.CHUNK and progress[-1] == 5_000
    assert peak < 1024 * 1024, f"peak {peak} bytes: the records were held in memory"


def test_a_resumed_run_skips_the_records_done(runtime, sfmc, tmp_path):
    path = tmp_path / "subs.jsonl"
    path.write_text("".join(json.dumps({"CalendarSubscriptionId": f"s{i}"}) + "\n" for i in range(7)))
    runtime.redis.set(f"rsf:default:backfill:{backfill.file_fingerprint(path)}", 5)
    summary = run_backfill(runtime, "default", path)
    assert (summary.records, summary.resumed_from, summary.written) == (7, 5, 2)
    assert [row["keys"]["CalendarSubscriptionId"] for row in sfmc.rows] == ["s5", "s6"]
