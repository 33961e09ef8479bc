"""The activity endpoints: execute (verify, validate, claim into the intake), config.json, validate,
the UI's files and settings.json with their framing policy; every bad input a JSON error."""

import json
import sys
import time

import fakeredis
import jwt
import pytest
import redis
from celery import Celery

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.journeys.templates import create_template
from pipeline.settings import load_settings
from pipeline.stores.ledger import event_id_for, execution_id
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import TenantStatus
from pipeline.web import create_app
from pipeline.web.activity import JOURNEY_STOPS_PENDING_MAX
from tests.unit.conftest import COMPLETE, ENV, JWT_SECRET
from tests.unit.web.signed import signed_webhook

PAYLOAD = {
    "inArguments": [{"contactKey": "C1"}, {"templateId": "tpl-1"}, {"subscriptionId": "s-1"}],
    "outArguments": [{"roktStatus": ""}],
    "activityId": "act-1",
    "definitionInstanceId": "def-1",
    "keyValue": "C1",
    "journeyId": "j-1",
    "mode": 0,
}
URL = "/t/default/activity/execute"


@pytest.fixture
def client(runtime):
    return create_app(runtime).test_client()


def signed(payload=PAYLOAD, secret=JWT_SECRET, algorithm="HS256", **claims):
    return jwt.encode({**payload, **claims}, secret, algorithm=algorithm)


def post(client, body, content_type="application/jwt", url=URL):
    return client.post(url, data=body, content_type=content_type)


def test_valid_execute_is_claimed_handed_to_the_intake_and_answered(client, intake, runtime, sent_tasks):
    response = post(client, signed(exp=int(time.time()) + 60))
    execution = execution_id("act-1", "def-1")
    assert response.status_code == 200
    assert response.json == {
        "roktStatus": "queued",
        "roktEventId": event_id_for(execution),
        "executionId": execution,
    }
    assert intake.calls == [("default", execution)]
    assert sent_tasks == []  # execute never publishes: the pump does
    stored = runtime.ledger.get("default", execution)
    assert stored.status == "queued"
    assert stored.contact_key == "C1"
    assert stored.args == {"contactKey": "C1", "templateId": "tpl-1", "subscriptionId": "s-1"}


def test_jb_retry_gets_the_same_answer_and_enqueues_nothing(client, intake):
    first = post(client, signed())
    second = post(client, signed(iat=int(time.time())))  # a retry is re-signed by JB
    assert second.status_code == 200
    assert second.json == first.json
    assert len(intake.calls) == 1


def test_distinct_definition_instances_are_distinct_executions(client, intake):
    post(client, signed())
    post(client, signed({**PAYLOAD, "definitionInstanceId": "def-2"}))
    assert len({call[1] for call in intake.calls}) == 2


def _alg_none_token():
    import base64

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(PAYLOAD)}."


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(__import__("json").dumps(PAYLOAD), "application/json", id="unsigned-json"),
        pytest.param(
            signed(secret="another-secret-0123456789abcdef0123"), "application/jwt", id="wrong-secret"
        ),
        pytest.param(_alg_none_token(), "application/jwt", id="alg-none"),
        pytest.param(
            signed(secret=JWT_SECRET * 2, algorithm="HS512"), "application/jwt", id="other-algorithm"
        ),
        pytest.param(signed(exp=int(time.time()) - 3600), "application/jwt", id="expired"),
        pytest.param(b"\xff\xfe", "application/jwt", id="binary"),
        pytest.param("", "application/jwt", id="empty"),
    ],
)
def test_unauthenticated_bodies_get_401_json_and_nothing_is_enqueued(client, intake, body, content_type):
    response = post(client, body, content_type)
    assert response.status_code == 401  # every failure alike; the reason is only logged
    assert response.json == {"error": "unauthorized", "message": "authentication failed"}
    assert intake.calls == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"activityId": None}, "activityId"),
        ({"definitionInstanceId": ""}, "definitionInstanceId"),
        ({"keyValue": 42}, "keyValue"),
        ({"inArguments": "nope"}, "inArguments"),
        ({"inArguments": [{"contactKey": "C1"}]}, "inArguments"),
    ],
)
def test_malformed_payload_gets_400_naming_the_field(client, intake, change, field):
    payload = {k: v for k, v in {**PAYLOAD, **change}.items() if v is not None}
    response = post(client, signed(payload))
    assert response.status_code == 400
    assert field in response.json["fields"]
    assert intake.calls == []


