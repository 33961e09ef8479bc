"""Fuzzing the routes that tests/unit/web/test_fuzz.py does not reach: the activity UI's API
(`/t/<tenant>/api/...`, its session handshake included) and App Settings (`/app/...`: sign-in, the
OAuth callback, logout, the settings form and its buttons, the install).

Each route gets FUZZ_EXAMPLES generated requests: methods, paths, query strings, headers, cookies
(forged session ids and sign-in nonces), bodies (bytes, JSON of any shape, form fields huge, unicode
or full of control characters) and credentials good and bad (none, garbage, expired, tampered, of
another tenant or session, valid). For every one:

- never a 5xx (Redis is up here; SFMC answers, through `responses`, what a live SFMC would);
- without valid authentication nothing is stored: the whole Redis keyspace (every tenant, the
  registry, sessions) is the same after the request as before, but for the keys named in
  `allowed_without_auth`; nothing is enqueued and no install is queued;
- the OAuth callback calls SFMC's token endpoint only with a state we issued to this browser;
- with valid authentication, rejected input answers 4xx naming the field (JSON `fields`, or the
  settings page's `field-error` for `POST /app/settings`).

FUZZ_EXAMPLES (environment, default 400, as tests/unit/web/test_fuzz.py) sets the examples per route.
At 1,000 per route (17 routes) this module took 3 to 4.5 minutes of a CI run that must stay under
20, so CI runs 400; run
`FUZZ_EXAMPLES=10000` before a release. Examples are derandomized: CI runs the same ones every
time (a fixed corpus: a failure there reproduces locally); FUZZ_RANDOM=1 draws new ones.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, quote, quote_from_bytes, urlencode, urlsplit

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous.timed import TimestampSigner

from pipeline.infra import keys
from pipeline.infra.salt import deployment_salt
from pipeline.journeys import templates
from pipeline.settings import load_settings
from pipeline.tenancy import apikeys
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from pipeline.web.app_auth import SIGNIN_COOKIE
from pipeline.web.app_session import CSRF_HEADER, SESSION_COOKIE_NAME, hashed
from pipeline.web.auth import SESSION_MAX_AGE, issue_session
from tests.unit.conftest import ENV, IntakeEntries

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app and Redis per route; each example is compared alone
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

BASE = "https://localhost"
APP_ENV = {
    **ENV,
    "PUBLIC_BASE_URL": "https://rsf.example",
    "SECRET_KEY": "unit-secret-key-for-sealing-0123456789abcdef",
    "SFMC_APP_CLIENT_ID": "app-client",
    "SFMC_APP_CLIENT_SECRET": "app-client-secret-never-shown-0001",
    "SFMC_APP_AUTH_BASE_URL": "https://app-auth.sfmc.test",
    "SFMC_EID": "555",  # `default` is pinned to enterprise 555: App Settings shows it read-only
}
SFMC_TOKEN = "https://auth.sfmc.test/v2/token"
SFMC_CONTEXT = "https://rest.sfmc.test/platform/v1/tokenContext"
OUR_TOKEN = {"access_token": "ours-1", "expires_in": 3600, "rest_instance_url": "https://rest.sfmc.test/"}
ACCOUNT_TOKEN = re.compile(r"https://[a-z0-9-]+\.auth\.marketingcloudapis\.com/v2/token")
ACCOUNT_USERINFO = re.compile(r"https://[a-z0-9-]+\.auth\.marketingcloudapis\.com/v2/userinfo")
# the fuel2token SFMC's tokenContext accepts, for our account (123) and for another one (999)
GOOD_FUEL2TOKEN = "jb-fuel2token-of-account-123"
FOREIGN_FUEL2TOKEN = "jb-fuel2token-of-account-999"

SIGNIN_STATE_KEYS = {keys.login_states(), keys.login_states_by_address()}
STATE_KEYS = "|".join(re.escape(key) for key in sorted(SIGNIN_STATE_KEYS))
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def allowed_without_auth(route: str) -> re.Pattern[str]:
    """The only keys a request without valid authentication may add, change or remove, by route.

    - `POST /t/<t>/api/session`: the tenant's vendor call counters (`pipeline.infra.keys.calls`):
      the fuel2token IS the credential there, and checking it is one counted tokenContext call;
    - `GET /app/login`: the sign-in state it issues (a member of the two capped sorted sets
      `pipeline.infra.keys.login_states` and `login_states_by_address`, 10 minutes);
    - `GET /app/oauth/callback`: the state it uses up (removed, checked apart).
    """
    allowed = {
        "session": r"rsf:[^:]+:calls",
        "login": STATE_KEYS,
        "callback": STATE_KEYS,
    }
    return re.compile(allowed.get(route, r"(?!)"))


# --- the keyspace -----------------------------------------------------------------------------


def keyspace(r) -> dict[str, tuple[str, Any, bool]]:
    """Every key: its type, its value and whether it expires (a TTL refresh alone is no change)."""
    keys = sorted(r.keys("*"))
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.pttl(key)
    meta = pipe.execute()
    read = {
        "string": lambda p, k: p.get(k),
        "hash": lambda p, k: p.hgetall(k),
        "set": lambda p, k: p.smembers(k),
        "list": lambda p, k: p.lrange(k, 0, -1),
        "zset": lambda p, k: p.zrange(k, 0, -1, withscores=True),
        "stream": lambda p, k: p.xrange(k),
    }
    pipe = r.pipeline(transaction=False)
    for index, key in enumerate(keys):
        read[meta[2 * index]](pipe, key)
    values = pipe.execute()
    return {key: (meta[2 * i], values[i], meta[2 * i + 1] > 0) for i, key in enumerate(keys)}


def changed_keys(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def assert_nothing_stored(route: str, before: dict, after: dict) -> None:
    allowed = allowed_without_auth(route)
    unexpected = sorted(k for k in changed_keys(before, after) if not allowed.fullmatch(k))
    assert unexpected == [], f"{route}: stored without valid auth: {unexpected}"
    if route == "login":  # only states that expire within 10 minutes
        assert all(after[k][2] for k in after.keys() - before.keys())
    if route == "callback":  # states are used up, never added
        for key in changed_keys(before, after):
            assert key not in after or set(after[key][1]) < set(before[key][1])


# --- strategies -------------------------------------------------------------------------------

SPECIAL = [
    "",
    " ",
    "\x00",
    "\r\n",
    "\u202e",  # right-to-left override
    "\ufeff",
    "\U0001d54f",
    "é",
    "../",
    "%00",
    "%ff",
    "{{",
    "{% raw %}",
    "<script>",
    '"',
    "'",
    "\\",
]
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
control_text = st.text(alphabet=st.characters(max_codepoint=0x3F), max_size=20)
small_text = any_text | control_text | st.sampled_from(SPECIAL)
# long values (bodies only): 64 KiB is the body cap (413 beyond it)
huge_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["A", "\xe9", "\x00", "\u202e", "\U0001d54f", "\r\n"]),
    st.sampled_from([300, 5000, 70_000]),
)
text = small_text | huge_text
# what an HTTP header value can carry through WSGI (latin-1, no line breaks)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=80
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | small_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=12,
)
deep_json = st.integers(min_value=50, max_value=5000).map(lambda n: "[" * n + "]" * n)

TEMPLATE = {
    "name": "Winter sale",
    "title": "{{FirstName}}, the Acme winter sale",
    "description": "Shop at https://acme.test/sale",
    "location": "https://acme.test/s",
    "start": "2026-12-01T09:00:00",
    "end": "2026-12-01T10:00:00",
    "timezone": "Europe/Paris",
}
template_like = st.builds(
    lambda base, changes, drop: {k: v for k, v in {**base, **changes}.items() if k not in drop},
    st.just(TEMPLATE),
    st.dictionaries(st.sampled_from([*TEMPLATE, "x", "id"]), text | json_values, max_size=3),
    st.sets(st.sampled_from(list(TEMPLATE)), max_size=2),
)
preview_like = st.fixed_dictionaries(
    {},
    optional={
        "templateId": st.just("tpl-existing") | text | json_values,
        "template": template_like | json_values,
        "values": st.dictionaries(small_text, text | json_values, max_size=4) | json_values,
        "brand": text | json_values,
        "x": json_values,
    },
)


@dataclass(frozen=True)
class Body:
    data: bytes | dict[str, str] | None
    content_type: str | None


def _json_body(value: Any) -> Body:
    return Body(json.dumps(value).encode(), "application/json")


bodies = st.one_of(
    st.just(Body(None, None)),
    st.builds(Body, st.binary(max_size=2000), st.sampled_from(["application/json", "text/plain", "", None])),
    json_values.map(_json_body),
    deep_json.map(lambda s: Body(s.encode(), "application/json")),
    st.builds(Body, huge_text.map(str.encode), st.just("application/json")),
    st.builds(
        Body, st.dictionaries(small_text, text, max_size=6), st.just("application/x-www-form-urlencoded")
    ),
    st.builds(Body, st.binary(max_size=500), st.just("multipart/form-data; boundary=x")),
)
queries = st.one_of(
    st.just(""),
    st.lists(st.tuples(small_text, small_text), max_size=5).map(lambda pairs: urlencode(pairs)),
    st.binary(max_size=200).map(lambda b: quote_from_bytes(b, safe="=&")),
    st.fixed_dictionaries(
        {},
        optional={
            "q": small_text | st.just("q" * 201) | st.integers().map(str),
            "page": st.integers().map(str) | small_text,
            "perPage": st.integers().map(str) | small_text,
        },
    ).map(urlencode),
)
# a path segment, percent-encoded (a raw "/" now and then: another route, or none)
segments = st.one_of(
    small_text.map(lambda s: quote(s, safe="")),
    st.sampled_from(["tpl-existing", "tpl-" + "0" * 12, "..", ".", "a/b", "%2F", "x" * 300]),
)
extra_headers = st.dictionaries(
    st.sampled_from(
        ["Accept", CSRF_HEADER, "X-Request-ID", "Origin", "Referer", "X-Forwarded-For", "Cookie2"]
    ),
    header_text | st.sampled_from(["application/json", "text/html", "*/*", "application/json;q=0"]),
    max_size=4,
)


# --- the app ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


@dataclass
class Sfmc:
    """What the mocked SFMC was asked (the account's token endpoint: authorization codes only),
    and what it answers to the next sign-in."""

    code_exchanges: int = 0
    refuse: bool = False
    eid: str = "1"
    refresh: list[str] = field(default_factory=list)


@dataclass
class World:
    app: Any
    client: Any
    r: Any
    runtime: Runtime
    executes: IntakeEntries
    webhooks: Recorder
    installs: Recorder
    sfmc: Sfmc
    api_auth: dict[str, str]
    app_sessions: dict[str, tuple[str, str]]  # kind -> (session id, csrf token)

    def quiet(self) -> bool:
        return not (self.executes.calls or self.webhooks.calls or self.installs.calls)


def _sfmc_mock(mock: responses.RequestsMock, sfmc: Sfmc) -> None:
    def context(request):
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token == GOOD_FUEL2TOKEN:
            return 200, {}, json.dumps({"organization": {"id": 123}, "enterprise": {"id": 900}})
        if token == FOREIGN_FUEL2TOKEN:
            return 200, {}, json.dumps({"organization": {"id": 999}, "enterprise": {"id": [1]}})
        return 401, {}, json.dumps({"message": "Not Authorized", "errorcode": 0})

    def account_token(request):
        form = {k: v[0] for k, v in parse_qs(request.body or "").items()}
        if isinstance(request.body, bytes | str) and not form:
            try:
                form = json.loads(request.body)
            except ValueError:
                form = {}
        if form.get("grant_type") == "authorization_code":
            sfmc.code_exchanges += 1
            if sfmc.refuse:
                return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "bad code"})
        refresh = f"refresh-{secrets.token_hex(4)}"
        sfmc.refresh.append(refresh)
        answer = {"access_token": "at-" + secrets.token_hex(4), "refresh_token": refresh, "expires_in": 1080}
        answer |= {
            "rest_instance_url": "https://rest.sfmc.test/",
            "soap_instance_url": "https://soap.sfmc.test/",
        }
        return 200, {}, json.dumps(answer)

    def userinfo(_request):
        org = {"enterprise_id": int(sfmc.eid), "member_id": int(sfmc.eid) * 10 + 1}
        return (
            200,
            {},
            json.dumps({"organization": org, "user": {"name": "Admin", "email": "admin@example.com"}}),
        )

    mock.post(SFMC_TOKEN, json=OUR_TOKEN)
    mock.add_callback("GET", SFMC_CONTEXT, callback=context)
    mock.add_callback("POST", ACCOUNT_TOKEN, callback=account_token)
    mock.add_callback("GET", ACCOUNT_USERINFO, callback=userinfo)
    # anything else (Rokt, a REST call): unregistered, so a connection error


def _expired_session(tenant) -> str:
    real = TimestampSigner.get_timestamp
    TimestampSigner.get_timestamp = lambda self: int(time.time()) - SESSION_MAX_AGE - 5  # type: ignore[method-assign]
    try:
        return issue_session(tenant)
    finally:
        TimestampSigner.get_timestamp = real  # type: ignore[method-assign]


def _app_session(r, tenant: str, eid: str) -> tuple[str, str]:
    """A signed-in browser's session, stored as the sign-in callback leaves it."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    record = {"tenant": tenant, "eid": eid, "user": "alice", "csrf": csrf, "signedInAt": time.time()}
    r.set(keys.app_session(hashed(sid)), json.dumps(record), ex=3600)
    return sid, csrf


@pytest.fixture
def world(fake_redis):
    """Tenants `default` (pinned, account 123) and `other` (pinned, account 999) for the API;
    `sfmc-1` and `sfmc-2`, signed in to App Settings; a stored template; API keys and sessions
    of every kind; SFMC mocked for the session handshake and the sign-in."""
    loaded = load_settings(APP_ENV)
    other = replace(
        loaded.tenants["default"],
        name="other",
        jb_jwt_secret="other-tenant-jwt-secret-0123456789abcdef",
        sfmc_account_id="999",
    )
    runtime = Runtime(replace(loaded, tenants={**loaded.tenants, "other": other}), fake_redis)
    executes, webhooks, installs = IntakeEntries(fake_redis), Recorder(), Recorder()  # executes: the intake
    app = create_app(runtime, enqueue_webhook=webhooks)
    app.extensions["rsf.install_data_extensions"] = installs
    r = fake_redis
    deployment_salt(r)  # made by the first request of any deployment: not an unauthenticated write
    a = runtime.registry.sign_in(eid="1", mid="11", tssd="acme", refresh_token="refresh-a")
    b = runtime.registry.sign_in(eid="2", mid="22", tssd="brand-b", refresh_token="refresh-b")
    stored = templates.create_template(r, "default", TEMPLATE)
    r.hset(keys.templates("default"), "tpl-existing", json.dumps({**stored, "id": "tpl-existing"}))
    default, other_tenant = runtime.registry.get("default"), runtime.registry.get("other")
    revoked = apikeys.create_key(r, "default", "revoked")
    apikeys.revoke_key(r, "default", revoked[len(apikeys.PREFIX) :][: apikeys.ID_LENGTH])
    session = issue_session(default)
    api_auth = {
        "none": "",
        "valid_key": f"Bearer {apikeys.create_key(r, 'default', 'fuzz')}",
        "valid_session": f"Bearer {session}",
        "other_key": f"Bearer {apikeys.create_key(r, 'other', 'theirs')}",
        "other_session": f"Bearer {issue_session(other_tenant)}",
        "expired_session": f"Bearer {_expired_session(default)}",
        "tampered_session": f"Bearer {session[:-3]}{'AAA' if session[-3:] != 'AAA' else 'BBB'}",
        "revoked_key": f"Bearer {revoked}",
        "random_key": "Bearer rsk_" + secrets.token_urlsafe(32),
        "basic": "Basic dXNlcjpwYXNz",
        "bare_key": apikeys.create_key(r, "default", "no scheme"),  # a real key, without "Bearer"
    }
    app_sessions = {"a": _app_session(r, a.name, "1"), "b": _app_session(r, b.name, "2")}
    app_sessions["pinned"] = _app_session(r, "default", "555")
    app_sessions["stale"] = _app_session(r, "sfmc-1", "999")  # its tenant changed enterprise: ended
    sfmc = Sfmc()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        _sfmc_mock(mock, sfmc)
        client = app.test_client(use_cookies=False)
        # our own SFMC token for `default` and `other`, fetched once (then cached, like in production)
        for tenant in ("default", "other"):
            client.post(f"/t/{tenant}/api/session", json={"fuel2token": GOOD_FUEL2TOKEN})
        yield World(app, client, r, runtime, executes, webhooks, installs, sfmc, api_auth, app_sessions)


def assert_not_5xx(response) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])


