"""Rokt Calendar API simulator (docs/vendors/rokt-calendar-api.md §14 "Simulator profile").

Token by Basic client credentials (configurable lifetime); create event answers 202 and the
calendar entry lands after a delay; a per-account rate limit answers 429 + Retry-After; a
repeated `eventId` is accepted without a second calendar entry and counted, or refused with 400
DuplicateEventId (`reject_duplicate_events`); a create can be applied and its answer lost
(`lose_next_answers`). Events already sent can be updated everywhere, deleted everywhere or
removed from one subscription (202, applied after the same delay as a create; 400 EventNotFound
for an eventId the account does not hold), and a subscriber can take one out of their calendar
(`/__sandbox__/remove-event`); each sends its webhook. What every calendar shows is kept
(`/__sandbox__/calendars`), so tests can check the calendars' content, not only the calls.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import jsonify, request
from tzlocal.windows_tz import win_tz

from pipeline.sandbox.common import Simulator, max_in_any_window
from pipeline.sandbox.webhook_sender import WebhookSender

DEFAULT_CLIENT_ID = "sandbox-rokt-client"
DEFAULT_CLIENT_SECRET = "sandbox-rokt-secret"
DEFAULT_TOKEN_LIFETIME = 300.0
MAX_SUBSCRIPTION_IDS = 1000


@dataclass
class Entry:
    """One event in one subscription's calendar; `title` and `start` are its latest content."""

    subscription_id: str
    event_id: str
    title: str
    start: str
    lands_at: float
    # (from when, the event as the calendar shows it): the create, then each update
    versions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    removed_at: float | None = None  # when it leaves the calendar (delete, remove, the subscriber)
    by_subscriber: bool = False  # the subscriber took it out (`/__sandbox__/remove-event`)

    def shown(self, now: float) -> dict[str, Any] | None:
        """What the calendar shows at `now`, or None (not landed yet, or taken out)."""
        if self.lands_at > now or (self.removed_at is not None and self.removed_at <= now):
            return None
        current = None
        for since, event in self.versions:
            if since <= now:
                current = event
        return current

    def pending_change(self, now: float) -> bool:
        """An update or removal was accepted but the calendar does not show it yet."""
        if self.removed_at is not None:
            return self.removed_at > now
        return bool(self.versions) and self.versions[-1][0] > now


