"""The webhook receiver and its signature rules, bodies it refuses (a JSON nested too deep), and log
redaction (no network)."""

import json
import logging
import time

import pytest

from pipeline.web import create_app
from pipeline.web.logs import RedactingGunicornLogger, RedactSecrets, redact
from pipeline.web.webhook_auth import signature_header, verify_header
from tests.unit.conftest import ENV
from tests.unit.samples import SUBSCRIBE
from tests.unit.web.signed import signed_webhook

SECRET = "unit-webhook-secret-0123456789abcdefghij"
PATH_TOKEN = "unit-webhook-path-token-0123456789abcdefgh"  # a bearer token of its own, not the HMAC key


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, tenant, event_id):
        self.calls.append((tenant, event_id))


@pytest.fixture
def hooks():
    return Recorder()


@pytest.fixture
def client(settings, fake_redis, hooks):
    from pipeline.settings import load_settings
    from pipeline.tenancy.handles import Runtime

    runtime = Runtime(
        load_settings({**ENV, "ROKT_WEBHOOK_SECRET": SECRET, "ROKT_WEBHOOK_PATH_TOKEN": PATH_TOKEN}),
        fake_redis,
    )
    return create_app(runtime, enqueue_webhook=hooks).test_client()


def post(client, envelope, *, header=True, timestamp=None, path="/t/default/webhooks/rokt", secret=SECRET):
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    headers = {"Content-Type": "application/json"}
    if header:
        headers["X-Rokt-Signature"] = signature_header(secret, body, timestamp)
    return client.post(path, data=body, headers=headers)


def test_signed_webhook_is_stored_once_and_enqueued(client, hooks):
    first = post(client, SUBSCRIBE)
    again = post(client, SUBSCRIBE)
    assert first.status_code == again.status_code == 200
    assert again.json == {"ok": True, "duplicate": True}
    assert hooks.calls == [("default", SUBSCRIBE["eventId"])]


def test_the_path_token_authenticates_and_the_hmac_key_in_the_path_does_not(client, hooks):
    response = post(client, SUBSCRIBE, header=False, path=f"/t/default/webhooks/rokt/{PATH_TOKEN}")
    assert response.status_code == 200 and len(hooks.calls) == 1
    keyed = post(client, SUBSCRIBE, header=False, path=f"/t/default/webhooks/rokt/{SECRET}")
    assert keyed.status_code == 401 and keyed.json == {
        "error": "unauthorized",
        "message": "authentication failed",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"header": False},
        {"secret": "wrong-secret"},
        {"timestamp": -302},
        {"timestamp": 302},
        {"header": False, "path": "/t/default/webhooks/rokt/wrong-secret"},
    ],
    ids=["missing", "wrong-secret", "stale", "future", "wrong-path-secret"],
)
def test_unauthenticated_webhooks_get_401_and_nothing_is_stored(client, hooks, fake_redis, kwargs):
    if "timestamp" in kwargs:  # an offset from now, beyond the 5-minute window
        kwargs = {**kwargs, "timestamp": int(time.time()) + kwargs["timestamp"]}
    response = post(client, SUBSCRIBE, **kwargs)
    assert response.status_code == 401 and response.is_json
    assert hooks.calls == [] and not fake_redis.keys("rsf:default:webhook:*")


def test_a_tampered_body_fails_the_signature(client, hooks):
    body = json.dumps(SUBSCRIBE).encode()
    header = signature_header(SECRET, body)
    response = client.post(
        "/t/default/webhooks/rokt", data=body.replace(b"fan@", b"foe@"), headers={"X-Rokt-Signature": header}
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({k: v for k, v in SUBSCRIBE.items() if k != "eventId"}, "eventId"),
        ({**SUBSCRIBE, "eventId": 12}, "eventId"),
        ({**SUBSCRIBE, "eventDetails": "x"}, "eventDetails"),
        ({**SUBSCRIBE, "eventDetails": {"subscription": {}}}, "eventDetails"),
        (
            {
                **SUBSCRIBE,
                "eventType": "SubscriptionEventAdded",
                "eventDetails": {"subscription": {"calendarSubscriptionId": "s"}},
            },
            "eventDetails",
        ),
        ([1, 2], "_schema"),
    ],
)
def test_malformed_webhooks_get_400_naming_the_field(client, hooks, envelope, field):
    response = post(client, envelope)
    assert response.status_code == 400
    assert field in response.json["fields"]
    assert hooks.calls == []


def _with_subscription(**changes):
    details = SUBSCRIBE["eventDetails"]
    return {**SUBSCRIBE, "eventDetails": {**details, "subscription": {**details["subscription"], **changes}}}


@pytest.mark.parametrize(
    ("envelope", "where"),
    [
        pytest.param(
            _with_subscription(subscriberId='=HYPERLINK("http://x")'), "subscriberId", id="subscriber"
        ),
        pytest.param(_with_subscription(emailAddress="@SUM(1)@example.com"), "emailAddress", id="email"),
        pytest.param(
            _with_subscription(calendarSubscriptionId="+cmd|' /C calc'!A0"),
            "calendarSubscriptionId",
            id="sub-id",
        ),
        pytest.param(_with_subscription(calendarId="-2+3"), "calendarId", id="calendar"),
        pytest.param({**SUBSCRIBE, "eventId": "\t=1"}, "eventId", id="event-id"),
        pytest.param(
            {**SUBSCRIBE, "eventDetails": {**SUBSCRIBE["eventDetails"], "accountId": "=1"}},
            "accountId",
            id="account",
        ),
    ],
)
def test_an_identity_that_would_start_like_a_formula_is_refused_naming_it(client, hooks, envelope, where):
    """Identities reach SFMC verbatim (they must match byte for byte), so they are refused, not
    rewritten; nothing is claimed or enqueued."""
    response = post(client, envelope)
    assert response.status_code == 400, response.json
    assert where in json.dumps(response.json["fields"])
    assert "formula" in json.dumps(response.json["fields"])
    assert hooks.calls == []
    assert (
        post(client, _with_subscription(subscriberId="+61 400 123 456")).status_code == 200
    )  # a phone number