def send(world: World, method: str, path: str, query: str, headers: dict[str, str], body: Body):
    kwargs: dict[str, Any] = {"method": method, "query_string": query, "headers": headers, "base_url": BASE}
    if body.data is not None and method not in ("GET", "HEAD"):
        kwargs["data"] = body.data
        if body.content_type is not None:
            kwargs["content_type"] = body.content_type
    return world.client.open(path, **kwargs)


def routing_answer(method: str, response) -> bool:
    """An answer of Flask's routing, before any view runs: the automatic OPTIONS (Allow only), or
    the redirect to a route's canonical path (a doubled or missing slash; werkzeug's HTML page)."""
    if method == "OPTIONS" and response.status_code == 200:
        return response.get_data() == b"" and bool(response.headers.get("Allow"))
    return response.status_code == 308


def prune_templates(r) -> None:
    """Keep the keyspace (compared twice per example) small: at most 50 templates of `default`."""
    key = keys.templates("default")
    if r.hlen(key) > 50:
        for template_id in list(r.hkeys(key))[:40]:
            if template_id != "tpl-existing":
                r.hdel(key, template_id)


# --- found by this fuzzing --------------------------------------------------------------------


def test_deeply_nested_json_to_the_session_handshake_is_a_400(world):
    """Found by `test_api_session`: `get_json(silent=True)` lets the parser's RecursionError
    through, so the unauthenticated handshake answered 503 (Journey Builder would retry it)."""
    before = keyspace(world.r)
    response = world.client.post(
        "/t/default/api/session", data="[" * 5000 + "]" * 5000, content_type="application/json"
    )
    assert response.status_code == 400 and response.json["fields"] == {
        "fuel2token": ["Missing data for required field."]
    }
    assert_nothing_stored("session", before, keyspace(world.r))


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/templates"), ("put", "/templates/tpl-existing"), ("post", "/preview")]
)
def test_deeply_nested_json_to_the_api_is_a_400(world, method, path):
    """Python 3.11's parser gives up on 5,000 levels (invalid_json); 3.13's parses them, and the
    schema refuses the list (invalid_payload): either way a 400 naming the problem, never a 5xx."""
    response = getattr(world.client, method)(
        "/t/default/api" + path,
        data="[" * 5000 + "]" * 5000,
        content_type="application/json",
        headers={"Authorization": world.api_auth["valid_key"]},
    )
    assert response.status_code == 400 and response.json["error"] in ("invalid_json", "invalid_payload")