def _event_problem(event: dict[str, Any], prefix: str) -> str | None:
    """What makes an event object invalid (create and update require the same fields)."""
    for name in ("eventId", "title", "start", "timezone"):
        if not isinstance(event.get(name), str) or not event[name].strip():
            return f"{prefix}{name} is required"
    if event["timezone"] not in win_tz:
        return f"{prefix}timezone {event['timezone']!r} is not a Windows time-zone ID"
    return None


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
        self.sender = WebhookSender()
        self.reset()
        app = self.app
        app.add_url_rule("/oauth2/token", "token", self.token, methods=["POST"])
        app.add_url_rule(
            "/v1/subscriptionevent/<account>", "create_event", self.create_event, methods=["POST"]
        )
        app.add_url_rule(
            "/v1/subscriptionevent/<account>/update", "update_event", self.update_event, methods=["POST"]
        )
        app.add_url_rule(
            "/v1/subscriptionevent/<account>/<path:event_id>",
            "delete_event",
            self.delete_event,
            methods=["DELETE"],
        )
        app.add_url_rule(
            "/v2/subscription/<account>/<sub_id>/subscriptionevent/<path:event_id>",
            "remove_event",
            self.remove_event,
            methods=["DELETE"],
        )
        app.add_url_rule("/v1/subscription/<sub_id>", "get_subscription", self.get_subscription)
        app.add_url_rule("/__sandbox__/subscriptions", "seed", self.seed_subscriptions, methods=["POST"])
        app.add_url_rule("/v2/subscribe/<account>/<calendar>", "subscribe", self.subscribe, methods=["POST"])
        app.add_url_rule(
            "/v1/subscription/<account>/<calendar>", "deactivate", self.deactivate, methods=["DELETE"]
        )
        app.add_url_rule(
            "/__sandbox__/subscribe", "sandbox_subscribe", self.sandbox_subscribe, methods=["POST"]
        )
        app.add_url_rule(
            "/__sandbox__/unsubscribe", "sandbox_unsubscribe", self.sandbox_unsubscribe, methods=["POST"]
        )
        app.add_url_rule(
            "/__sandbox__/remove-event", "subscriber_removes", self.subscriber_removes, methods=["POST"]
        )
        app.add_url_rule("/__sandbox__/calendars", "calendars", self.calendars_route)
        app.add_url_rule("/__sandbox__/entries", "entries", self.entries_route)
        app.add_url_rule("/__sandbox__/webhooks", "webhooks", self.configure_webhooks, methods=["POST"])
        app.add_url_rule("/__sandbox__/posts", "posts", self.post_times)

    def reset(self) -> None:
        super().reset()
        self.sender.reset()
        self.tokens: dict[str, float] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.entries: dict[tuple[str, str], Entry] = {}
        self.event_posts = 0
        self.repeated_event_posts = 0
        self.refused_repeats = 0  # repeats answered 400 DuplicateEventId (reject_duplicate_events)
        self.lost_answers = 0  # calls applied and answered 500 (lose_next_answers)
        self.accepted_post_times: list[float] = []
        self.throttled_post_times: list[float] = []
        # update / delete / remove calls on events already sent
        self.event_updates = 0
        self.event_deletes = 0
        self.event_removals = 0
        self.unknown_event_changes = 0  # answered 400 EventNotFound
        self.removed_by_subscribers = 0
        self.accepted_change_times: list[float] = []
        self.throttled_change_times: list[float] = []

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

    def _refusal(self, account: str, throttled_times: list[float]):
        """What every event call answers before reading its body: 401, 429 (the account's one
        rate window, shared by all of them), an injected 500; None to go on."""
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        if not self.admit(account):
            with self.lock:
                throttled_times.append(time.monotonic())
            return _error(429, "RateLimited", "too many requests", **{"Retry-After": "1"})
        if self.inject():
            return _error(500, "InternalError", "injected fault")
        return None

    def _lose_answer(self) -> bool:
        """Whether this applied call is answered 500 (`lose_next_answers`); under the lock."""
        if self.faults.lose_next_answers <= 0:
            return False
        self.faults.lose_next_answers -= 1
        self.lost_answers += 1
        return True

    def create_event(self, account: str):
        refusal = self._refusal(account, self.throttled_post_times)
        if refusal is not None:
            return refusal
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
                if self.faults.reject_duplicate_events:
                    self.refused_repeats += 1
                    return _error(400, "DuplicateEventId", f"event {event['eventId']} already exists")
            lose_answer = self._lose_answer()
            stored = self.events.setdefault(
                event["eventId"], {"event": event, "account": account, "subscriptionIds": []}
            )
            lands_at = now + self.faults.land_delay_ms / 1000
            for sub_id in ids:
                if sub_id not in stored["subscriptionIds"]:
                    stored["subscriptionIds"].append(sub_id)
                key = (sub_id, event["eventId"])
                if key not in self.entries or self.entries[key].removed_at is not None:
                    self.sender.send(self._event_added(account, sub_id, event), delay=lands_at - now)
                    self.entries[key] = Entry(
                        sub_id,
                        event["eventId"],
                        event["title"],
                        event["start"],
                        lands_at,
                        versions=[(lands_at, event)],
                    )
        if lose_answer:
            return _error(500, "InternalError", "injected fault after the event was created")
        return "", 202

    def _validate(self, account: str, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            return "body must be {event, subscriptionIds}"
        problem = _event_problem(body["event"], "event.")
        if problem:
            return problem
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

    def update_event(self, account: str):
        """§3.3: the event flat (Rokt's shape) or wrapped in {"event"} (Braze's); every
        subscription holding it shows the new content after the landing delay."""
        refusal = self._refusal(account, self.throttled_change_times)
        if refusal is not None:
            return refusal
        body = request.get_json(silent=True)
        event = body.get("event") if isinstance(body, dict) and isinstance(body.get("event"), dict) else body
        if not isinstance(event, dict):
            return _error(400, "ValidationFailed", "body must be the event object (or {event})")
        problem = _event_problem(event, "")
        if problem:
            return _error(400, "ValidationFailed", problem)
        event_id = event["eventId"]
        now = time.monotonic()
        with self.lock:
            stored = self._held(event_id, account)
            if stored is None:
                return self._unknown_event(event_id, account)
            self.event_updates += 1
            lose_answer = self._accept_change(now)
            stored["event"] = event
            applies_at = now + self.faults.land_delay_ms / 1000
            for sub_id in stored["subscriptionIds"]:
                entry = self.entries.get((sub_id, event_id))
                if entry is not None and entry.removed_at is None:
                    entry.title, entry.start = event["title"], event["start"]
                    entry.versions.append((max(applies_at, entry.lands_at), event))
            envelope = self._envelope("SubscriptionEventUpdated", account, {"subscriptionEvent": event})
        self.sender.send(envelope, delay=applies_at - now)
        if lose_answer:
            return _error(500, "InternalError", "injected fault after the event was updated")
        return "", 202

    def delete_event(self, account: str, event_id: str):
        """§3.4: the event leaves every subscription after the landing delay; a later create of
        the same eventId is a new event."""
        refusal = self._refusal(account, self.throttled_change_times)
        if refusal is not None:
            return refusal
        now = time.monotonic()
        with self.lock:
            stored = self._held(event_id, account)
            if stored is None:
                return self._unknown_event(event_id, account)
            self.event_deletes += 1
            lose_answer = self._accept_change(now)
            del self.events[event_id]
            leaves_at = now + self.faults.land_delay_ms / 1000
            for sub_id in stored["subscriptionIds"]:
                entry = self.entries.get((sub_id, event_id))
                if entry is not None and entry.removed_at is None:
                    entry.removed_at = leaves_at
            envelope = self._envelope(
                "SubscriptionEventDeleted", account, {"subscriptionEvent": {"eventId": event_id}}
            )
        self.sender.send(envelope, delay=leaves_at - now)
        if lose_answer:
            return _error(500, "InternalError", "injected fault after the event was deleted")
        return "", 202

    def remove_event(self, account: str, sub_id: str, event_id: str):
        """§3.5: the event leaves this subscription only, after the landing delay."""
        refusal = self._refusal(account, self.throttled_change_times)
        if refusal is not None:
            return refusal
        now = time.monotonic()
        with self.lock:
            if self._held(event_id, account) is None:
                return self._unknown_event(event_id, account)
            sub = self.subscriptions.get(sub_id)
            if sub is None or sub["accountCode"] != account:
                return _error(
                    400, "SubscriptionNotFound", f"no subscription {sub_id!r} in account {account!r}"
                )
            entry = self.entries.get((sub_id, event_id))
            if entry is None or entry.removed_at is not None:
                return self._unknown_event(event_id, account, sub_id)
            self.event_removals += 1
            lose_answer = self._accept_change(now)
            entry.removed_at = now + self.faults.land_delay_ms / 1000
            envelope = self._event_removed(account, sub_id, event_id)
        self.sender.send(envelope, delay=entry.removed_at - now)
        if lose_answer:
            return _error(500, "InternalError", "injected fault after the event was removed")
        return "", 202

    def _held(self, event_id: str, account: str) -> dict[str, Any] | None:
        """The event a change names, if this account holds it (under the lock)."""
        stored = self.events.get(event_id)
        return stored if stored is not None and stored["account"] == account else None

    def _accept_change(self, now: float) -> bool:
        """An update, delete or remove applied: its arrival counted; whether its answer is lost."""
        self.accepted_change_times.append(now)
        return self._lose_answer()

    def _unknown_event(self, event_id: str, account: str, sub_id: str | None = None):
        """400 EventNotFound (Rokt's answer is undocumented: docs/vendors/rokt-calendar-api.md §3.3)."""
        with self.lock:
            self.unknown_event_changes += 1
        where = f"subscription {sub_id!r}" if sub_id else f"account {account!r}"
        return _error(400, "EventNotFound", f"no event {event_id!r} in {where}")

    def get_subscription(self, sub_id: str):
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        now = time.monotonic()
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                return _error(404, "SubscriptionNotFound", f"no subscription {sub_id}")
            shown = [(e.event_id, e.shown(now)) for (s, _), e in self.entries.items() if s == sub_id]
            visible = [
                {
                    "subscriptionEventId": event_id,
                    "title": event["title"],
                    "startDateTime": event["start"],
                    "endDateTime": event.get("end"),
                    "description": event.get("description"),
                    "location": event.get("location"),
                    "timezone": event.get("timezone"),
                    "isSubscriptionEvent": True,
                }
                for event_id, event in shown
                if event is not None
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
                calendar = item.get("calendarCode", "sandbox-calendar")
                self.subscriptions[sub_id] = {
                    "accountCode": account,
                    "calendarCode": calendar,
                    "calendarId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{calendar}")),
                    "calendarTitle": "Sandbox Calendar",
                    "subscriptionMethod": "Webcal",
                    "subscriberId": item.get("subscriberId", ""),
                    "emailAddress": item.get("emailAddress", ""),
                    "isActive": bool(item.get("isActive", True)),
                }
                created.append(sub_id)
        return jsonify(subscriptionIds=created)

    # -- subscriptions and webhooks --------------------------------------------------------
    def _envelope(self, event_type: str, account: str, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "eventId": str(uuid.uuid4()),
            "eventType": event_type,
            "eventDetails": {
                "actionType": "SubscriptionViaWebApi",
                "accountId": str(uuid.uuid5(uuid.NAMESPACE_DNS, account)),
                "accountName": f"{account} (sandbox)",
                "accountCode": account,
                **details,
            },
        }

    def _basic(self, sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions[sub_id]
        return {
            "calendarSubscriptionId": sub_id,
            "calendarId": sub["calendarId"],
            "calendarTitle": sub["calendarTitle"],
            "calendarCode": sub["calendarCode"],
            "subscriptionMethod": sub["subscriptionMethod"],
        }

    def _event_added(self, account: str, sub_id: str, event: dict[str, Any]) -> dict[str, Any]:
        return self._envelope(
            "SubscriptionEventAdded",
            account,
            {"subscription": self._basic(sub_id), "subscriptionEvent": event},
        )

    def _event_removed(self, account: str, sub_id: str, event_id: str) -> dict[str, Any]:
        return self._envelope(
            "SubscriptionEventRemoved",
            account,
            {"subscription": self._basic(sub_id), "subscriptionEvent": {"eventId": event_id}},
        )

    def _create_subscription(self, account: str, calendar: str, body: dict[str, Any]) -> dict[str, Any]:
        sub_id = str(uuid.uuid4())
        tags = [
            {
                "tagId": str(t.get("internalId") or t.get("tagId") or uuid.uuid4()),
                "tagText": t.get("tagText", ""),
            }
            for t in body.get("calendarTags") or []
            if isinstance(t, dict)
        ]
        sub = {
            "accountCode": account,
            "calendarCode": calendar,
            "calendarId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{account}/{calendar}")),
            "calendarTitle": f"{calendar.replace('-', ' ').title()}",
            "subscriptionMethod": "Webcal"
            if body.get("subscriptionMethod") in (None, 0, "Webcal")
            else "Google",
            "subscriberId": body.get("subscriberId") or "",
            "emailAddress": body.get("emailAddress") or "",
            "isActive": True,
            "details": {
                "calendarTags": tags,
                "subscriberId": body.get("subscriberId") or None,
                "emailAddress": body.get("emailAddress") or None,
                "optIn1": bool(body.get("marketingAllowed", False)),
                "optIn2": bool(body.get("additionalOptIn", False)),
                "countryCode": body.get("countryCode", "AU"),
                "geoCountry": body.get("geoCountry", "Australia"),
                "deviceName": body.get("deviceName", "Desktop"),
                "source": f"{account}.calendar.sandbox",
                "referrer": body.get("urlReferrer"),
                "utmSource": body.get("utmSource"),
                "utmMedium": body.get("utmMedium"),
                "utmCampaign": body.get("utmCampaign"),
                "utmContent": body.get("utmContent"),
                "timeZoneId": body.get("timeZoneId"),
            },
        }
        with self.lock:
            self.subscriptions[sub_id] = sub
            details = {k: v for k, v in sub["details"].items() if v is not None}
            envelope = self._envelope(
                "Subscribe", account, {"subscription": {**self._basic(sub_id), **details}}
            )
        self.sender.send(envelope)
        return {
            "subscriptionId": sub_id,
            "subscriptionUrl": f"webcal://{account}.calendar.sandbox/{calendar}/{sub_id}",
            "isNewSubscription": True,
            "subscriberId": sub["subscriberId"],
        }

    def _deactivate(self, sub_id: str, reason: str) -> bool:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                return False
            sub["isActive"] = False
            removed = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            envelope = self._envelope(
                "Unsubscribe",
                sub["accountCode"],
                {
                    "subscription": {
                        **self._basic(sub_id),
                        "removedDateTimeUtc": removed,
                        "unsubscribeReasonText": reason,
                        "countryCode": sub.get("details", {}).get("countryCode", "AU"),
                    }
                },
            )
        self.sender.send(envelope)
        return True

    def subscribe(self, account: str, calendar: str):
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "ValidationFailed", "body must be a JSON object")
        return jsonify(self._create_subscription(account, calendar, body))

    def deactivate(self, account: str, calendar: str):
        if not self._authorized():
            return _error(401, "Unauthorized", "missing, unknown or expired bearer token")
        body = request.get_json(silent=True) or {}
        sub_id = body.get("id")
        sub = self.subscriptions.get(sub_id) if isinstance(sub_id, str) else None
        if sub is None or sub["accountCode"] != account or sub["calendarCode"] != calendar:
            return _error(400, "SubscriptionNotFound", f"no subscription {sub_id!r} on {account}/{calendar}")
        self._deactivate(sub_id, str(body.get("unsubscribeReasonText") or ""))
        return "", 202

    def sandbox_subscribe(self):
        """Like POST /v2/subscribe without a token: {"accountCode", "calendarCode", ...}."""
        body = request.get_json(silent=True) or {}
        account, calendar = body.get("accountCode"), body.get("calendarCode", "sandbox-calendar")
        if not isinstance(account, str) or not account:
            return jsonify(error="invalid_body", message="accountCode required"), 400
        return jsonify(self._create_subscription(account, str(calendar), body))

    def sandbox_unsubscribe(self):
        body = request.get_json(silent=True) or {}
        if not self._deactivate(str(body.get("id")), str(body.get("reason") or "sandbox")):
            return jsonify(error="not_found", message="no such subscription"), 404
        return jsonify(ok=True)

    def subscriber_removes(self):
        """A subscriber takes one event out of their calendar (not a Rokt API):
        {"subscriptionId", "eventId"}; it leaves at once and `SubscriptionEventRemoved` is sent."""
        body = request.get_json(silent=True) or {}
        sub_id, event_id = body.get("subscriptionId"), body.get("eventId")
        if not isinstance(sub_id, str) or not isinstance(event_id, str):
            return jsonify(error="invalid_body", message="subscriptionId and eventId required"), 400
        now = time.monotonic()
        with self.lock:
            entry = self.entries.get((sub_id, event_id))
            if entry is None or entry.shown(now) is None:
                return jsonify(error="not_found", message="the calendar does not show that event"), 404
            entry.removed_at = now
            entry.by_subscriber = True
            self.removed_by_subscribers += 1
            envelope = self._event_removed(self.subscriptions[sub_id]["accountCode"], sub_id, event_id)
        self.sender.send(envelope)
        return jsonify(ok=True)

    def calendars(self) -> dict[str, dict[str, dict[str, Any]]]:
        """What each subscription's calendar shows now: {subscriptionId: {eventId: event}}, every
        subscription included (empty when it shows nothing). Apart from `state()`, which is
        polled during runs: this is as large as all calendars together."""
        now = time.monotonic()
        with self.lock:
            held: dict[str, dict[str, dict[str, Any]]] = {sub_id: {} for sub_id in self.subscriptions}
            for (sub_id, event_id), entry in self.entries.items():
                event = entry.shown(now)
                if event is not None:
                    held.setdefault(sub_id, {})[event_id] = event
        return held

    def calendars_route(self):
        return jsonify(self.calendars())

    def entries_route(self):
        """Every calendar entry there has been, a report's ground truth: [{subscriptionId,
        eventId, title, landed, removedBySubscriber}] (`title`: the latest content's)."""
        now = time.monotonic()
        with self.lock:
            return jsonify(
                [
                    {
                        "subscriptionId": entry.subscription_id,
                        "eventId": entry.event_id,
                        "title": entry.title,
                        "landed": entry.lands_at <= now,
                        "removedBySubscriber": entry.by_subscriber,
                    }
                    for entry in self.entries.values()
                ]
            )

    def configure_webhooks(self):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="invalid_body", message="JSON object of webhook settings"), 400
        try:
            with self.sender.lock:
                self.sender.config.update(body)
        except (KeyError, TypeError, ValueError) as exc:
            return jsonify(error="invalid_setting", message=f"unknown or invalid setting: {exc}"), 400
        return jsonify(self.sender.state()["webhook"])

    def post_times(self):
        """When each create arrived (this host's monotonic clock): accepted and answered 429;
        the same for update/delete/remove calls (`changes`, `throttled_changes`)."""
        with self.lock:
            return jsonify(
                accepted=self.accepted_post_times,
                throttled=self.throttled_post_times,
                changes=self.accepted_change_times,
                throttled_changes=self.throttled_change_times,
            )

    def state(self) -> dict[str, Any]:
        now = time.monotonic()
        gone = [e for e in self.entries.values() if e.removed_at is not None and e.removed_at <= now]
        held = [e for e in self.entries.values() if e.removed_at is None or e.removed_at > now]
        landed = [e for e in held if e.lands_at <= now]
        seen: dict[tuple[str, str, str], set[str]] = {}
        for e in self.entries.values():
            if e.removed_at is None:
                seen.setdefault((e.subscription_id, e.title, e.start), set()).add(e.event_id)
        limit = self.faults.rate_limit
        return {
            "subscriptions": len(self.subscriptions),
            "events": len(self.events),
            "event_posts": self.event_posts,
            "repeated_event_posts": self.repeated_event_posts,
            "refused_repeats": self.refused_repeats,
            "lost_answers": self.lost_answers,
            "calendar_entries": len(landed),
            "pending_calendar_entries": len(held) - len(landed),
            "duplicate_calendar_entries": sum(len(ids) - 1 for ids in seen.values()),
            "max_posts_in_any_1s_window": max_in_any_window(self.accepted_post_times),
            "rate_limit": limit,
            "active_subscriptions": sum(1 for sub in self.subscriptions.values() if sub["isActive"]),
            "event_updates": self.event_updates,
            "event_deletes": self.event_deletes,
            "event_removals": self.event_removals,
            "unknown_event_changes": self.unknown_event_changes,
            "removed_by_subscribers": self.removed_by_subscribers,
            "removed_calendar_entries": len(gone),
            "pending_calendar_changes": sum(1 for e in self.entries.values() if e.pending_change(now)),
            "max_calls_in_any_1s_window": max_in_any_window(
                self.accepted_post_times + self.accepted_change_times
            ),
            **self.sender.state(),
        }
