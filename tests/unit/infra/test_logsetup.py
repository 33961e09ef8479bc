"""Logging of every process (pipeline.infra.logsetup): JSON lines or text, the context fields, the
redaction of emails and secrets on every line, the web tier's request ids and accepted-request
lines, the Celery task context, gunicorn's access log."""

import datetime
import io
import json
import logging
import re
import time

import jwt
import pytest
from gunicorn.config import Config

from pipeline.infra import logsetup, queues
from pipeline.infra.logsafe import redact
from pipeline.settings import load_settings
from pipeline.stores.ledger import execution_id
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.logs import RedactingGunicornLogger
from pipeline.web.webhook_auth import signature_header
from tasks.base import _bind_task_context, _unbind_task_context, celery_process, task_log_context
from tests.unit.conftest import ENV, JWT_SECRET
from tests.unit.samples import SUBSCRIBE

EMAIL = "jane.doe@example.com"
WEBHOOK_SECRET = "unit-webhook-secret-0123456789abcdefghij"


def configured(settings, process="worker", log_format="json"):
    """The process's logging as configure_logging sets it up, written to a buffer."""
    buffer = io.StringIO()
    settings = load_settings({**ENV, "LOG_FORMAT": log_format}) if log_format != "json" else settings
    handler = logsetup.configure_logging(settings, process, stream=buffer, force=True)
    assert handler is not None
    return buffer


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(buffer):
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_base_fields_and_the_context(settings):
    buffer = configured(settings, "worker")
    log = logging.getLogger("pipeline.test")
    with logsetup.log_context(tenant="acme", executionId="ex-1", taskId="t-1", task="rsf.x", stage="render"):
        log.info("rendered %s", "ok")
    log.warning("no context")
    first, second = lines(buffer)
    assert (
        first["message"] == "rendered ok" and first["level"] == "INFO" and first["logger"] == "pipeline.test"
    )
    assert first["process"] == "worker"
    assert datetime.datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    assert {k: first[k] for k in ("tenant", "executionId", "taskId", "task", "stage")} == {
        "tenant": "acme",
        "executionId": "ex-1",
        "taskId": "t-1",
        "task": "rsf.x",
        "stage": "render",
    }
    assert second["level"] == "WARNING" and "tenant" not in second and "executionId" not in second


def test_an_explicit_extra_wins_over_the_context(settings):
    buffer = configured(settings)
    with logsetup.log_context(tenant="acme"):
        logging.getLogger("t").info("x", extra={"tenant": "other", "eventId": "ev-1"})
    (line,) = lines(buffer)
    assert line["tenant"] == "other" and line["eventId"] == "ev-1"


def test_text_mode_is_one_readable_line_with_the_context(settings):
    buffer = configured(settings, "beat", log_format="text")
    with logsetup.log_context(tenant="acme", eventId="ev-9"):
        logging.getLogger("pipeline.test").info("hello %s", EMAIL)
    text = buffer.getvalue().strip()
    assert " INFO beat pipeline.test [tenant=acme eventId=ev-9]: hello ja***@ex***" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_unknown_format_process_or_context_field_is_refused(settings):
    with pytest.raises(ValueError):
        logsetup.formatter("web", "xml")
    with pytest.raises(ValueError):
        logsetup.formatter("gui")
    with pytest.raises(TypeError):
        logsetup.bind(tenantt="acme")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        load_settings({**ENV, "LOG_FORMAT": "yaml"})


def test_emails_are_masked_in_the_message_its_args_a_traceback_and_extras(settings):
    buffer = configured(settings)
    log = logging.getLogger("pipeline.journeys.render")
    log.warning("start: " + repr(EMAIL) + " is not an ISO 8601 date-time")  # noqa: G003 - as render errors
    log.info("contact %s", EMAIL)
    try:
        raise ValueError(f"bad value {EMAIL}")
    except ValueError:
        log.exception("render failed")
    log.info("x", extra={"contact": EMAIL, "data": {"args": [EMAIL], "return_value": f"{{'to': '{EMAIL}'}}"}})
    out = buffer.getvalue()
    assert EMAIL not in out and "jane.doe" not in out
    parsed = lines(buffer)
    assert parsed[0]["message"] == "start: 'ja***@ex***' is not an ISO 8601 date-time"
    assert parsed[1]["message"] == "contact ja***@ex***"
    assert "ValueError: bad value ja***@ex***" in parsed[2]["exception"]
    assert parsed[3]["contact"] == "ja***@ex***" and parsed[3]["data"]["args"] == ["ja***@ex***"]