# --- /t/<tenant>/api/... ----------------------------------------------------------------------

API_ROUTES = {
    "templates.list": ("GET", "/templates"),
    "templates.create": ("POST", "/templates"),
    "templates.get": ("GET", "/templates/{id}"),
    "templates.update": ("PUT", "/templates/{id}"),
    "templates.delete": ("DELETE", "/templates/{id}"),
    "preview": ("POST", "/preview"),
    "activity.stats": ("GET", "/activities/{id}/stats"),
}
API_BODIES = {
    "templates.create": template_like.map(_json_body),
    "templates.update": template_like.map(_json_body),
    "preview": preview_like.map(_json_body),
}
tenants = st.sampled_from(["default", "other", "nosuch", "DEFAULT", "default%00", "_registry"]) | segments
# a tenant's own credentials ("other_*" are valid for `other`, and for no one else)
OWN_CREDENTIALS = {
    ("default", "valid_key"),
    ("default", "valid_session"),
    ("other", "other_key"),
    ("other", "other_session"),
}
api_auth_kinds = st.sampled_from(
    [
        "none",
        "valid_key",
        "valid_session",
        "other_key",
        "other_session",
        "expired_session",
        "tampered_session",
        "revoked_key",
        "random_key",
        "basic",
        "bare_key",
        "header_text",
    ]
)