@pytest.mark.parametrize(
    "key", ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+cmd|' /C calc'!A0", "-1+A1", "\tC1", "\rC1"]
)
def test_a_contact_key_that_would_start_like_a_formula_is_refused_at_the_door(client, intake, key):
    """The status row carries the contact key verbatim (its primary key), so it is refused, not
    rewritten: Journey Builder records the 400 as that contact's error."""
    response = post(client, signed({**PAYLOAD, "keyValue": key}))
    assert response.status_code == 400
    assert "formula" in response.json["fields"]["keyValue"][0]
    assert intake.calls == []


@pytest.mark.parametrize("key", ["+14155550123", "+44 20 7946 0958", "-42", "C=1", "a@b.example"])
def test_phone_numbers_and_keys_with_formula_characters_inside_are_accepted(client, key):
    assert post(client, signed({**PAYLOAD, "keyValue": key})).status_code == 200


def test_missing_template_id_is_named(client):
    response = post(client, signed({**PAYLOAD, "inArguments": [{"contactKey": "C1"}]}))
    assert response.json["fields"] == {
        "inArguments": {"templateId": ["required: the event template to send"]}
    }


def test_unknown_and_unconfigured_tenants_answer_like_a_wrong_jwt(client):
    unknown = post(client, signed(), url="/t/nobody/activity/execute")
    wrong = post(client, signed(secret="another-secret-0123456789abcdef0123"))
    unconfigured = post(app_with({"JB_JWT_SECRET": ""}), signed())
    assert unknown.status_code == wrong.status_code == unconfigured.status_code == 401
    assert unknown.get_data() == wrong.get_data() == unconfigured.get_data()


