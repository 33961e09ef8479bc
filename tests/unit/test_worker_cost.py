"""The worker's cheaper paths (issue 14 item 4) behave as the paths they replace: the move that
answers the hash, the one-round-trip outcome and release, the render's one read and parsed
template, the flush slots in one script, the batch's current rows, and the fast paths of the
text cleaning and the log redaction."""

import json
import random
import time

import pytest

from pipeline import executions, logsafe
from pipeline.flush import claim_flush_slot, claim_flush_slots
from pipeline.ledger import event_id_for
from pipeline.render import KEEP_FORMAT, LINE_BREAKS, clean_text
from pipeline.templates import create_template, update_template
from pipeline.vocabulary import OutboxKind, State

TEMPLATE = {"title": "Hi {{FirstName}}", "start": "2026-12-01T09:00:00", "timezone": "Europe/London"}


@pytest.fixture
def template_id(runtime):
    return create_template(runtime.redis, "default", TEMPLATE)["id"]


def claim(runtime, execution, **args):
    runtime.ledger.claim(
        "default",
        execution,
        {"contactKey": "C1", "eventId": event_id_for(execution), "activityId": "a", "args": args},
    )


def stream(runtime, kind):
    return [json.loads(f["p"]) for _id, f in runtime.redis.xrange(f"rsf:default:outbox:{kind}")]


def released_statuses(runtime):
    return [item["data"]["roktStatus"] for item in stream(runtime, "release")]


# --- the ledger's move that answers the hash ---


def test_transition_get_answers_the_hash_after_the_move(runtime):
    claim(runtime, "e1", templateId="t", FirstName="A")
    moved, ex = runtime.ledger.transition_get("default", "e1", State.FAILED, error="boom")
    assert moved is True
    assert ex.fields == runtime.ledger.get("default", "e1").fields
    assert (
        ex.status == "failed"
        and ex.fields["error"] == "boom"
        and ex.args == {"templateId": "t", "FirstName": "A"}
    )
    # not allowed from `failed`: nothing moves, and the hash is still answered
    moved, again = runtime.ledger.transition_get("default", "e1", State.ACCEPTED)
    assert moved is False and again.status == "failed"
    assert runtime.ledger.counts("default")["failed"] == 1 and "accepted" not in runtime.ledger.counts(
        "default"
    )


def test_transition_get_of_an_unknown_execution_is_none(runtime):
    assert runtime.ledger.transition_get("default", "nope", State.FAILED) == (False, None)
    assert runtime.ledger.transition("default", "nope", State.FAILED) == (False, "")


# --- the outcome and the release in one script ---


def test_finish_releases_once_in_one_line(runtime, template_id, caplog):
    claim(
        runtime,
        "e1",
        templateId=template_id,
        subscriptionId="s1",
        FirstName="A",
        releaseEventDefinitionKey="K",
    )
    assert executions.render_step(runtime, "default", "e1") is True
    with caplog.at_level("INFO", logger="pipeline.executions"):
        executions.finish(runtime, "default", "e1", State.ACCEPTED)
    assert released_statuses(runtime) == ["accepted"]
    assert [r.getMessage().endswith("ended accepted; released") for r in caplog.records] == [True]
    ex = runtime.ledger.get("default", "e1")
    assert ex.fields["releasedStatus"] == "accepted"
    # emitted again (a redelivered task): the row again, never the release
    assert executions.emit_outcome(runtime, ex) is False
    assert released_statuses(runtime) == ["accepted"]
    assert [r["values"]["Status"] for r in stream(runtime, "status")] == ["accepted", "accepted"]


def test_an_outcome_read_before_the_execution_moved_releases_what_it_is_now(runtime, template_id):
    """The script is guarded by the status and updatedAt the release was built from: a stale
    read falls back to release_once, which decides on the hash as it is."""
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.FAILED, error="first")
    stale = runtime.ledger.get("default", "e1")
    assert runtime.ledger.reopen("default", "e1")  # a replay: queued again, nothing to release
    assert executions.emit_outcome(runtime, stale) is False
    assert released_statuses(runtime) == []
    runtime.ledger.transition("default", "e1", State.FAILED, error="second")
    stale = runtime.ledger.get("default", "e1")
    runtime.ledger.update("default", "e1", lastError="x")  # same status, newer updatedAt
    assert executions.emit_outcome(runtime, stale) is True
    assert released_statuses(runtime) == ["failed"]
    assert stream(runtime, "release")[0]["data"]["error"] == "second"