@pytest.mark.parametrize("route", list(API_ROUTES))
@FUZZ
@given(
    data=st.data(),
    tenant=tenants,
    auth=api_auth_kinds,
    raw_auth=header_text,
    other_method=st.none() | st.sampled_from(METHODS),
    segment=segments,
    query=queries,
    headers=extra_headers,
)
def test_api_routes(world, route, data, tenant, auth, raw_auth, other_method, segment, query, headers):
    method, template = API_ROUTES[route]
    method = other_method or method
    body = data.draw(API_BODIES[route] | bodies if route in API_BODIES else bodies, label="body")
    headers = dict(headers)
    authorization = raw_auth if auth == "header_text" else world.api_auth[auth]
    if authorization:
        headers["Authorization"] = authorization
    authentic = (tenant, auth) in OWN_CREDENTIALS
    prune_templates(world.r)
    before = keyspace(world.r) if not authentic else None

    response = send(world, method, f"/t/{tenant}/api" + template.format(id=segment), query, headers, body)

    assert_not_5xx(response)
    assert world.quiet()
    if not routing_answer(method, response) and method != "HEAD":
        assert response.is_json, response.get_data()[:200]
    if not authentic:
        assert response.status_code in (401, 404, 405, 413) or routing_answer(method, response), (
            response.get_data()[:300]
        )
        assert_nothing_stored(route, before, keyspace(world.r))
    elif response.status_code == 400:
        answer = response.json
        assert answer["fields"] if answer["error"] != "invalid_json" else True, answer