def test_a_jwt_header_nested_deep_is_401_not_503(client, intake):
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(b'{"alg":"HS256","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}")
    response = post(client, f"{header}.{b64(b'{}')}.c2ln")
    assert response.status_code == 401 and intake.calls == []


def test_oversized_body_is_413_json(client, intake):
    response = post(client, "x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert response.is_json
    assert intake.calls == []


def test_execute_answers_200_while_the_broker_is_down(runtime, intake, monkeypatch):
    def broker_down(*_args, **_kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(Celery, "send_task", broker_down)  # any publish from this process fails
    response = post(create_app(runtime).test_client(), signed())
    assert response.status_code == 200
    execution = execution_id("act-1", "def-1")
    assert runtime.ledger.get("default", execution).status == "queued"
    assert intake.calls == [("default", execution)]  # the pump publishes it once the broker is back


class DownRedis:
    def __getattr__(self, name):
        def fail(*_args, **_kwargs):
            raise redis.ConnectionError("down")

        return fail


def test_redis_down_gives_503_with_retry_after(settings):
    runtime = Runtime(settings, DownRedis())
    client = create_app(runtime).test_client()
    response = post(client, signed())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    health = client.get("/healthz")
    assert health.status_code == 503


def test_healthz_ok(client):
    assert client.get("/healthz").json == {"status": "ok", "redis": "ok"}


def test_config_json_points_at_public_base_url(client):
    config = client.get("/t/default/activity/config.json").json
    execute = config["arguments"]["execute"]
    assert execute["url"] == "http://127.0.0.1:8000/t/default/activity/execute"
    assert execute["useJwt"] is True
    assert 1000 <= execute["timeout"] <= 100000 and 0 <= execute["retryCount"] <= 5
    assert 1 <= execute["concurrentRequests"] <= 50
    assert config["configurationArguments"]["validate"]["url"].endswith("/activity/validate")
    out = config["schema"]["arguments"]["execute"]["outArguments"][0]
    assert set(out) == {"roktStatus", "roktEventId", "executionId"}


def test_lifecycle_calls_answer_200_json(client):
    for step in ("save", "publish"):
        response = client.post(f"/t/default/activity/{step}", json={"activityObjectID": "x"})
        assert response.status_code == 200 and response.json == {"ok": True}


ACTIVITY = "2ad157c6-d111-4124-b996-4a3a48b2b168"
DEFINITION = "c0b22824-c4db-441b-a8e2-7aea9bfca439"
STOP = {"activityObjectID": ACTIVITY, "originalDefinitionId": DEFINITION, "interactionVersion": "2"}


def test_a_stop_of_an_activity_the_ledger_knows_is_looked_into_once(client, runtime, monkeypatch):
    asked = []
    monkeypatch.setattr("pipeline.infra.dispatch.enqueue_journey_stopped", lambda *args: asked.append(args))
    before = set(runtime.redis.keys("*"))
    assert client.post("/t/default/activity/stop", json=STOP).json == {"ok": True}
    assert asked == [] and set(runtime.redis.keys("*")) == before  # unknown activity: nothing written
    runtime.redis.hset(keys.activity_counts("default", ACTIVITY), "received", 1)
    for _ in range(3):  # Journey Builder calling again: one look-up
        assert client.post("/t/default/activity/stop", json=STOP).status_code == 200
    assert asked == [("default", ACTIVITY, DEFINITION, 2)]


def test_made_up_stops_of_a_known_activity_wait_in_a_bounded_number(client, runtime, monkeypatch):
    asked = []
    monkeypatch.setattr("pipeline.infra.dispatch.enqueue_journey_stopped", lambda *args: asked.append(args))
    runtime.redis.hset(keys.activity_counts("default", ACTIVITY), "received", 1)
    for version in range(1, 50):
        client.post("/t/default/activity/stop", json={**STOP, "interactionVersion": str(version)})
    assert len(asked) == JOURNEY_STOPS_PENDING_MAX
    assert runtime.redis.hlen(keys.journey_stops("default", ACTIVITY)) == JOURNEY_STOPS_PENDING_MAX


@pytest.mark.parametrize(
    "change, field",
    [
        ({"activityObjectID": "x"}, "activityObjectID"),
        ({"originalDefinitionId": "not-a-guid"}, "originalDefinitionId"),
        ({"interactionVersion": "two"}, "interactionVersion"),
    ],
)
def test_a_stop_with_a_bad_id_is_400_naming_the_field(client, change, field):
    response = client.post("/t/default/activity/stop", json={**STOP, **change})
    assert response.status_code == 400 and field in response.json["fields"]


def test_validate_checks_the_named_template(client, runtime):
    body = {"arguments": {"execute": {"inArguments": [{"templateId": "tpl-missing"}]}}}
    response = client.post("/t/default/activity/validate", json=body)
    assert response.status_code == 400
    assert "templateId" in response.json["fields"]
    template = create_template(
        runtime.redis, "default", {"title": "t", "start": "2026-01-01T00:00:00", "timezone": "UTC"}
    )
    body["arguments"]["execute"]["inArguments"] = [{"templateId": template["id"]}]
    assert client.post("/t/default/activity/validate", json=body).status_code == 200


# --- the release options of execute (docs/http-contract.md: releaseOn, releaseAfterSeconds) ---


def with_args(**args):
    return {**PAYLOAD, "inArguments": [*PAYLOAD["inArguments"], *({k: v} for k, v in args.items())]}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"releaseOn": "delivered"}, "releaseOn"),
        ({"releaseOn": 1}, "releaseOn"),
        ({"releaseAfterSeconds": "-1"}, "releaseAfterSeconds"),
        ({"releaseAfterSeconds": "1.5"}, "releaseAfterSeconds"),
        ({"releaseAfterSeconds": "an hour"}, "releaseAfterSeconds"),
        ({"releaseAfterSeconds": -5}, "releaseAfterSeconds"),
        ({"releaseAfterSeconds": True}, "releaseAfterSeconds"),
    ],
)
def test_bad_release_options_get_400_naming_the_field(client, intake, args, field):
    response = post(client, signed(with_args(**args)))
    assert response.status_code == 400
    assert list(response.json["fields"]["inArguments"]) == [field]
    assert intake.calls == []


@pytest.mark.parametrize(
    "args",
    [
        {"releaseOn": "accepted", "releaseAfterSeconds": "3600"},
        {"releaseOn": "confirmed", "releaseAfterSeconds": "0"},
        {"releaseOn": "confirmed", "releaseAfterSeconds": 120},
        {"releaseOn": "", "releaseAfterSeconds": ""},  # blank: the defaults
    ],
)
def test_valid_release_options_are_accepted_and_stored(client, runtime, args):
    response = post(client, signed(with_args(**args)))
    assert response.status_code == 200
    stored = runtime.ledger.get("default", execution_id("act-1", "def-1"))
    assert {k: stored.args[k] for k in args} == args


