"""SFMC REST simulator: token, sync rowsets (50-row limit), async journey events, throttling.

Behaviour as sfmc-custom-activity.md describes it: 429 with errorcode 50100 and
`Retry-After: 5`; a rowset is rejected from its first bad row on (rows before it are saved);
an expired or revoked token answers 401.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from flask import jsonify, request

from pipeline.sandbox.common import Simulator

DEFAULT_CLIENT_ID = "sandbox-sfmc-client"
DEFAULT_CLIENT_SECRET = "sandbox-sfmc-secret"
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
        self.reset()
        app = self.app
        app.add_url_rule("/v2/token", "token", self.token, methods=["POST"])
        app.add_url_rule("/hub/v1/dataevents/key:<de_key>/rowset", "rowset", self.rowset, methods=["POST"])
        app.add_url_rule("/interaction/v1/async/events", "events", self.async_events, methods=["POST"])
        app.add_url_rule("/__sandbox__/rows", "rows", self.rows_route)
        app.add_url_rule("/__sandbox__/revoke-tokens", "revoke", self.revoke_tokens, methods=["POST"])
        app.add_url_rule("/__sandbox__/bad-rows", "bad_rows", self.set_bad_rows, methods=["POST"])

    def reset(self) -> None:
        super().reset()
        self.tokens: dict[str, float] = {}
        self.data_extensions: dict[str, dict[str, dict[str, Any]]] = {}
        self.rowset_calls = 0
        self.rowset_sizes: list[int] = []
        self.release_calls = 0
        self.releases: list[dict[str, Any]] = []
        self.unauthorized = 0
        self.bad_contact_keys: set[str] = set()

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

    def rows_route(self):
        de_key = request.args.get("de", "")
        with self.lock:
            return jsonify(rows=list(self.data_extensions.get(de_key, {}).values()))

    def revoke_tokens(self):
        """Invalidate every issued token now (tests the refresh-once-on-401 path)."""
        with self.lock:
            self.tokens.clear()
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
            "release_calls": self.release_calls,
            "released_contacts": len(self.releases),
            "unauthorized": self.unauthorized,
        }
