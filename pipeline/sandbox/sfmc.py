"""SFMC REST simulator: token, sync rowsets (50-row limit), async journey events, throttling.

Behaviour as docs/vendors/sfmc-custom-activity.md describes it: 429 with errorcode 50100 and
`Retry-After: 5`; a rowset is rejected from its first bad row on (rows before it are saved);
an expired or revoked token answers 401.

`GET /platform/v1/tokenContext` answers for tokens issued by `/v2/token` (the account asked for)
and for "Journey Builder tokens" a test registers with `POST /__sandbox__/jb-tokens`
`{"token", "mid", "eid"?, "userId"?}` (what the activity UI receives as `fuel2token`).

The package's Web App sign-in (App Settings; docs/vendors/sfmc-app.md B.2, B.3): `GET /v2/authorize`
sends the browser straight back to the redirect URI with `code`, `state` and `tssd`, as for a user
already signed in to Marketing Cloud; who that user is (EID, MID, tssd, name, email, stack: userinfo's
`organization.stackKey`, "S0" by default) is set with
`POST /__sandbox__/mc-user`. `POST /v2/token` also takes the `authorization_code` grant (code single
use, 5 minutes, same redirect URI, the app client only; a refresh token when the scope asked for
`offline`) and the `refresh_token` grant (rotating: the old one stops working);
`POST /__sandbox__/revoke-refresh-tokens` makes every refresh token invalid ("reconnect needed").
`/tssd/<tssd>/v2/token` and `/tssd/<tssd>/v2/userinfo` stand in for `https://<tssd>.auth...`
(404 for any tssd but the signed-in user's). Tokens of any grant work on REST and SOAP.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from flask import jsonify, redirect, request

from pipeline.sandbox.common import Simulator
from pipeline.sandbox.sfmc_soap import SoapService

DEFAULT_CLIENT_ID = "sandbox-sfmc-client"
DEFAULT_CLIENT_SECRET = "sandbox-sfmc-secret"
# the package's Web App integration (App Settings sign-in: authorization code, refresh token)
APP_CLIENT_ID = "sandbox-sfmc-app"
APP_CLIENT_SECRET = "sandbox-sfmc-app-secret"
DEFAULT_TOKEN_LIFETIME = 1079.0
AUTHORIZATION_CODE_LIFETIME = 300.0
# The user signed in to Marketing Cloud when the app's sign-in starts. The same values as
# pipeline.sandbox.SANDBOX_EID/SANDBOX_MID/SANDBOX_TSSD (that package imports this module, so they
# are written here; a test checks they agree).
DEFAULT_MC_USER = {
    "eid": "100000000",
    "mid": "100000001",
    "tssd": "sandbox",
    "name": "sandbox.admin",
    "email": "sandbox.admin@example.com",
    "stack": "S0",  # userinfo's organization.stackKey (the real one's looks like "S4")
}
_TSSD = re.compile(r"[a-z0-9-]{1,63}")
_ID = re.compile(r"[0-9]{1,18}")
_STACK = re.compile(r"[A-Za-z0-9-]{1,63}")
_SHAPES = {"tssd": "one DNS label: [a-z0-9-]{1,63}", "stack": "one DNS label: [A-Za-z0-9-]{1,63}"}
ROWSET_LIMIT = 50
EVENTS_LIMIT = 100


def _error(status: int, errorcode: int, message: str, additional: list[dict] | None = None, **headers: str):
    body: dict[str, Any] = {"message": message, "errorcode": errorcode, "documentation": ""}
    if additional:
        body["additionalErrors"] = additional
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


class SfmcSimulator(Simulator):
    name = "sfmc"

    def __init__(self) -> None:
        super().__init__()
        self.clients = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        self.soap = SoapService(self)
        self.reset()
        app = self.app
        self.soap.mount(app)
        app.add_url_rule("/v2/token", "token", self.token, methods=["POST"])
        app.add_url_rule("/tssd/<tssd>/v2/token", "tssd_token", self.token, methods=["POST"])
        app.add_url_rule("/v2/authorize", "authorize", self.authorize)
        app.add_url_rule("/v2/userinfo", "userinfo", self.userinfo)
        app.add_url_rule("/tssd/<tssd>/v2/userinfo", "tssd_userinfo", self.userinfo)
        app.add_url_rule("/__sandbox__/mc-user", "mc_user", self.set_mc_user, methods=["POST"])
        app.add_url_rule(
            "/__sandbox__/revoke-refresh-tokens",
            "revoke_refresh",
            self.revoke_refresh_tokens,
            methods=["POST"],
        )
        app.add_url_rule("/hub/v1/dataevents/key:<de_key>/rowset", "rowset", self.rowset, methods=["POST"])
        app.add_url_rule("/interaction/v1/async/events", "events", self.async_events, methods=["POST"])
        app.add_url_rule("/interaction/v1/interactions/<definition_id>", "journey", self.get_journey)
        app.add_url_rule("/__sandbox__/journeys", "set_journey", self.set_journey, methods=["POST"])
        app.add_url_rule("/contacts/v1/contacts/<path:key>", "get_contact", self.get_contact)
        app.add_url_rule("/contacts/v1/contacts", "create_contact", self.create_contact, methods=["POST"])
        app.add_url_rule(
            "/data/v1/async/dataextensions/key:<de_key>/rows",
            "async_rows",
            self.async_upsert,
            methods=["PUT"],
        )
        app.add_url_rule("/data/v1/async/<request_id>/status", "async_status", self.async_status)
        app.add_url_rule("/data/v1/async/<request_id>/results", "async_results", self.async_results)
        app.add_url_rule("/__sandbox__/contacts", "seed_contacts", self.seed_contacts, methods=["POST"])
        app.add_url_rule("/__sandbox__/rows", "rows", self.rows_route)
        app.add_url_rule("/__sandbox__/revoke-tokens", "revoke", self.revoke_tokens, methods=["POST"])
        app.add_url_rule("/__sandbox__/bad-rows", "bad_rows", self.set_bad_rows, methods=["POST"])
        app.add_url_rule("/platform/v1/tokenContext", "token_context", self.token_context)
        app.add_url_rule("/__sandbox__/jb-tokens", "jb_tokens", self.register_jb_token, methods=["POST"])

    def reset(self) -> None:
        super().reset()
        self.soap.reset()
        self.tokens: dict[str, float] = {}
        self.token_accounts: dict[str, str] = {}  # token -> the account_id it was issued for
        self.jb_tokens: dict[str, dict[str, str]] = {}  # fuel2token -> {mid, eid, userId}
        self.mc_user: dict[str, str] = dict(DEFAULT_MC_USER)
        self.codes: dict[str, dict[str, Any]] = {}  # authorization code -> its grant (single use)
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # refresh token -> its grant
        self.user_tokens: dict[str, dict[str, str]] = {}  # access token of a sign-in -> its user
        self.authorize_calls = 0
        self.userinfo_calls = 0
        self.refresh_grants = 0
        self.token_context_calls = 0
        self.data_extensions: dict[str, dict[str, dict[str, Any]]] = {}
        # (version 1's id, version) -> (status, its activities' ids, its name, activity id -> name)
        self.journeys: dict[tuple[str, int], tuple[str, list[str], str, dict[str, str]]] = {}
        self.journey_reads = 0
        self.rowset_calls = 0
        self.rowset_sizes: list[int] = []
        self.release_calls = 0
        self.releases: list[dict[str, Any]] = []
        self.unauthorized = 0
        self.bad_contact_keys: set[str] = set()
        self.contacts: dict[str, dict[str, Any]] = {}
        self.contacts_created = 0
        self.async_requests: dict[str, dict[str, Any]] = {}
        self.async_calls = 0

    def token(self, tssd: str | None = None):
        if tssd is not None and tssd != self.mc_user["tssd"]:
            return _error(404, 0, "Not Found")
        body = request.get_json(silent=True) or {}
        with self.lock:
            self.counters.token_requests += 1
        grant = body.get("grant_type")
        if grant == "authorization_code":
            return self._authorization_code_grant(body)
        if grant == "refresh_token":
            return self._refresh_token_grant(body)
        if grant != "client_credentials":
            return _error(
                400, 0, "grant_type must be client_credentials, authorization_code or refresh_token"
            )
        if self.clients.get(body.get("client_id")) != body.get("client_secret"):
            return _error(401, 0, "invalid client credentials")
        scopes = "data_extensions_read data_extensions_write journeys_read journeys_execute"
        return self._issue(str(body.get("account_id") or ""), scopes)

    def _issue(self, account: str, scope: str, user: dict[str, str] | None = None, offline: bool = False):
        """A REST/SOAP access token for `account` (the MID), and a refresh token when `offline`."""
        lifetime = self.faults.token_lifetime or DEFAULT_TOKEN_LIFETIME
        token = secrets.token_urlsafe(24)
        answer: dict[str, Any] = {}
        with self.lock:
            self.tokens[token] = time.monotonic() + lifetime
            self.token_accounts[token] = account
            if user is not None:
                self.user_tokens[token] = user
                if offline:
                    refresh = secrets.token_urlsafe(48)
                    self.refresh_tokens[refresh] = {"user": user, "scope": scope}
                    answer["refresh_token"] = refresh
        base = request.host_url
        return jsonify(
            access_token=token,
            token_type="Bearer",
            expires_in=int(lifetime),
            rest_instance_url=base,
            soap_instance_url=base,
            scope=scope,
            **answer,
        )

    def _app_client_refused(self, body: dict[str, Any]):
        if body.get("client_id") != APP_CLIENT_ID or body.get("client_secret") != APP_CLIENT_SECRET:
            return _error(401, 0, "invalid client credentials")
        return None

    def _authorization_code_grant(self, body: dict[str, Any]):
        refused = self._app_client_refused(body)
        if refused is not None:
            return refused
        with self.lock:
            grant = self.codes.pop(str(body.get("code") or ""), None)  # single use, even when refused below
        if grant is None or grant["expires"] <= time.monotonic():
            return _error(400, 0, "invalid_grant: unknown, used or expired authorization code")
        if body.get("redirect_uri") != grant["redirect_uri"]:
            return _error(400, 0, "invalid_grant: redirect_uri differs from the authorize request's")
        user = grant["user"]
        return self._issue(
            user["mid"], grant["scope"], user=user, offline="offline" in grant["scope"].split()
        )

    def _refresh_token_grant(self, body: dict[str, Any]):
        refused = self._app_client_refused(body)
        if refused is not None:
            return refused
        with self.lock:
            grant = self.refresh_tokens.pop(str(body.get("refresh_token") or ""), None)  # rotates
            self.refresh_grants += 1
        if grant is None:
            return _error(400, 0, "invalid_grant: unknown or revoked refresh token")
        user = grant["user"]
        return self._issue(user["mid"], grant["scope"], user=user, offline=True)

    def authorize(self):
        """A user already signed in to Marketing Cloud: straight back with a code (B.2 step 3)."""
        args = request.args
        with self.lock:
            self.authorize_calls += 1
        redirect_uri = args.get("redirect_uri", "")
        if args.get("client_id") != APP_CLIENT_ID:
            return _error(400, 0, "unknown client_id")
        if not redirect_uri.startswith(("http://", "https://")):
            return _error(400, 0, "redirect_uri is required")
        if args.get("response_type") != "code":
            return _error(400, 0, "response_type must be code")
        code = secrets.token_urlsafe(48)
        with self.lock:
            user = dict(self.mc_user)
            self.codes[code] = {
                "redirect_uri": redirect_uri,
                "scope": " ".join(args.get("scope", "").split()),
                "user": user,
                "expires": time.monotonic() + AUTHORIZATION_CODE_LIFETIME,
            }
        query = {"code": code, "tssd": user["tssd"]}
        if "state" in args:
            query["state"] = args["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + separator + urlencode(query), code=302)

    def userinfo(self, tssd: str | None = None):
        """Who a sign-in's access token belongs to, shaped as docs/vendors/sfmc-app.md B.3."""
        if tssd is not None and tssd != self.mc_user["tssd"]:
            return _error(404, 0, "Not Found")
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            self.userinfo_calls += 1
            expires = self.tokens.get(token)
            user = self.user_tokens.get(token)
            if user is None or expires is None or expires <= time.monotonic():
                self.unauthorized += 1
                return _error(401, 0, "Not Authorized")
        base = request.host_url
        return jsonify(
            exp=int(time.time() + DEFAULT_TOKEN_LIFETIME),
            iss=f"{base}tssd/{user['tssd']}/",
            user={
                "sub": f"{user['name']}-sub",
                "name": user["name"],
                "preferred_username": "7012345",
                "email": user["email"],
                "locale": "en-US",
                "zoneinfo": "Europe/London",
                "timezone": {"longName": "(GMT) London", "shortName": "GMT+0", "offset": 0.0, "dst": False},
            },
            organization={
                "member_id": int(user["mid"]),
                "enterprise_id": int(user["eid"]),
                "stackKey": user["stack"],
            },
            rest={"rest_instance_url": base, "soap_instance_url": base},
        )

    def set_mc_user(self):
        """The user signed in to Marketing Cloud: any of {"eid", "mid", "tssd", "name", "email", "stack"}."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            message = "JSON object {eid, mid, tssd, name, email, stack}"
            return jsonify(error="invalid_body", message=message), 400
        checks = {"eid": _ID, "mid": _ID, "tssd": _TSSD, "name": None, "email": None, "stack": _STACK}
        fields: dict[str, list[str]] = {}
        for name, value in body.items():
            if name not in checks:
                fields[name] = ["unknown field"]
            elif not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
                fields[name] = ["must be a non-empty string"]
            elif checks[name] is not None and not checks[name].fullmatch(str(value)):
                fields[name] = [_SHAPES.get(name, "digits only")]
        if fields:
            return jsonify(error="invalid_body", message="user rejected", fields=fields), 400
        with self.lock:
            self.mc_user.update({name: str(value) for name, value in body.items()})
            return jsonify(self.mc_user)

    def revoke_refresh_tokens(self):
        """Every refresh token stops working (the admin's user was deactivated, say)."""
        with self.lock:
            self.refresh_tokens.clear()
        return jsonify(ok=True)

    def _guard(self, account: str):
        """Auth, throttling and injected faults shared by every REST route (None = go on)."""
        header = request.headers.get("Authorization", "")
        with self.lock:
            expires = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
            if expires is None or expires <= time.monotonic():
                self.unauthorized += 1
                return _error(401, 0, "Not Authorized")
        if not self.admit(account):
            return _error(429, 50100, "Rate limit exceeded", **{"Retry-After": "5"})
        if self.inject():
            return _error(500, 0, "injected fault")
        return None

    def token_context(self):
        """Who a token belongs to, shaped like SFMC's tokenContext (ids as numbers when numeric)."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            self.token_context_calls += 1
            context = self.jb_tokens.get(token)
            expires = self.tokens.get(token)
            if context is None and expires is not None and expires > time.monotonic():
                account = self.token_accounts.get(token, "")
                context = {"mid": account, "eid": account, "userId": "api-user"}
            if context is None:
                self.unauthorized += 1
                return _error(401, 0, "Not Authorized")
        if not self.admit("mid"):
            return _error(429, 50100, "Rate limit exceeded", **{"Retry-After": "5"})
        if self.inject():
            return _error(500, 0, "injected fault")

        def number(value: str) -> int | str:
            return int(value) if value.isdigit() else value

        return jsonify(
            enterprise={"id": number(context["eid"])},
            organization={
                "id": number(context["mid"]),
                "enterprise_id": number(context["eid"]),
                "stack_key": "SANDBOX",
            },
            user={"id": number(context["userId"]), "culture_code": "en-US"},
            application={"id": "sandbox-app", "package": "sandbox"},
        )

    def register_jb_token(self):
        """A token as Journey Builder hands the activity UI: {"token", "mid", "eid"?, "userId"?}."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="invalid_body", message="JSON object {token, mid, eid, userId}"), 400
        fields = {}
        for name in ("token", "mid", "eid", "userId"):
            value = body.get(name)
            if value is None and name in ("eid", "userId"):
                continue  # optional: eid defaults to mid
            if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
                fields[name] = ["must be a non-empty string or number"]
        if fields:
            return jsonify(error="invalid_body", message="JB token rejected", fields=fields), 400
        mid = str(body["mid"])
        context = {"mid": mid, "eid": str(body.get("eid") or mid), "userId": str(body.get("userId") or "7")}
        with self.lock:
            self.jb_tokens[str(body["token"])] = context
        return jsonify(ok=True)

    def rowset(self, de_key: str):
        refused = self._guard("mid")
        if refused is not None:
            return refused
        rows = request.get_json(silent=True)
        if not isinstance(rows, list) or not rows:
            return _error(400, 10000, "body must be a non-empty array of {keys, values}")
        if len(rows) > ROWSET_LIMIT:
            return _error(
                400,
                10006,
                f"Unable to save rows: more than {ROWSET_LIMIT} rows",
                [{"message": f"{len(rows)} rows sent", "errorcode": 10006}],
            )
        with self.lock:
            self.rowset_calls += 1
            self.rowset_sizes.append(len(rows))
            store = self.data_extensions.setdefault(de_key, {})
            for index, row in enumerate(rows):
                keys = row.get("keys") if isinstance(row, dict) else None
                values = row.get("values") if isinstance(row, dict) else None
                bad = not isinstance(keys, dict) or not keys or not isinstance(values, dict)
                if not bad and str(keys.get("ContactKey")) in self.bad_contact_keys:
                    bad = True
                if bad:  # like SFMC: rows before the first bad one are saved, the rest are not
                    return _error(
                        400,
                        10006,
                        f"Unable to save rows for data extension {de_key}",
                        [{"message": f"row {index} is invalid", "errorcode": 10001}],
                    )
                pk = json.dumps(keys, sort_keys=True)
                store[pk] = {**store.get(pk, {}), **keys, **values}
        return jsonify(rows)

    def async_events(self):
        refused = self._guard("mid")
        if refused is not None:
            return refused
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("members"), list):
            return _error(400, 10000, "body must be {eventDefinitionKey, members[]}")
        key, members = body.get("eventDefinitionKey"), body["members"]
        if not isinstance(key, str) or not key:
            return _error(400, 10000, "eventDefinitionKey is required")
        if not members or len(members) > EVENTS_LIMIT:
            return _error(400, 10000, f"1 to {EVENTS_LIMIT} members per request")
        if any(not isinstance(m, dict) or not m.get("contactKey") for m in members):
            return _error(400, 10000, "every member needs a contactKey")
        with self.lock:
            self.release_calls += 1
            for member in members:
                self.releases.append({"eventDefinitionKey": key, **member})
        return jsonify(
            requestId=secrets.token_hex(8),
            count=len(members),
            notQueuedCount=0,
            members=[{"contactKey": m["contactKey"]} for m in members],
        ), 202

    def get_journey(self, definition_id: str):
        """A journey version as GET /interaction/v1/interactions/{id}?versionNumber=N answers it
        (its status only; 404 for one the sandbox was not told about)."""
        refused = self._guard("mid")
        if refused is not None:
            return refused
        asked = request.args.get("versionNumber")
        try:
            version = int(asked) if asked else 0
        except ValueError:
            return _error(400, 10000, "versionNumber must be a number")
        with self.lock:
            self.journey_reads += 1
            if not version:  # none asked for: the latest (getInteractionById)
                version = max((v for (i, v) in self.journeys if i == definition_id), default=1)
            found = self.journeys.get((definition_id, version))
        if found is None:
            return _error(404, 30000, "journey not found")
        status, activities, name, names = found
        extras = request.args.get("extras", "")
        answer: dict[str, Any] = {"id": definition_id, "version": version, "status": status, "name": name}
        if extras in ("all", "activities"):
            answer["activities"] = [{"id": a, "type": "REST", "name": names.get(a, "")} for a in activities]
        return jsonify(answer)

    def set_journey(self):
        """`{"id", "version", "status", "name"?, "activities": [id or {"id", "name"}]}`: what SFMC
        says of that journey version from now on (a test stops a journey here, or names it, as a
        marketer would in Journey Builder)."""
        body = request.get_json(silent=True) or {}
        key = (str(body.get("id", "")), int(body.get("version", 1)))
        ids: list[str] = []
        names: dict[str, str] = {}
        for item in body.get("activities") or []:
            activity_id = str(item.get("id", "")) if isinstance(item, dict) else str(item)
            ids.append(activity_id)
            if isinstance(item, dict) and item.get("name"):
                names[activity_id] = str(item["name"])
        with self.lock:
            self.journeys[key] = (str(body.get("status", "")), ids, str(body.get("name", "")), names)
        return jsonify(ok=True)

    def get_contact(self, key: str):
        refused = self._guard("mid")
        if refused is not None:
            return refused
        with self.lock:
            contact = self.contacts.get(key)
        if contact is None:
            return _error(404, 10000, f"contact {key} not found")
        return jsonify({"contactKey": key, **contact})

    def create_contact(self):
        refused = self._guard("mid")
        if refused is not None:
            return refused
        body = request.get_json(silent=True)
        key = body.get("contactKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            return _error(400, 10000, "contactKey is required")
        email = ""
        for attribute_set in body.get("attributeSets") or []:
            for item in attribute_set.get("items") or []:
                for value in item.get("values") or []:
                    if value.get("name") == "Email Address":
                        email = str(value.get("value") or "")
        with self.lock:
            if key in self.contacts:
                return _error(400, 10000, f"contact {key} already exists")
            self.contacts[key] = {"email": email, "createdBy": "api"}
            self.contacts_created += 1
        return jsonify({"operationStatus": "OK", "contactKey": key, "contactID": len(self.contacts)})

    def seed_contacts(self):
        """Contacts that exist before the integration: {"contactKeys": [...]}."""
        body = request.get_json(silent=True) or {}
        with self.lock:
            for key in body.get("contactKeys") or []:
                self.contacts.setdefault(str(key), {"email": "", "createdBy": "seed"})
        return jsonify(contacts=len(self.contacts))

    @staticmethod
    def _primary_key(item: dict[str, Any]) -> dict[str, Any] | None:
        """The sandbox knows the primary keys of the two data extensions we write."""
        for names in (("CalendarSubscriptionId",), ("ContactKey", "ExecutionId")):
            if all(item.get(n) not in (None, "") for n in names):
                return {n: item[n] for n in names}
        return None

    def async_upsert(self, de_key: str):
        refused = self._guard("mid")
        if refused is not None:
            return refused
        body = request.get_json(silent=True)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, 10000, "body must be {items: [...]}")
        if len(items) > 32000:
            return _error(400, 10000, "at most 32000 items per request")
        request_id = str(uuid.uuid4())
        results = []
        with self.lock:
            self.async_calls += 1
            store = self.data_extensions.setdefault(de_key, {})
            for item in items:
                keys = self._primary_key(item) if isinstance(item, dict) else None
                if keys is None or str(item.get("SubscriberExternalId", "")) in self.bad_contact_keys:
                    results.append(
                        {
                            "errorCode": "ValidationError",
                            "message": "missing primary key or invalid row",
                            "status": "Error",
                            "item": item,
                        }
                    )
                    continue
                pk = json.dumps(keys, sort_keys=True)
                store[pk] = {**store.get(pk, {}), **item}
            self.async_requests[request_id] = {"results": results}
        return jsonify(requestId=request_id, resultMessages=[]), 202

    def _async_request(self, request_id: str) -> tuple[dict[str, Any] | None, Any]:
        """(the async request, None) or (None, the error answer)."""
        refused = self._guard("mid")
        if refused is not None:
            return None, refused
        with self.lock:
            found = self.async_requests.get(request_id)
        if found is None:
            return None, _error(404, 10000, "unknown request")
        return found, None

    def async_status(self, request_id: str):
        found, refused = self._async_request(request_id)
        if found is None:
            return refused
        status = {
            "requestStatus": "Complete",
            "resultStatus": "OK",
            "hasErrors": bool(found["results"]),
            "requestId": request_id,
        }
        return jsonify(status=status, requestId=request_id)

    def async_results(self, request_id: str):
        found, refused = self._async_request(request_id)
        if found is None:
            return refused
        items = found["results"]
        return jsonify(page=1, pageSize=len(items), count=len(items), items=items)

    def rows_route(self):
        de_key = request.args.get("de", "")
        with self.lock:
            return jsonify(rows=list(self.data_extensions.get(de_key, {}).values()))

    def revoke_tokens(self):
        """Invalidate every issued token now (tests the refresh-once-on-401 path)."""
        with self.lock:
            self.tokens.clear()
            self.token_accounts.clear()
        return jsonify(ok=True)

    def set_bad_rows(self):
        body = request.get_json(silent=True) or {}
        with self.lock:
            self.bad_contact_keys = {str(k) for k in body.get("contactKeys", [])}
        return jsonify(ok=True)

    def state(self) -> dict[str, Any]:
        return {
            "data_extensions": {k: len(v) for k, v in self.data_extensions.items()},
            "rowset_calls": self.rowset_calls,
            "max_rows_per_rowset": max(self.rowset_sizes, default=0),
            "rows_written": sum(self.rowset_sizes),
            "release_calls": self.release_calls,
            "journey_reads": self.journey_reads,
            "released_contacts": len(self.releases),
            "released_unique_contacts": len({r["contactKey"] for r in self.releases}),
            "unauthorized": self.unauthorized,
            "contacts": len(self.contacts),
            "contacts_created": self.contacts_created,
            "async_calls": self.async_calls,
            "token_context_calls": self.token_context_calls,
            "authorize_calls": self.authorize_calls,
            "userinfo_calls": self.userinfo_calls,
            "refresh_grants": self.refresh_grants,
            "refresh_tokens": len(self.refresh_tokens),
            "mc_user": dict(self.mc_user),
            **self.soap.state(),
        }