# --- POST /t/<tenant>/api/session -------------------------------------------------------------

fuel2tokens = st.one_of(
    st.sampled_from([GOOD_FUEL2TOKEN, FOREIGN_FUEL2TOKEN, "", " ", "x" * 4097, "jb fuel2token"]),
    text,
    json_values,
)


@FUZZ
@given(
    tenant=tenants,
    session_body=st.one_of(
        st.fixed_dictionaries({"fuel2token": fuel2tokens}, optional={"x": json_values}).map(_json_body),
        bodies,
    ),
    other_method=st.none() | st.sampled_from(METHODS),
    query=queries,
    headers=extra_headers,
    authorization=st.none() | header_text,
)
def test_api_session(world, tenant, session_body, other_method, query, headers, authorization):
    method = other_method or "POST"
    headers = dict(headers)
    if authorization is not None:
        headers["Authorization"] = authorization
    before = keyspace(world.r)

    response = send(world, method, f"/t/{tenant}/api/session", query, headers, session_body)

    assert_not_5xx(response)
    assert world.quiet()
    routing = routing_answer(method, response)
    if not routing and method != "HEAD":
        assert response.is_json
    good = session_body.data == json.dumps({"fuel2token": GOOD_FUEL2TOKEN}).encode()
    # a fuel2token of the account (MID) of `default` opens a session of any tenant of that MID
    same_account = world.runtime.registry.get(tenant) is not None and (
        world.runtime.tenant(tenant).sfmc_account_id == world.runtime.tenant("default").sfmc_account_id
    )
    if response.status_code == 200 and not routing:
        assert method == "POST" and same_account
        assert json.loads(session_body.data)["fuel2token"].strip() == GOOD_FUEL2TOKEN
    else:
        assert response.status_code in (400, 401, 404, 405, 413) or routing
        assert not (good and same_account and method == "POST")
    if response.status_code == 400:
        assert response.json["fields"] == {"fuel2token": response.json["fields"]["fuel2token"]}
    # the fuel2token is the credential here: even when SFMC accepts it, a session is issued, not stored
    assert_nothing_stored("session", before, keyspace(world.r))


