"""Rokt Calendar API client (reference: docs/vendors/rokt-calendar-api.md §2-§3)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from pipeline.clients.errors import CredentialsRejected, EventNotFound, RetryableError
from pipeline.clients.http import BearerClient, raise_for_status, send
from pipeline.infra.logsafe import mask_emails

# How a Rokt that refuses a second create of one eventId answers: 409, or 400 with this Code.
# Whether Rokt refuses, upserts or attaches is not documented, nor any code
# (docs/vendors/rokt-calendar-api.md §7); this one is the simulator's (which can do either),
# 409 is HTTP's own for "exists already".
DUPLICATE_EVENT_CODE = "DuplicateEventId"

# How Rokt says an update/delete/remove names an eventId it does not hold: undocumented
# (docs/vendors/rokt-calendar-api.md §3.3-3.5); this is the simulator's 400 Code. A bare 404 is
# not taken for it: the delete-everywhere path is inferred, and a wrong path must not pass for
# "already gone".
EVENT_NOT_FOUND_CODE = "EventNotFound"


def _error_model(response: requests.Response) -> str:
    """Rokt's Error Model is {"Code", "Reason"}; fall back to the raw text."""
    try:
        body = response.json()
        return f"{body.get('Code', '')}: {body.get('Reason', '')}"[:300]
    except ValueError:
        return (response.text or "")[:300]


def _error_code(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("Code", "")) if isinstance(body, dict) else ""


class RoktClient(BearerClient):
    vendor = "Rokt"

    def _base_url(self, token: dict[str, Any]) -> str:
        return self.tenant.rokt_api_base_url

    def _fetch_token(self) -> dict[str, Any]:
        response = send(
            self.session,
            "POST",
            f"{self.tenant.rokt_api_base_url.rstrip('/')}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(self.tenant.rokt_client_id, self.tenant.rokt_client_secret),
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        if response.status_code in (400, 401):
            raise CredentialsRejected(
                f"Rokt token request rejected: HTTP {response.status_code} (check client id/secret)",
                status=response.status_code,
            )
        raise_for_status(response, "Rokt token", default_retry_after=5, describe=_error_model)
        body = response.json()
        if not body.get("access_token"):
            raise RetryableError("Rokt token response without access_token")
        return body

    def create_subscription_event(self, event: dict[str, Any], subscription_ids: list[str]) -> bool:
        """POST /v1/subscriptionevent/{accountCode}; 202 means validated and queued. False when
        Rokt refuses the eventId as taken (409, or 400 DuplicateEventId): our eventIds are one
        per execution, so an earlier attempt of this one created it (its answer lost to a
        timeout, a crash, a redelivered task)."""
        response = self._authorized(
            "POST",
            f"/v1/subscriptionevent/{self.tenant.rokt_account_code}",
            json={"event": event, "subscriptionIds": subscription_ids},
        )
        if response.status_code == 409 or (
            response.status_code == 400 and _error_code(response) == DUPLICATE_EVENT_CODE
        ):
            return False
        raise_for_status(response, "Rokt create event", default_retry_after=1, describe=_error_model)
        return True

    def update_subscription_event(self, event: dict[str, Any]) -> None:
        """POST /v1/subscriptionevent/{accountCode}/update with the event object flat (Rokt's
        own shape, A3): changes the event named by `event["eventId"]` in every subscription that
        holds it. 202 means validated and queued; the calendars follow within minutes. Sending
        the same content again is harmless (a retry after a lost answer)."""
        self._event_change(
            "POST",
            f"/v1/subscriptionevent/{quote(self.tenant.rokt_account_code, safe='')}/update",
            "Rokt update event",
            event["eventId"],
            json=event,
        )

    def delete_subscription_event(self, event_id: str) -> None:
        """DELETE /v1/subscriptionevent/{accountCode}/{eventId}: the event leaves every
        subscription. A repeat after a lost answer finds it gone (EventNotFound)."""
        account = quote(self.tenant.rokt_account_code, safe="")
        self._event_change(
            "DELETE",
            f"/v1/subscriptionevent/{account}/{quote(event_id, safe='')}",
            "Rokt delete event",
            event_id,
        )

    def remove_subscription_event(self, subscription_id: str, event_id: str) -> None:
        """DELETE /v2/subscription/{accountCode}/{subscriptionId}/subscriptionevent/{eventId}:
        the event leaves this one subscription; others keep it."""
        account = quote(self.tenant.rokt_account_code, safe="")
        self._event_change(
            "DELETE",
            f"/v2/subscription/{account}/{quote(subscription_id, safe='')}"
            f"/subscriptionevent/{quote(event_id, safe='')}",
            "Rokt remove event",
            event_id,
        )

    def _event_change(self, method: str, path: str, what: str, event_id: str, **kwargs: Any) -> None:
        """Send one change to an existing event; errors map as for create (429 Throttled, 5xx
        RetryableError, other 4xx PermanentError), an unknown eventId to EventNotFound."""
        response = self._authorized(method, path, **kwargs)
        if response.status_code in (400, 404) and _error_code(response) == EVENT_NOT_FOUND_CODE:
            raise EventNotFound(
                f"{what}: Rokt does not hold eventId {event_id!r}: HTTP {response.status_code}: "
                f"{mask_emails(_error_model(response))}",
                event_id=event_id,
                status=response.status_code,
            )
        raise_for_status(response, f"{what} {event_id!r}", default_retry_after=1, describe=_error_model)

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        """GET /v1/subscription/{id}: the subscription with `eventsVisibleToSubscription`,
        or None when Rokt does not know it."""
        response = self._authorized("GET", f"/v1/subscription/{subscription_id}")
        if response.status_code == 404:
            return None
        raise_for_status(response, "Rokt get subscription", default_retry_after=1, describe=_error_model)
        return response.json()