# --- the UI, its files and settings.json (docs/http-contract.md) ---

JB = "https://jbinteractions.*.marketingcloudapps.com"


@pytest.fixture
def ui_root(tmp_path, monkeypatch):
    """A static root of our own (the real index.html is another change's), with decoys named
    like the generated files to prove the generated answers win."""
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>activity</title>")
    (tmp_path / "running.html").write_text("<!doctype html><title>running</title>")
    (tmp_path / "js" / "activity.js").write_text("console.log('ok')")
    (tmp_path / "settings.json").write_text('{"decoy": true}')
    (tmp_path / "config.json").write_text('{"decoy": true}')
    # (by module object: `pipeline.web.activity` the attribute is the blueprint)
    monkeypatch.setattr(sys.modules["pipeline.web.activity"], "STATIC_ROOT", tmp_path)
    return tmp_path


def app_with(settings_env):
    runtime = Runtime(load_settings({**ENV, **settings_env}), fakeredis.FakeRedis(decode_responses=True))
    return create_app(runtime).test_client()


@pytest.mark.parametrize("path", ["/t/default/activity/", "/t/default/activity/index.html"])
def test_the_ui_is_served_at_the_endpoint_root_and_as_index_html(client, ui_root, path):
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.data == (ui_root / "index.html").read_bytes()
    assert "no-cache" in page.headers["Cache-Control"] or "max-age=0" in page.headers["Cache-Control"]


def test_the_ui_of_an_unknown_tenant_is_404_json(client, ui_root):
    answer = client.get("/t/nobody/activity/")
    assert answer.status_code == 404 and answer.json["error"] == "not_found"


def test_settings_json_names_tenant_api_and_allowed_origins(client, ui_root):
    answer = client.get("/t/default/activity/settings.json")
    assert answer.status_code == 200
    assert answer.json == {"tenant": "default", "apiBase": "/t/default/api", "allowedOrigins": [JB]}
    assert client.get("/t/default/activity/config.json").json.get("decoy") is None


def test_settings_json_follows_the_setting(ui_root):
    client = app_with({"JB_ALLOWED_ORIGINS": f"{JB},http://127.0.0.1:*"})
    assert client.get("/t/default/activity/settings.json").json["allowedOrigins"] == [
        JB,
        "http://127.0.0.1:*",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/t/default/activity/",
        "/t/default/activity/index.html",
        "/t/default/activity/running.html",
        "/t/default/activity/js/activity.js",
        "/t/default/activity/settings.json",
        "/t/default/activity/config.json",
        "/t/default/activity/js/missing.js",
    ],
)
def test_every_ui_answer_may_be_framed_by_journey_builder_only(ui_root, path):
    client = app_with({"JB_ALLOWED_ORIGINS": f"{JB}, http://127.0.0.1:*"})
    answer = client.get(path)
    assert answer.headers["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors https://*.marketingcloudapps.com http://127.0.0.1:*"
    )
    assert "X-Frame-Options" not in answer.headers


def test_a_page_served_while_the_registry_is_away_is_still_framed_by_journey_builder_only(
    ui_root, monkeypatch
):
    """The framing hook reads the tenant; a Redis that fails there leaves the answer with the
    policy of an unknown stack, never without one (and never a failed after_request)."""
    runtime = Runtime(
        load_settings({**ENV, "JB_ALLOWED_ORIGINS": JB}), fakeredis.FakeRedis(decode_responses=True)
    )
    client = create_app(runtime).test_client()

    def away(name):
        raise redis.ConnectionError("Redis away")

    monkeypatch.setattr(runtime.registry, "get", away)
    answer = client.get("/t/default/activity/js/activity.js")
    assert answer.headers["Content-Security-Policy"].endswith(
        "; frame-ancestors https://*.marketingcloudapps.com"
    )


def test_json_answers_of_execute_and_lifecycle_calls_carry_no_framing_policy(client, runtime):
    answers = [
        post(client, signed()),
        client.post("/t/default/activity/save", json={}),
        client.post("/t/default/activity/validate", json={}),
    ]
    for answer in answers:
        assert answer.is_json
        assert "Content-Security-Policy" not in answer.headers and "X-Frame-Options" not in answer.headers


# --- config.json (issue item 6) ---