# --- /app/... ---------------------------------------------------------------------------------

nonces = st.one_of(
    st.just(None), st.just("issued-elsewhere"), header_text, st.just(secrets.token_urlsafe(32))
)
forged_sids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{43}", fullmatch=True),  # the shape of ours, not one of ours
    header_text,
    st.just("p" * 43),
)


@dataclass(frozen=True)
class AppAuth:
    kind: str  # "none" | "forged" | "a" | "b" | "pinned" | "stale"
    forged_sid: str = ""
    csrf: str = "none"  # "none" | "valid" | "other" | "junk"
    csrf_in: str = "form"  # "form" | "header" | "both"
    junk_csrf: str = ""
    nonce: str | None = None


app_auths = st.builds(
    AppAuth,
    kind=st.sampled_from(["none", "forged", "a", "a", "b", "pinned", "stale"]),
    forged_sid=forged_sids,
    csrf=st.sampled_from(["none", "valid", "valid", "other", "junk"]),
    csrf_in=st.sampled_from(["form", "header", "both"]),
    junk_csrf=header_text,
    nonce=nonces,
)
COOKIE_SAFE = re.compile(r"^[\x21-\x7e]*$")


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(
        f"{name}={value if COOKIE_SAFE.match(value) else quote(value)}" for name, value in cookies.items()
    )


def app_request(world: World, auth: AppAuth, body: Body, headers: dict[str, str]) -> tuple[dict, Body, bool]:
    """The headers and body of one /app request with `auth`; whether it is signed in with its CSRF token."""
    headers, cookies = dict(headers), {}
    headers.pop(CSRF_HEADER, None) if auth.csrf != "none" else None
    sid, csrf = world.app_sessions.get(auth.kind, ("", ""))
    if auth.kind == "forged":
        cookies[SESSION_COOKIE_NAME] = auth.forged_sid
    elif sid:
        cookies[SESSION_COOKIE_NAME] = sid
    if auth.nonce is not None:
        cookies[SIGNIN_COOKIE] = auth.nonce
    token = {
        "valid": csrf,
        "other": world.app_sessions["b" if auth.kind == "a" else "a"][1],
        "junk": auth.junk_csrf,
    }.get(auth.csrf, "")
    if token and auth.csrf_in in ("header", "both"):
        headers[CSRF_HEADER] = token
    if token and auth.csrf_in in ("form", "both"):
        form = body.data if isinstance(body.data, dict) else {}
        body = Body({**form, "csrf_token": token}, "application/x-www-form-urlencoded")
    if cookies:
        headers["Cookie"] = cookie_header(cookies)
    return headers, body, auth.kind in SIGNED_IN and auth.csrf == "valid"


def form_fields(names):
    return st.dictionaries(
        names, text | st.sampled_from(["acct-42", "acme", "11", "rokt-client", "x" * 40]), max_size=8
    ).map(lambda form: Body(form, "application/x-www-form-urlencoded"))


settings_forms = form_fields(
    st.sampled_from(
        [
            "rokt_account_id",
            "rokt_account_code",
            "rokt_client_id",
            "rokt_client_secret",
            "sfmc_account_id",
            "sfmc_client_id",
            "sfmc_client_secret",
            "jb_jwt_secret",
            "status",
            "sfmc_eid",
            "tenant",
        ]
    )
    | text
)