def test_an_expired_execution_releases_nothing(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A", releaseEventDefinitionKey="K")
    runtime.ledger.transition("default", "e1", State.FAILED)
    ex = runtime.ledger.get("default", "e1")
    runtime.redis.zadd("rsf:default:release-due", {"e1": 1})
    runtime.redis.delete("rsf:default:exec:e1")
    assert executions.emit_outcome(runtime, ex) is False
    assert released_statuses(runtime) == [] and runtime.redis.zcard("rsf:default:release-due") == 0


# --- the render's one read and its parsed templates ---


def test_render_sees_a_template_updated_since_the_last_render(runtime, template_id):
    for execution in ("e1", "e2"):
        claim(runtime, execution, templateId=template_id, subscriptionId="s1", FirstName="A")
    assert executions.render_step(runtime, "default", "e1") is True
    update_template(runtime.redis, "default", template_id, {**TEMPLATE, "title": "Hello {{FirstName}}"})
    assert executions.render_step(runtime, "default", "e2") is True
    titles = [json.loads(runtime.ledger.get("default", e).fields["event"])["title"] for e in ("e1", "e2")]
    assert titles == ["Hi A", "Hello A"]


def test_an_execution_without_the_template_field_reads_the_template_by_its_args(runtime, template_id):
    """Executions claimed before the `templateId` field existed still render."""
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A")
    runtime.redis.hdel("rsf:default:exec:e1", "templateId")
    assert executions.render_step(runtime, "default", "e1") is True


def test_a_finished_execution_rendered_again_only_re_emits_its_row(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, subscriptionId="s1", FirstName="A")
    executions.finish(runtime, "default", "e1", State.NO_SUBSCRIPTION, "none")
    assert executions.render_step(runtime, "default", "e1") is False
    assert [r["values"]["Status"] for r in stream(runtime, "status")] == ["no_subscription"] * 2
    assert executions.render_step(runtime, "default", "gone") is False  # not in the ledger


# --- flush slots in one script ---


def test_flush_slots_are_taken_for_kinds_with_a_backlog_once(runtime):
    kinds = [OutboxKind.STATUS_ROWS, OutboxKind.RELEASES]
    assert claim_flush_slots(runtime, "default", kinds) == []  # nothing to flush: no slot taken
    runtime.outbox("default", OutboxKind.RELEASES).append({"x": 1})
    assert claim_flush_slots(runtime, "default", kinds) == [OutboxKind.RELEASES]
    assert claim_flush_slots(runtime, "default", kinds) == []  # the flush is scheduled already
    assert claim_flush_slot(runtime, "default", OutboxKind.RELEASES) is False  # the same slot
    runtime.outbox("default", OutboxKind.STATUS_ROWS).append({"x": 1})
    assert claim_flush_slots(runtime, "default", kinds) == [OutboxKind.STATUS_ROWS]
    assert 0 < runtime.redis.pttl("rsf:default:flush-scheduled:status") <= 1000
    assert claim_flush_slots(runtime, "default", []) == []


def test_a_slot_seen_taken_is_asked_about_again_once_it_ends(runtime):
    kinds = [OutboxKind.STATUS_ROWS]
    runtime.outbox("default", OutboxKind.STATUS_ROWS).append({"x": 1})
    assert claim_flush_slot(runtime, "default", OutboxKind.STATUS_ROWS, delay=0.2)  # another process
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == []  # seen taken for ~0.2 s
    commands = []
    runtime.redis.register_script = lambda *a: commands.append(a) or pytest.fail("asked again")
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == []  # not asked: still taken
    del runtime.redis.register_script
    time.sleep(0.25)
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == [OutboxKind.STATUS_ROWS]
    time.sleep(0.1)
    assert claim_flush_slots(runtime, "default", kinds, delay=0.05) == [OutboxKind.STATUS_ROWS]


# --- the batch's current rows ---


def test_current_rows_are_read_for_a_batch_and_an_expired_one_keeps_its_row(runtime, template_id):
    claim(runtime, "e1", templateId=template_id, FirstName="A")
    runtime.ledger.transition("default", "e1", State.FAILED, error="boom")
    buffered = [
        {"keys": {"ContactKey": "C1", "ExecutionId": "e1"}, "values": {"Status": "queued"}},
        {"keys": {"ContactKey": "C9", "ExecutionId": "gone"}, "values": {"Status": "accepted"}},
    ]
    current = executions.current_status_rows(runtime, "default", buffered)
    assert current[0] == executions.status_row(runtime.ledger.get("default", "e1"))
    assert current[0]["values"]["Status"] == "failed" and current[1] == buffered[1]


# --- fast paths of pure functions ---


def _clean_text_reference(text: str, keep_newlines: bool = False) -> str:
    """clean_text before its fast path (character by character)."""
    import unicodedata

    if keep_newlines:
        text = LINE_BREAKS.sub("\n", text)
    out = []
    for ch in text:
        if ch.isascii() and ch.isprintable():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category in ("Cf", "Cs") and ch not in KEEP_FORMAT:
            continue
        else:
            out.append(ch)
    return "".join(out)


def test_clean_text_fast_path_changes_nothing():
    rng = random.Random(14)
    alphabet = "ab Z~!\t\n\r\x00\x7f\x85\u2028\u202e\u200d\u200b\ufeffé😀"
    samples = ["", "plain text", "two\nlines", "crlf\r\nline", "tab\there"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(2000)]
    for text in samples:
        for keep in (False, True):
            assert clean_text(text, keep) == _clean_text_reference(text, keep), (text, keep)


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