def test_config_json_declares_every_fixed_in_argument_in_its_schema(client):
    config = client.get("/t/default/activity/config.json").json
    declared = config["schema"]["arguments"]["execute"]["inArguments"]
    assert [next(iter(item)) for item in declared] == [
        "contactKey",
        "templateId",
        "subscriptionId",
        "releaseEventDefinitionKey",
        "releaseOn",
        "releaseAfterSeconds",
    ]
    for item in declared:
        ((name, spec),) = item.items()
        assert spec["direction"] == "in" and spec["access"] == "visible" and spec["dataType"] == "Text"
        assert spec["isNullable"] is (name not in ("contactKey", "templateId")), name


def test_config_json_uses_a_three_step_modal_and_a_running_view(client):
    config = client.get("/t/default/activity/config.json").json
    interfaces = config["userInterfaces"]
    assert set(interfaces) == {"configModal", "runningHover", "runningModal"}
    assert [step["key"] for step in config["wizardSteps"]] == ["event", "fields", "review"]
    assert all(step["label"] for step in config["wizardSteps"])
    base = "http://127.0.0.1:8000/t/default/activity/"
    assert interfaces["runningHover"]["url"] == base + "running.html"
    assert interfaces["runningModal"]["url"] == base + "running.html"
    assert config["lang"]["en-US"]["runningHoverButtonLabel"]
    assert config["arguments"]["execute"]["inArguments"] == [{"contactKey": "{{Contact.Key}}"}]


# --- validate (the saved configuration, when the body carries it) ---


def validate_body(*in_arguments):
    return {"arguments": {"execute": {"inArguments": list(in_arguments)}}}


@pytest.fixture
def template_id(runtime):
    return create_template(
        runtime.redis, "default", {"title": "t", "start": "2026-01-01T00:00:00", "timezone": "UTC"}
    )["id"]


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ([], set()),
        ([{"releaseOn": "confirmed"}, {"releaseAfterSeconds": "600"}], set()),
        ([{"releaseOn": "later"}], {"releaseOn"}),
        ([{"releaseOn": "accepted"}, {"releaseAfterSeconds": "-3"}], {"releaseAfterSeconds"}),
    ],
)
def test_validate_checks_the_release_options(client, template_id, extra, fields):
    body = validate_body({"contactKey": "{{Contact.Key}}"}, {"templateId": template_id}, *extra)
    response = client.post("/t/default/activity/validate", json=body)
    assert response.status_code == (400 if fields else 200)
    if fields:
        assert set(response.json["fields"]) == fields


def test_validate_requires_a_template_when_the_configuration_is_sent(client):
    response = client.post("/t/default/activity/validate", json=validate_body({"contactKey": "x"}))
    assert response.status_code == 400
    assert response.json["fields"] == {"templateId": ["required: the event template to send"]}


def test_validate_with_journey_builders_own_body_checks_the_tenant_only(client):
    body = {"activityObjectID": "a", "interactionId": "i", "interactionKey": "k", "interactionVersion": "2"}
    assert client.post("/t/default/activity/validate", json=body).status_code == 200
    unconfigured = app_with({"ROKT_CLIENT_ID": ""})
    answer = unconfigured.post("/t/default/activity/validate", json=body)
    # unauthenticated: which credential is missing is logged, never answered
    assert answer.status_code == 400 and answer.json["fields"] == {
        "tenant": ["this tenant is not fully configured yet (see App Settings)"]
    }
    assert "rokt_client_id" not in answer.get_data(as_text=True)


