"""SFMC REST simulator: token, sync rowsets (50-row limit), async journey events, throttling.

Behaviour as sfmc-custom-activity.md describes it: 429 with errorcode 50100 and
`Retry-After: 5`; a rowset is rejected from its first bad row on (rows before it are saved);
an expired or revoked token answers 401.

`GET /platform/v1/tokenContext` answers for tokens issued by `/v2/token` (the account asked for)
and for "Journey Builder tokens" a test registers with `POST /__sandbox__/jb-tokens`
`{"token", "mid", "eid"?, "userId"?}` (what the activity UI receives as `fuel2token`).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from flask import jsonify, request

from pipeline.sandbox.common import Simulator
from pipeline.sandbox.sfmc_soap import SoapService

DEFAULT_CLIENT_ID = "sandbox-sfmc-client"
DEFAULT_CLIENT_SECRET = "sandbox-sfmc-secret"
# the package's Web App integration (App Settings sign-in: authorization code, refresh token)
APP_CLIENT_ID = "sandbox-sfmc-app"
APP_CLIENT_SECRET = "sandbox-sfmc-app-secret"
DEFAULT_TOKEN_LIFETIME = 1079.0
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
        app.add_url_rule("/hub/v1/dataevents/key:<de_key>/rowset", "rowset", self.rowset, methods=["POST"])
        app.add_url_rule("/interaction/v1/async/events", "events", self.async_events, methods=["POST"])
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
        self.token_context_calls = 0
        self.data_extensions: dict[str, dict[str, dict[str, Any]]] = {}
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

    def token(self):
        body = request.get_json(silent=True) or {}
        with self.lock:
            self.counters.token_requests += 1
        if body.get("grant_type") != "client_credentials":
            return _error(400, 0, "grant_type must be client_credentials")
        if self.clients.get(body.get("client_id")) != body.get("client_secret"):
            return _error(401, 0, "invalid client credentials")
        lifetime = self.faults.token_lifetime or DEFAULT_TOKEN_LIFETIME
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + lifetime
            self.token_accounts[token] = str(body.get("account_id") or "")
        base = request.host_url
        return jsonify(
            access_token=token,
            token_type="Bearer",
            expires_in=int(lifetime),
            rest_instance_url=base,
            soap_instance_url=base,
            scope="data_extensions_read data_extensions_write journeys_execute",
        )

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
            "released_contacts": len(self.releases),
            "released_unique_contacts": len({r["contactKey"] for r in self.releases}),
            "unauthorized": self.unauthorized,
            "contacts": len(self.contacts),
            "contacts_created": self.contacts_created,
            "async_calls": self.async_calls,
            "token_context_calls": self.token_context_calls,
            **self.soap.state(),
        }