SIGNED_IN = ("a", "b", "pinned")  # "stale": its tenant changed enterprise since; "forged": not ours
SESSION_OWNERS = {
    "a": ("sfmc-1", "1"),
    "b": ("sfmc-2", "2"),
    "pinned": ("default", "555"),
    "stale": ("sfmc-1", "999"),
}


def restore_sessions(world: World) -> set[str]:
    """Sessions the last request ended (logout, a stale one), made again; the keys it removed."""
    ended = set()
    for kind, (sid, _csrf) in list(world.app_sessions.items()):
        if not world.r.exists(keys.app_session(hashed(sid))):
            ended.add(keys.app_session(hashed(sid)))
            world.app_sessions[kind] = _app_session(world.r, *SESSION_OWNERS[kind])
    return ended


APP_ROUTES = {
    "settings.show": ("GET", "/app/settings"),
    "settings.save": ("POST", "/app/settings"),
    "settings.test": ("POST", "/app/settings/test"),
    "settings.rotate": ("POST", "/app/settings/webhook/rotate"),
    "install": ("POST", "/app/install"),
    "install.status": ("GET", "/app/install/status"),
    "logout": ("GET", "/app/logout"),
}


@pytest.mark.parametrize("route", list(APP_ROUTES))
@FUZZ
@given(
    data=st.data(),
    auth=app_auths,
    other_method=st.none() | st.sampled_from(METHODS),
    query=queries,
    headers=extra_headers,
    suffix=st.sampled_from(["", "", "", "/", "//", "/x", "%2F"]),
)
def test_app_routes(world, route, data, auth, other_method, query, headers, suffix):
    method, path = APP_ROUTES[route]
    method = other_method or method
    body = data.draw(settings_forms | bodies if route == "settings.save" else bodies, label="body")
    headers, body, authentic = app_request(world, auth, body, headers)
    authentic = authentic or (auth.kind in SIGNED_IN and method in ("GET", "HEAD"))
    own_session = (
        keys.app_session(hashed(world.app_sessions[auth.kind][0])) if auth.kind in world.app_sessions else ""
    )
    before = keyspace(world.r)
    installs = len(world.installs.calls)

    response = send(world, method, path + suffix, query, headers, body)

    assert_not_5xx(response)
    assert not (world.executes.calls or world.webhooks.calls)
    after = keyspace(world.r)
    # a request may end the session its cookie names (logout, a stale session), no other
    ended = restore_sessions(world)
    assert ended <= {own_session}, ended
    if route == "logout" and response.status_code == 200 and not routing_answer(method, response):
        assert ended == ({own_session} if own_session else set())
    if route == "logout" or auth.kind == "stale":
        authentic = False  # they store nothing
    before = {k: v for k, v in before.items() if k not in ended}
    if not authentic:
        assert response.status_code in (200, 302, 401, 403, 404, 405, 413) or routing_answer(
            method, response
        ), response.status_code
        assert response.status_code != 200 or route == "logout" or routing_answer(method, response)
        assert_nothing_stored(route, before, after)
        assert len(world.installs.calls) == installs
        return
    # a POST to /app/settings is the form's save, whichever route's request it was generated from
    if path == "/app/settings" and response.status_code == 400 and method == "POST" and not suffix:
        html = response.get_data(as_text=True)
        errors = re.findall(r'class="field-error" data-field="([^"]*)"', html)
        assert errors, html[:500]
    elif response.status_code == 400:
        assert response.is_json and response.json.get("fields"), response.get_data()[:300]


# --- GET /app/login ---------------------------------------------------------------------------


@FUZZ
@given(
    auth=app_auths, query=queries, headers=extra_headers, other_method=st.none() | st.sampled_from(METHODS)
)
def test_app_login(world, auth, query, headers, other_method):
    method = other_method or "GET"
    headers, _body, _ = app_request(world, auth, Body(None, None), headers)
    before = keyspace(world.r)

    response = send(world, method, "/app/login", query, headers, Body(None, None))

    assert_not_5xx(response)
    after = keyspace(world.r)
    assert_nothing_stored("login", before, after)
    new_states = after.keys() - before.keys()
    if routing_answer(method, response):
        assert not new_states
    elif method in ("GET", "HEAD"):
        assert response.status_code == 302
        assert new_states == SIGNIN_STATE_KEYS and all(0 < world.r.ttl(k) <= 600 for k in new_states)
        assert world.r.zcard(keys.login_states()) == 1
    else:
        assert response.status_code == 405 and not new_states
    for key in new_states:  # keep the keyspace small
        world.r.delete(key)