def test_not_json_is_400_and_oversized_is_413(client):
    assert post(client, b"{nope").json["error"] == "invalid_json"
    big = post(client, b"x" * (64 * 1024 + 1))
    assert big.status_code == 413 and big.is_json


def test_unknown_event_types_are_acknowledged_and_ignored(client, hooks):
    response = post(client, {**SUBSCRIBE, "eventType": "SomethingNew"})
    assert response.status_code == 200 and response.json["ignored"] is True
    assert hooks.calls == []


def test_an_unknown_tenant_answers_like_a_wrong_secret(client):
    unknown = post(client, SUBSCRIBE, path="/t/nobody/webhooks/rokt")
    wrong = post(client, SUBSCRIBE, secret="wrong-secret-0123456789abcdefghijklmn")
    assert unknown.status_code == wrong.status_code == 401 and unknown.get_data() == wrong.get_data()


def test_a_deeply_nested_authenticated_body_is_400_not_503(client, hooks):
    depth = 30_000  # json.loads raised RecursionError: a 503 that Rokt retried for 30 minutes
    body = b'{"eventId":"e-deep","eventType":"Subscribe","eventDetails":' + b"[" * depth + b"]" * depth + b"}"
    assert len(body) <= 64 * 1024  # under the cap: only the nesting is wrong
    response = post(client, body)
    assert response.status_code == 400 and response.json["error"] == "invalid_json"
    assert hooks.calls == []


def test_enqueue_failure_answers_503_so_rokt_retries(settings, fake_redis):
    from pipeline.settings import load_settings
    from pipeline.tenancy.handles import Runtime

    def broken(_tenant, _event):
        raise ConnectionError("broker down")

    runtime = Runtime(load_settings({**ENV, "ROKT_WEBHOOK_SECRET": SECRET}), fake_redis)
    client = create_app(runtime, enqueue_webhook=broken).test_client()
    assert post(client, SUBSCRIBE).status_code == 503
    working = Recorder()
    retry = post(create_app(runtime, enqueue_webhook=working).test_client(), SUBSCRIBE)
    assert retry.status_code == 200 and len(working.calls) == 1


def test_signature_header_parsing():
    body = b"{}"
    assert verify_header(signature_header("s", body), body, "s") is None
    assert "valid t=" in verify_header("v1=abc", body, "s")
    stamp = int(time.time())
    assert (
        verify_header(f"t={stamp},v1=bad,{signature_header('s', body, stamp).split(',')[1]}", body, "s")
        is None
    )


def test_path_secrets_never_reach_a_log_line(caplog):
    assert (
        redact('"POST /t/acme/webhooks/rokt/s3cr3t HTTP/1.1" 200')
        == '"POST /t/acme/webhooks/rokt/[redacted] HTTP/1.1" 200'
    )
    logger = logging.getLogger("werkzeug.test")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO):
        logger.info('"%s %s" %s', "POST", "/t/acme/webhooks/rokt/s3cr3t?x=1", 200)
    assert "s3cr3t" not in caplog.text and "[redacted]" in caplog.text


def test_gunicorn_access_log_atoms_are_redacted():
    class Cfg:
        access_log_format = "%(r)s"
        errorlog = "-"
        accesslog = None
        loglevel = "info"
        syslog = False
        capture_output = False
        logconfig = None
        logconfig_dict = {}
        logconfig_json = None
        disable_redirect_access_to_syslog = False
        user = None
        group = None
        umask = 0
        env = {}
        worker_tmp_dir = None

    atoms = (
        RedactingGunicornLogger.atoms.__wrapped__
        if hasattr(RedactingGunicornLogger.atoms, "__wrapped__")
        else None
    )
    assert atoms is None  # nothing wrapped: the override itself is exercised below

    class Resp:
        status = "200 OK"
        sent = 2
        headers = []
        response_length = 2

    class Req:
        method = "POST"
        path = "/t/a/webhooks/rokt/s3cr3t"
        query = ""
        uri = path
        version = (1, 1)
        headers = []

    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": Req.path,
        "PATH_INFO": Req.path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    import datetime

    logger = RedactingGunicornLogger.__new__(RedactingGunicornLogger)
    logger.cfg = Cfg()
    result = RedactingGunicornLogger.atoms(logger, Resp(), Req(), environ, datetime.timedelta(seconds=0.01))
    assert "s3cr3t" not in json.dumps({k: str(v) for k, v in result.items()})


@pytest.mark.parametrize("depth", [40, 5000, 30000])
def test_a_deeply_nested_authenticated_webhook_is_400(parts, depth):
    _, client, _, hooks = parts
    body = (
        '{"eventId":"e-deep","eventType":"Subscribe","eventDetails":' + "[" * depth + "]" * depth + "}"
    ).encode()
    answer = signed_webhook(client, body=body)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_json"
    assert hooks.calls == []
