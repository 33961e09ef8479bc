"""Rokt Calendar API client (reference: shared/reference/rokt-calendar-api.md §2-§3).

Thread-safety: one instance per worker process; requests.Session is not shared across forks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import requests

from pipeline.clients.errors import PermanentError, RetryableError, Unauthorized
from pipeline.clients.http import new_session, raise_for_status, send
from pipeline.settings import Tenant
from pipeline.tokens import SharedToken


def _error_model(response: requests.Response) -> str:
    """Rokt's Error Model is {"Code", "Reason"}; fall back to the raw text."""
    try:
        body = response.json()
        return f"{body.get('Code', '')}: {body.get('Reason', '')}"[:300]
    except ValueError:
        return (response.text or "")[:300]


class RoktClient:
    def __init__(
        self,
        tenant: Tenant,
        r: redis.Redis,
        timeout: tuple[float, float],
        session: requests.Session | None = None,
        gate: Callable[[], None] | None = None,
    ) -> None:
        """`gate` runs right before every API request (not token requests): the rate limiter."""
        self.tenant = tenant
        self.gate = gate or (lambda: None)
        self.base_url = tenant.rokt_api_base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or new_session()
        self.token = SharedToken(r, tenant.name, "rokt", self._fetch_token)

    def _fetch_token(self) -> dict[str, Any]:
        response = send(
            self.session,
            "POST",
            f"{self.base_url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(self.tenant.rokt_client_id, self.tenant.rokt_client_secret),
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        if response.status_code in (400, 401):
            raise PermanentError(
                f"Rokt token request rejected: HTTP {response.status_code} (check client id/secret)",
                status=response.status_code,
            )
        raise_for_status(response, "Rokt token", default_retry_after=5, describe=_error_model)
        body = response.json()
        if not body.get("access_token"):
            raise RetryableError("Rokt token response without access_token")
        return body

    def _authorized(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send with the shared bearer token; on 401 refresh once and send again."""
        for attempt in (1, 2):
            token = self.token.get()["access_token"]
            self.gate()  # after the token is in hand, so a slow token fetch cannot bunch requests
            response = send(
                self.session,
                method,
                f"{self.base_url}{path}",
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self.timeout,
                **kwargs,
            )
            if response.status_code != 401:
                return response
            self.token.invalidate(token)
            if attempt == 2:
                raise Unauthorized(f"Rokt {path}: 401 after token refresh", status=401)
        raise AssertionError("unreachable")  # pragma: no cover

    def create_subscription_event(self, event: dict[str, Any], subscription_ids: list[str]) -> None:
        """POST /v1/subscriptionevent/{accountCode}; 202 means validated and queued."""
        response = self._authorized(
            "POST",
            f"/v1/subscriptionevent/{self.tenant.rokt_account_code}",
            json={"event": event, "subscriptionIds": subscription_ids},
        )
        raise_for_status(response, "Rokt create event", default_retry_after=1, describe=_error_model)
