"""Rokt Calendar API simulator (rokt-calendar-api.md §14 "Simulator profile").

Token by Basic client credentials (configurable lifetime); create event answers 202 and the
calendar entry lands after a delay; a per-account rate limit answers 429 + Retry-After; a
repeated `eventId` is accepted without a second calendar entry and counted.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import jsonify, request
from tzlocal.windows_tz import win_tz

from pipeline.sandbox.common import Simulator, max_in_any_window

DEFAULT_CLIENT_ID = "sandbox-rokt-client"
DEFAULT_CLIENT_SECRET = "sandbox-rokt-secret"
DEFAULT_TOKEN_LIFETIME = 300.0
MAX_SUBSCRIPTION_IDS = 1000
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass
class Entry:
    subscription_id: str
    event_id: str
    title: str
    start: str
    lands_at: float


def _error(status: int, code: str, reason: str, **headers: str):
    response = jsonify({"Code": code, "Reason": reason})
    response.status_code = status
    response.headers.update(headers)
    return response


class RoktSimulator(Simulator):
    name = "rokt"

    def __init__(self) -> None:
        super().__init__()
        self.clients = {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET}
        self.reset()
        app = self.app
        app.add_url_rule("/oauth2/token", "token", self.token, methods=["POST"])
        app.add_url_rule(
            "/v1/subscriptionevent/<account>", "create_event", self.create_event, methods=["POST"]
        )
        app.add_url_rule("/v1/subscription/<sub_id>", "get_subscription", self.get_subscription)
        app.add_url_rule("/__sandbox__/subscriptions", "seed", self.seed_subscriptions, methods=["POST"])

    def reset(self) -> None:
        super().reset()
        self.tokens: dict[str, float] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.entries: dict[tuple[str, str], Entry] = {}
        self.event_posts = 0
        self.repeated_event_posts = 0
        self.accepted_post_times: list[float] = []

    # -- vendor routes -------------------------------------------------------------------
    def token(self):
        header = request.headers.get("Authorization", "")
        with self.lock:
            self.counters.token_requests += 1
        if not header.startswith("Basic "):
            return jsonify(error="invalid_client"), 401
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return jsonify(error="invalid_client"), 401
        if self.clients.get(client_id) != secret:
            return jsonify(error="invalid_client"), 401
        if request.form.get("grant_type") != "client_credentials":
            return jsonify(error="unsupported_grant_type"), 400
        lifetime = self.faults.token_lifetime or DEFAULT_TOKEN_LIFETIME
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.monotonic() + lifetime
        return jsonify(access_token=token, token_type="bearer", expires_in=int(lifetime))

    def _authorized(self) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self.lock:
            expires = self.tokens.get(header[7:])
        return expires is not None and expires > time.monotonic()

    def create_event(self, account: str):
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        if not self.admit(account):
            return _error(429, "RateLimited", "too many requests", **{"Retry-After": "1"})
        if self.inject():
            return _error(500, "InternalError", "injected fault")
        body = request.get_json(silent=True)
        problem = self._validate(account, body)
        if problem:
            return _error(400, "ValidationFailed", problem)
        event, ids = body["event"], body["subscriptionIds"]
        now = time.monotonic()
        with self.lock:
            self.event_posts += 1
            self.accepted_post_times.append(now)
            if event["eventId"] in self.events:
                self.repeated_event_posts += 1
            stored = self.events.setdefault(
                event["eventId"], {"event": event, "account": account, "subscriptionIds": []}
            )
            lands_at = now + self.faults.land_delay_ms / 1000
            for sub_id in ids:
                if sub_id not in stored["subscriptionIds"]:
                    stored["subscriptionIds"].append(sub_id)
                key = (sub_id, event["eventId"])
                if key not in self.entries:
                    self.entries[key] = Entry(
                        sub_id, event["eventId"], event["title"], event["start"], lands_at
                    )
        return "", 202

    def _validate(self, account: str, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            return "body must be {event, subscriptionIds}"
        event = body["event"]
        for name in ("eventId", "title", "start", "timezone"):
            if not isinstance(event.get(name), str) or not event[name].strip():
                return f"event.{name} is required"
        if event["timezone"] not in win_tz:
            return f"event.timezone {event['timezone']!r} is not a Windows time-zone ID"
        ids = body.get("subscriptionIds")
        if not isinstance(ids, list) or not ids:
            return "subscriptionIds must be a non-empty list"
        if len(ids) > MAX_SUBSCRIPTION_IDS:
            return f"at most {MAX_SUBSCRIPTION_IDS} subscriptionIds"
        with self.lock:
            for sub_id in ids:
                sub = self.subscriptions.get(sub_id) if isinstance(sub_id, str) else None
                if sub is None or sub["accountCode"] != account:
                    return f"subscription {sub_id!r} not found in account {account!r}"
                if not sub["isActive"]:
                    return f"subscription {sub_id!r} is not active"
        return None

    def get_subscription(self, sub_id: str):
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        now = time.monotonic()
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                return _error(404, "SubscriptionNotFound", f"no subscription {sub_id}")
            visible = [
                {
                    "subscriptionEventId": e.event_id,
                    "title": e.title,
                    "startDateTime": e.start,
                    "isSubscriptionEvent": True,
                }
                for (s, _), e in self.entries.items()
                if s == sub_id and e.lands_at <= now
            ]
        return jsonify({**sub, "subscriptionId": sub_id, "eventsVisibleToSubscription": visible})

    # -- sandbox control -----------------------------------------------------------------
    def seed_subscriptions(self):
        """Create subscriptions: {"accountCode", "subscriptions": [{"subscriberId", ...}]}."""
        body = request.get_json(silent=True) or {}
        account = body.get("accountCode")
        items = body.get("subscriptions")
        if not isinstance(account, str) or not isinstance(items, list):
            return jsonify(error="invalid_body", message="accountCode and subscriptions[] required"), 400
        created = []
        with self.lock:
            for item in items:
                sub_id = str(item.get("subscriptionId") or uuid.uuid4())
                self.subscriptions[sub_id] = {
                    "accountCode": account,
                    "calendarCode": item.get("calendarCode", "sandbox-calendar"),
                    "subscriberId": item.get("subscriberId", ""),
                    "emailAddress": item.get("emailAddress", ""),
                    "isActive": bool(item.get("isActive", True)),
                }
                created.append(sub_id)
        return jsonify(subscriptionIds=created)

    def state(self) -> dict[str, Any]:
        now = time.monotonic()
        landed = [e for e in self.entries.values() if e.lands_at <= now]
        seen: dict[tuple[str, str, str], set[str]] = {}
        for e in self.entries.values():
            seen.setdefault((e.subscription_id, e.title, e.start), set()).add(e.event_id)
        limit = self.faults.rate_limit
        return {
            "subscriptions": len(self.subscriptions),
            "events": len(self.events),
            "event_posts": self.event_posts,
            "repeated_event_posts": self.repeated_event_posts,
            "calendar_entries": len(landed),
            "pending_calendar_entries": len(self.entries) - len(landed),
            "duplicate_calendar_entries": sum(len(ids) - 1 for ids in seen.values()),
            "max_posts_in_any_1s_window": max_in_any_window(self.accepted_post_times),
            "rate_limit": limit,
        }