def test_tenant_secrets_and_tokens_are_removed(settings, runtime):
    buffer = configured(settings)  # the settings' tenant: its JWT and client secrets are known
    log = logging.getLogger("pipeline.clients")
    log.error("token call failed: %s / %s", settings.tenants["default"].rokt_client_secret, JWT_SECRET)
    stored = "registry-tenant-sfmc-client-secret-42"
    log.error("refused %s", stored)  # not known yet: a registry tenant this process never used
    logsetup.remember_tenant_secrets(load_settings({**ENV, "SFMC_CLIENT_SECRET": stored}).tenants["default"])
    log.error("refused %s", stored)
    token = jwt.encode({"sub": "x"}, "k", algorithm="HS256")
    log.error("sent Authorization: Bearer abc.def-123 with body %s", f"client_secret={stored[:-2]}&a=1")
    log.error("payload %s", token)
    out = lines(buffer)
    assert out[0]["message"] == "token call failed: [redacted] / [redacted]"
    assert stored in out[1]["message"] and out[2]["message"] == "refused [redacted]"
    assert out[3]["message"] == "sent Authorization: [redacted] with body client_secret=[redacted]&a=1"
    assert out[4]["message"] == "payload [redacted]"


def test_path_secrets_are_redacted_by_the_shared_function():
    assert redact("POST /t/a/webhooks/rokt/s3cr3t?x=1 200") == "POST /t/a/webhooks/rokt/[redacted]?x=1 200"


def test_every_handler_sees_redacted_records_even_one_added_later(settings):
    configured(settings)
    late = logging.StreamHandler(io.StringIO())
    late.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("pipeline.late")
    logger.addHandler(late)
    logger.propagate = False
    try:
        logger.warning("to %s", EMAIL)
    finally:
        logger.removeHandler(late)
        logger.propagate = True
    assert late.stream.getvalue().strip() == "to ja***@ex***"


def test_a_record_made_elsewhere_is_redacted_by_the_root_handler_filter(settings):
    buffer = configured(settings)
    record = logging.makeLogRecord({"name": "remote", "levelno": 40, "levelname": "ERROR", "msg": EMAIL})
    logging.getLogger("remote").handle(record)
    assert lines(buffer)[0]["message"] == "ja***@ex***"


def test_configure_logging_runs_once_per_process(settings):
    configured(settings)
    assert logsetup.configure_logging(settings, "web") is None
    assert logsetup.configured_process() == "worker"


# -- the web tier ---------------------------------------------------------------------------
def app_client(settings, fake_redis):
    runtime = Runtime(load_settings({**ENV, "ROKT_WEBHOOK_SECRET": WEBHOOK_SECRET}), fake_redis)
    return create_app(runtime, enqueue_webhook=lambda *_: None).test_client()


