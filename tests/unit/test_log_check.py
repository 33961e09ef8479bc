"""The log check of the integration session (tests/log_check.py) can fail: planted secrets and
emails are caught."""

import pytest

from pipeline.sandbox import SANDBOX_JWT_SECRET, rokt
from tests.log_check import TEST_PROCESS_LOG, check_logs, log_leaks

CLEAN = "2026-01-01 INFO pipeline.web: execute accepted contact=c***@e***.com execution=ex-1\n"


def _logs(tmp_path, **texts):
    for name, text in {"w-1.log": CLEAN, TEST_PROCESS_LOG: CLEAN, **texts}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_clean_logs_pass(tmp_path):
    check_logs(_logs(tmp_path))


def test_a_planted_secret_fails_the_check_and_is_named(tmp_path):
    run_dir = _logs(tmp_path, **{"sandbox.log": CLEAN + f"token for {rokt.DEFAULT_CLIENT_SECRET}\n"})
    with pytest.raises(AssertionError, match=r"Rokt client secret in sandbox\.log"):
        check_logs(run_dir)


def test_a_planted_email_fails_the_check_and_is_named(tmp_path):
    run_dir = _logs(tmp_path, **{"w-2.log": CLEAN + "subscribed ava.smith+cal@example.com\n"})
    with pytest.raises(AssertionError) as failed:
        check_logs(run_dir)
    assert "unmasked email(s) in w-2.log: ['ava.smith+cal@example.com']" in str(failed.value)


def test_every_finding_is_listed():
    leaks = log_leaks({"a.log": f"jwt {SANDBOX_JWT_SECRET} Authorization: Bearer abc", "b.log": "x@y.io"})
    assert leaks == [
        "JWT signing secret in a.log",
        "bearer token in a.log",
        "unmasked email(s) in b.log: ['x@y.io']",
    ]


def test_no_logs_to_check_is_a_failure_too(tmp_path):
    (tmp_path / TEST_PROCESS_LOG).write_text(CLEAN)
    with pytest.raises(AssertionError, match="nothing to check"):
        check_logs(tmp_path)