# --- GET /app/oauth/callback ------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    state: str  # "issued" | "issued_elsewhere" | "used" | "absent" | "forged" | "huge"
    nonce: str  # "ours" | "absent" | "another_login" | "forged"
    forged: str
    code: str | None
    tssd: str | None
    error: str | None
    extra: tuple[tuple[str, str], ...]
    refuse: bool
    eid: str


callbacks = st.builds(
    Callback,
    state=st.sampled_from(
        ["issued", "issued", "issued", "issued_elsewhere", "used", "absent", "forged", "huge"]
    ),
    nonce=st.sampled_from(["ours", "ours", "absent", "another_login", "forged"]),
    forged=header_text,
    code=st.none() | st.just("a-code") | small_text | st.just("c" * 2049),
    tssd=st.none()
    | st.sampled_from(["acme", "brand-b", "new-account", "a.b", "Acme", "evil.com/x"])
    | small_text,
    error=st.none() | st.none() | st.sampled_from(["access_denied", "server_error"]) | small_text,
    extra=st.lists(st.tuples(small_text, small_text), max_size=3).map(tuple),
    refuse=st.booleans(),
    eid=st.sampled_from(["1", "2", "3"]),
)


def _login(world: World) -> tuple[str, str]:
    """The state and nonce of one `GET /app/login`."""
    answer = world.client.get("/app/login", base_url=BASE)
    state = parse_qs(urlsplit(answer.headers["Location"]).query)["state"][0]
    cookie = next(v for v in answer.headers.getlist("Set-Cookie") if v.startswith(f"{SIGNIN_COOKIE}="))
    return state, cookie.split(";", 1)[0].split("=", 1)[1]


@FUZZ
@given(
    cb=callbacks,
    headers=extra_headers,
    session=st.sampled_from(["none", "forged", "a"]),
    forged_sid=forged_sids,
)
def test_oauth_callback(world, cb, headers, session, forged_sid):
    state, nonce = _login(world)
    if cb.state == "used":
        world.r.delete(*SIGNIN_STATE_KEYS)  # the only state so far: used up
    if cb.state == "issued_elsewhere":
        state, _ = _login(world)
    cookie_nonce = {"ours": nonce, "absent": None, "another_login": _login(world)[1], "forged": cb.forged}[
        cb.nonce
    ]
    query = [("state", state)] if cb.state in ("issued", "issued_elsewhere", "used") else []
    if cb.state == "forged":
        query.append(("state", secrets.token_urlsafe(32)))
    elif cb.state == "huge":
        query.append(("state", state + "x" * 300))
    for name, value in (("code", cb.code), ("tssd", cb.tssd), ("error", cb.error)):
        if value is not None:
            query.append((name, value))
    query.extend(cb.extra)
    headers = dict(headers)
    cookies = {}
    if cookie_nonce is not None:
        cookies[SIGNIN_COOKIE] = cookie_nonce
    if session == "forged":
        cookies[SESSION_COOKIE_NAME] = forged_sid
    elif session == "a":
        cookies[SESSION_COOKIE_NAME] = world.app_sessions["a"][0]
    if cookies:
        headers["Cookie"] = cookie_header(cookies)
    world.sfmc.refuse, world.sfmc.eid = cb.refuse, cb.eid
    exchanges = world.sfmc.code_exchanges
    valid_state = cb.state == "issued" and cb.nonce == "ours"
    before = keyspace(world.r)

    response = world.client.get(
        "/app/oauth/callback", query_string=urlencode(query), headers=headers, base_url=BASE
    )

    exchanged = world.sfmc.code_exchanges - exchanges
    after = keyspace(world.r)
    assert exchanged <= 1
    if not valid_state:
        assert exchanged == 0, cb
        assert response.status_code == 400, (cb, response.status_code)
        assert_nothing_stored("callback", before, after)
    elif exchanged and cb.refuse:
        assert response.status_code == 502  # SFMC refused the code: a gateway error, by design
    else:
        assert_not_5xx(response)
    if response.status_code != 302:
        assert SESSION_COOKIE_NAME + "=" not in " ".join(response.headers.getlist("Set-Cookie")).replace(
            f"{SESSION_COOKIE_NAME}=;", ""
        )
    world.r.delete(*SIGNIN_STATE_KEYS)  # unused states of this example
    if response.status_code == 302:  # signed in: a new session; drop it (keeps the keyspace small)
        sid = next(
            v.split(";", 1)[0].split("=", 1)[1]
            for v in response.headers.getlist("Set-Cookie")
            if v.startswith(f"{SESSION_COOKIE_NAME}=")
        )
        world.r.delete(keys.app_session(hashed(sid)))
        if session == "a":  # its old session was replaced
            world.app_sessions["a"] = _app_session(world.r, "sfmc-1", "1")