def test_an_address_under_the_limit_is_looked_up_once_a_second(settings, fake_redis, monkeypatch):
    from pipeline.web import auth_failures

    frozen = (int(time.time()) // 3600 + 1) * 3600 + 30  # 30 s into a window, never across its end
    monkeypatch.setattr(time, "time", lambda: float(frozen))
    runtime = Runtime(load_settings({**ENV, "AUTH_FAILURE_LIMIT": "3"}), fake_redis)
    client = create_app(runtime).test_client()
    assert post(client, signed()).status_code == 200  # looked up: under the limit, remembered
    digest = keys.personal_digest(deployment_salt(fake_redis), "default", "127.0.0.1")[:16]
    window = keys.auth_failure_window("default", "execute", int(time.time() // 300))
    fake_redis.hset(window, digest, 3)  # failures another process counted
    assert post(client, signed(definitionInstanceId="def-2")).status_code == 200  # not looked up again
    later = time.monotonic() + auth_failures.CLEAR_FOR_SECONDS + 0.1
    monkeypatch.setattr(auth_failures.time, "monotonic", lambda: later)
    assert post(client, signed(definitionInstanceId="def-3")).status_code == 429


def test_a_failure_counted_here_takes_effect_at_once(fake_redis):
    runtime = Runtime(load_settings({**ENV, "AUTH_FAILURE_LIMIT": "2"}), fake_redis)
    client = create_app(runtime).test_client()
    assert post(client, signed()).status_code == 200
    wrong = "another-secret-0123456789abcdef0123"
    assert [post(client, signed(secret=wrong)).status_code for _ in range(3)] == [401, 401, 429]
    assert post(client, signed(definitionInstanceId="def-2")).status_code == 429


# -- what a disabled or incomplete tenant tells whom -------------------------------------------


def test_a_disabled_tenant_answers_503_to_authenticated_executes_and_webhooks(rt, rt_client):
    from tests.unit.web.test_activity import signed

    rt.registry.add(
        "brand-b",
        {
            **COMPLETE,
            "jb_jwt_secret": JWT_SECRET,
            "rokt_webhook_secret": "hook-secret-of-brand-b-0123456789abcdefghij",
        },
    )
    rt.registry.set_status("brand-b", TenantStatus.DISABLED)
    answer = rt_client.post("/t/brand-b/activity/execute", data=signed(), content_type="application/jwt")
    assert answer.status_code == 503 and answer.json["error"] == "tenant_disabled"
    assert answer.headers["Retry-After"]
    assert rt.ledger.open_count("brand-b") == 0  # nothing claimed: Journey Builder retries it
    hook = signed_webhook(rt_client, "hook-secret-of-brand-b-0123456789abcdefghij", "brand-b")
    assert hook.status_code == 503 and hook.json["error"] == "tenant_disabled"
    assert (
        signed_webhook(rt_client, "wrong", "brand-b").status_code == 401
    )  # the status is told to authenticated callers only
    rt.registry.set_status("brand-b", TenantStatus.ACTIVE)
    assert (
        rt_client.post(
            "/t/brand-b/activity/execute", data=signed(), content_type="application/jwt"
        ).status_code
        == 200
    )


def test_validate_does_not_tell_which_settings_a_tenant_lacks(parts, caplog):
    runtime, rt_client, _, _ = parts
    runtime.registry.add("bare", {"rokt_client_id": "x"})
    caplog.set_level("WARNING", logger="pipeline.web.activity")
    answer = rt_client.post("/t/bare/activity/validate", json={})
    assert answer.status_code == 400
    text = answer.get_data(as_text=True)
    assert "jb_jwt_secret" not in text and "rokt_account_code" not in text and "sfmc" not in text
    assert "jb_jwt_secret" in caplog.text and "rokt_account_code" in caplog.text


def test_a_tenants_activity_is_framed_only_by_journey_builder_of_its_own_stack(ui_root):
    """The stack its sign-in named narrows the default `{stack}` pattern: the CSP the browser
    enforces and the origins the UI accepts Postmonger messages from."""
    client = app_with({"SFMC_STACK": "s4"})
    answer = client.get("/t/default/activity/index.html")
    assert answer.headers["Content-Security-Policy"].endswith(
        "; frame-ancestors https://jbinteractions.s4.marketingcloudapps.com"
    )
    allowed = client.get("/t/default/activity/settings.json").json["allowedOrigins"]
    assert allowed == ["https://jbinteractions.s4.marketingcloudapps.com"]


def test_a_tenants_frame_origins_override_its_stack(ui_root):
    client = app_with({"SFMC_STACK": "s4", "FRAME_ORIGINS": "https://jb.example.test"})
    answer = client.get("/t/default/activity/")
    assert answer.headers["Content-Security-Policy"].endswith("; frame-ancestors https://jb.example.test")
    assert client.get("/t/default/activity/settings.json").json["allowedOrigins"] == [
        "https://jb.example.test"
    ]


def test_an_unknown_tenants_404_is_framed_by_any_stack(ui_root):
    answer = app_with({"SFMC_STACK": "s4"}).get("/t/nobody/activity/")
    assert answer.status_code == 404
    assert answer.headers["Content-Security-Policy"].endswith(
        "; frame-ancestors https://*.marketingcloudapps.com"
    )