def test_request_id_is_echoed_when_sane_else_a_new_one(settings, fake_redis):
    client = app_client(settings, fake_redis)
    url = "/t/default/activity/config.json"
    assert client.get(url, headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get(url).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated
    assert client.get(url).headers["X-Request-ID"] != generated, "a new one per request"
    for insane in ("x" * 129, "has space", "caf\u00e9", ""):
        answer = client.get(url, headers={"X-Request-ID": insane}).headers["X-Request-ID"]
        assert answer != insane and len(answer) == 32
    assert client.get("/nowhere", headers={"X-Request-ID": "r-404"}).headers["X-Request-ID"] == "r-404"


EXECUTE = {
    "inArguments": [{"contactKey": EMAIL}, {"templateId": "tpl-1"}, {"subscriptionId": "s-1"}],
    "outArguments": [{"roktStatus": ""}],
    "activityId": "act-1",
    "definitionInstanceId": "def-1",
    "keyValue": EMAIL,
    "journeyId": "j-1",
    "mode": 0,
}


def test_an_accepted_execute_logs_one_info_line_with_tenant_execution_and_request(settings, fake_redis):
    client = app_client(settings, fake_redis)
    buffer = configured(settings, "web")
    body = jwt.encode({**EXECUTE, "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    for attempt in ("r-1", "r-2"):  # Journey Builder's retry: a duplicate, accepted too
        answer = client.post(
            "/t/default/activity/execute",
            data=body,
            content_type="application/jwt",
            headers={"X-Request-ID": attempt},
        )
        assert answer.status_code == 200
    accepted = [line for line in lines(buffer) if line["message"].startswith("execute accepted")]
    assert [line["requestId"] for line in accepted] == ["r-1", "r-2"]
    assert [line["duplicate"] for line in accepted] == [False, True]
    for line in accepted:
        assert line["level"] == "INFO" and line["process"] == "web" and line["tenant"] == "default"
        assert line["executionId"] == execution_id("act-1", "def-1")
        assert line["contactKey"] == "ja***@ex***"
    assert EMAIL not in buffer.getvalue() and JWT_SECRET not in buffer.getvalue()
    assert logsetup.current_context() == {}  # nothing of a request outlives it


def test_a_refused_execute_logs_no_accepted_line(settings, fake_redis):
    client = app_client(settings, fake_redis)
    buffer = configured(settings, "web")
    body = jwt.encode({**EXECUTE, "exp": int(time.time()) + 60}, "wrong-secret-0123456789", algorithm="HS256")
    assert (
        client.post("/t/default/activity/execute", data=body, content_type="application/jwt").status_code
        == 401
    )
    assert not [line for line in lines(buffer) if "accepted" in line["message"]]


def test_an_accepted_webhook_logs_one_info_line_with_its_event_id(settings, fake_redis):
    client = app_client(settings, fake_redis)
    buffer = configured(settings, "web")
    raw = json.dumps(SUBSCRIBE).encode()
    headers = {"Content-Type": "application/json", "X-Rokt-Signature": signature_header(WEBHOOK_SECRET, raw)}
    assert client.post("/t/default/webhooks/rokt", data=raw, headers=headers).status_code == 200
    (line,) = [line for line in lines(buffer) if line["message"].startswith("webhook accepted")]
    assert line["level"] == "INFO" and line["tenant"] == "default" and line["eventId"] == SUBSCRIBE["eventId"]
    assert line["duplicate"] is False and line["requestId"]
    assert WEBHOOK_SECRET not in buffer.getvalue()


# -- Celery ---------------------------------------------------------------------------------
class FakeTask:
    name = queues.RENDER_TASK


def test_a_task_run_carries_its_context_and_leaves_none_behind(settings):
    buffer = configured(settings, "worker")
    _bind_task_context(task_id="task-1", task=FakeTask(), args=("acme", "ex-7"), kwargs={})
    logging.getLogger("pipeline.journeys.executions").info("working")
    _unbind_task_context(task_id="task-1")
    logging.getLogger("pipeline.journeys.executions").info("idle")
    working, idle = lines(buffer)
    assert {k: working.get(k) for k in ("tenant", "executionId", "taskId", "task", "stage")} == {
        "tenant": "acme",
        "executionId": "ex-7",
        "taskId": "task-1",
        "task": queues.RENDER_TASK,
        "stage": "render",
    }
    assert not {"tenant", "executionId", "taskId"} & set(idle)


def test_task_log_context_names_webhook_events_and_tenant_only_tasks():
    hook = task_log_context(queues.WEBHOOK_TASK, "t", [], {"tenant": "acme", "event_id": "ev-1"})
    assert hook["eventId"] == "ev-1" and hook["stage"] == "webhook" and hook["tenant"] == "acme"
    flush = task_log_context(queues.FLUSH_STATUS_TASK, "t", ["acme"], {})
    assert flush["tenant"] == "acme" and flush["stage"] == "record_status" and "executionId" not in flush
    assert task_log_context(queues.RECONCILE_TASK, "t", [], {})["tenant"] is None


def test_celery_process_is_beat_only_for_the_beat_command():
    assert celery_process(["celery", "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler"]) == "beat"
    assert celery_process(["celery", "-A", "tasks", "worker", "-Q", "rokt"]) == "worker"


# -- gunicorn -------------------------------------------------------------------------------
def test_gunicorn_access_lines_are_json_redacted_and_carry_the_request_id(settings, capsys):
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingGunicornLogger(cfg)

    class Resp:
        status = "200 OK"
        status_code = 200
        sent = 2
        headers = [("Content-Type", "application/json"), ("X-Request-ID", "req-42")]
        response_length = 2

    class Req:
        method = "POST"
        path = f"/t/a/webhooks/rokt/{WEBHOOK_SECRET}"
        query = ""
        uri = path
        version = (1, 1)
        headers = []

    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": Req.path,
        "PATH_INFO": Req.path,
        "QUERY_STRING": f"email={EMAIL}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    logger.access(Resp(), Req(), environ, datetime.timedelta(milliseconds=12))
    out = capsys.readouterr().out.strip()
    line = json.loads(out)
    assert line["process"] == "web" and line["logger"] == "gunicorn.access" and line["level"] == "INFO"
    assert line["requestId"] == "req-42" and line["status"] == 200 and line["method"] == "POST"
    assert line["path"] == "/t/a/webhooks/rokt/[redacted]" and line["durationMs"] == 12.0
    assert WEBHOOK_SECRET not in out and EMAIL not in out
