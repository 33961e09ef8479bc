"""The log redaction's quick check (pipeline/infra/logsafe.py `MAY_MATCH`): it lets through only text no
pattern could change. What `redact` removes is tested with the logging in test_logsetup.py."""

import pytest

from pipeline.infra import logsafe


@pytest.mark.parametrize(
    "line",
    [
        "mail jane.doe@example.com now",
        "GET /t/acme/webhooks/rokt/s3cr3tvalue HTTP/1.1",
        "Authorization: bearer abc.def",
        "token eyJhbGciOi.eyJzdWIi.sig",
        "client_secret=abc123",
        "CLIENTSECRET: 'abc'",
        "refresh_token=zzz",
        "Access_Token=zzz",
        "password: hunter2",
        "api_key=k",
        "secret_key=k",
    ],
)
def test_every_line_a_pattern_changes_passes_the_quick_check(line):
    """The quick check only lets through text no pattern could change."""
    assert logsafe.MAY_MATCH.search(line)
    assert logsafe.redact(line) != line


def test_a_plain_line_is_left_as_it_is():
    line = "Task rsf.render_event[0b6c:render] succeeded in 0.004s: None"
    assert not logsafe.MAY_MATCH.search(line) and logsafe.redact(line) == line
