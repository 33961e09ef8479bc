"""SFMC REST client (reference: docs/vendors/sfmc-custom-activity.md §6-§8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import redis
import requests

from pipeline.clients.errors import CredentialsRejected, PermanentError, RetryableError, Throttled
from pipeline.clients.http import BearerClient, raise_for_status, send
from pipeline.clients.tokens import Refusals
from pipeline.infra import keys
from pipeline.infra.crypto import SecretBox
from pipeline.infra.logsafe import mask_emails
from pipeline.infra.salt import deployment_salt
from pipeline.settings import Settings, Tenant
from pipeline.vocabulary import SfmcAuthMode

ROWSET_MAX_ROWS = 50  # "maximum of 50 columns and 50 records at a time"
ASYNC_EVENTS_MAX_MEMBERS = 100  # /interaction/v1/async/events
ASYNC_ROWS_MAX = 32_000  # /data/v1/async rows per request (hard limit)
BLOCKED_BACKOFF_SECONDS = 60.0  # errorcode 50200 "temporarily blocked" carries no Retry-After
# tokenContext answers a person waiting in Journey Builder: never wait as long as a task would
TOKEN_CONTEXT_READ_TIMEOUT = 5.0


class TokenRefused(PermanentError):
    """SFMC answered 401/403 to a token someone else handed us (the UI's fuel2token)."""


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(response: requests.Response) -> str:
    body = _error_body(response)
    if not body:
        return (response.text or "")[:300]
    parts = [f"errorcode {body.get('errorcode')}: {body.get('message', '')}"]
    for extra in body.get("additionalErrors") or []:
        parts.append(f"{extra.get('errorcode')}: {extra.get('message', '')}")
    return "; ".join(parts)[:500]


def credentials_digest(r: redis.Redis, tenant: Tenant) -> str:
    """Names the credentials a token is asked with (a refresh token is read at each request, so
    the mode names it), without revealing them: keyed (a plain hash of a guessable secret could be
    tested against guesses), 16 hex of `keys.personal_digest` under the deployment's salt."""
    named = (tenant.sfmc_auth_mode, tenant.sfmc_auth_base_url, tenant.sfmc_account_id, tenant.sfmc_client_id)
    secret = tenant.sfmc_client_secret if tenant.sfmc_auth_mode == SfmcAuthMode.CLIENT_CREDENTIALS else ""
    return keys.personal_digest(deployment_salt(r), tenant.name, "\n".join((*named, secret)))[:16]


class RefreshTokens(Protocol):
    """Where a signed-in tenant's offline refresh token lives (the tenant registry)."""

    def refresh_token(self, name: str) -> str: ...

    def replace_refresh_token(self, name: str, old: str, new: str) -> bool: ...


class SfmcClient(BearerClient):
    vendor = "SFMC"

    def __init__(
        self,
        tenant: Tenant,
        r: redis.Redis,
        timeout: tuple[float, float],
        session: requests.Session | None = None,
        gate: Callable[[], None] | None = None,
        credentials: RefreshTokens | None = None,
        app: Settings | None = None,
        box: SecretBox | None = None,
    ) -> None:
        """`credentials` and `app` (the Web App client id/secret) serve tenants whose background
        calls use the refresh token of an admin's sign-in (`sfmc_auth_mode = refresh_token`)."""
        super().__init__(tenant, r, timeout, session, gate, box)
        self.credentials = credentials
        self.app = app
        self.refusals = Refusals(r, tenant.name, self.vendor.lower(), credentials_digest(r, tenant))

    def _base_url(self, token: dict[str, Any]) -> str:
        return token["rest_instance_url"]

    def _fetch_token(self) -> dict[str, Any]:
        """A token by the tenant's auth mode. A refusal of its credentials (CredentialsRejected) is
        kept for every process (`Refusals`): no token is asked for again for REFUSED_RETRY_SECONDS,
        and the tenant shows "credentials rejected" until SFMC grants one or the credentials change."""
        held = self.refusals.held()
        if held is not None:
            raise CredentialsRejected(held)
        try:
            if self.tenant.sfmc_auth_mode == SfmcAuthMode.REFRESH_TOKEN:
                token = self._fetch_token_by_refresh()
            else:
                token = self._fetch_token_by_client_credentials()
        except CredentialsRejected as exc:
            self.refusals.refused(exc.reason)
            raise
        self.refusals.granted()
        return token

    def check_credentials(self) -> None:
        """A person asked (Test connection, `tenants check`): SFMC is asked now, even within the
        hold of an earlier refusal."""
        self.refusals.lift_hold()
        super().check_credentials()

    def _fetch_token_by_client_credentials(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "grant_type": "client_credentials",
            "client_id": self.tenant.sfmc_client_id,
            "client_secret": self.tenant.sfmc_client_secret,
        }
        if self.tenant.sfmc_account_id:
            body["account_id"] = self.tenant.sfmc_account_id
        response = send(
            self.session,
            "POST",
            self.tenant.sfmc_auth_base_url.rstrip("/") + "/v2/token",
            json=body,
            timeout=self.timeout,
        )
        if response.status_code in (400, 401):
            raise CredentialsRejected(
                f"SFMC refused the client credentials: HTTP {response.status_code}: {_describe(response)}",
                status=response.status_code,
            )
        return self._token_answer(response)

    @staticmethod
    def _token_answer(response: requests.Response) -> dict[str, Any]:
        raise_for_status(response, "SFMC token", default_retry_after=5, describe=_describe)
        token = response.json()
        if not token.get("access_token") or not token.get("rest_instance_url"):
            raise RetryableError("SFMC token response without access_token/rest_instance_url")
        return token

    def _fetch_token_by_refresh(self) -> dict[str, Any]:
        """The `refresh_token` grant with the package's Web App client. SFMC may rotate the
        refresh token: the new one is stored before the access token is used (the SharedToken
        lock makes this process the only one refreshing). A refusal (CredentialsRejected) holds
        until an admin signs in again, whose new refresh token clears it."""
        if self.credentials is None or self.app is None:
            raise PermanentError("SFMC refresh-token credentials are not available in this process")
        name = self.tenant.name
        refresh = self.credentials.refresh_token(name)
        for _attempt in (1, 2):
            if not refresh:
                raise CredentialsRejected("no SFMC refresh token: an admin must sign in to App Settings")
            body = {
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": self.app.sfmc_app_client_id,
                "client_secret": self.app.sfmc_app_client_secret,
            }
            if self.tenant.sfmc_account_id:  # the business unit chosen in App Settings (unconfirmed)
                body["account_id"] = self.tenant.sfmc_account_id
            url = self.tenant.sfmc_auth_base_url.rstrip("/") + "/v2/token"
            response = send(self.session, "POST", url, json=body, timeout=self.timeout)
            if response.status_code not in (400, 401):
                break
            stored = self.credentials.refresh_token(name)
            if stored and stored != refresh:  # a sign-in stored a new one meanwhile: use it once
                refresh = stored
                continue
            raise CredentialsRejected(
                f"SFMC refused the refresh token: HTTP {response.status_code}: {_describe(response)}",
                status=response.status_code,
            )
        token = self._token_answer(response)
        rotated = token.pop("refresh_token", None)
        if rotated and rotated != refresh:
            self.credentials.replace_refresh_token(name, refresh, rotated)
        return token  # cached in Redis without the refresh token

    def _check(self, response: requests.Response, what: str) -> None:
        body = _error_body(response) if response.status_code >= 400 else {}
        errorcode = body.get("errorcode")
        if response.status_code == 429 and errorcode == 50200:
            raise Throttled(f"{what}: temporarily blocked (50200)", retry_after=BLOCKED_BACKOFF_SECONDS)
        if response.status_code == 400 and errorcode == 10006 and not body.get("additionalErrors"):
            raise RetryableError(f"{what}: {mask_emails(_describe(response))}", status=400)
        raise_for_status(response, what, default_retry_after=5, describe=_describe)

    def upsert_rows(self, de_key: str, rows: list[dict[str, Any]]) -> None:
        """POST /hub/v1/dataevents/key:{key}/rowset: rows of {"keys": {...}, "values": {...}}."""
        if len(rows) > ROWSET_MAX_ROWS:
            raise ValueError(f"a rowset call takes at most {ROWSET_MAX_ROWS} rows, got {len(rows)}")
        response = self._authorized("POST", f"/hub/v1/dataevents/key:{de_key}/rowset", json=rows)
        self._check(response, f"SFMC rowset {de_key}")

    def fire_events(self, event_definition_key: str, members: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /interaction/v1/async/events: release contacts waiting on an API event."""
        if len(members) > ASYNC_EVENTS_MAX_MEMBERS:
            raise ValueError(f"at most {ASYNC_EVENTS_MAX_MEMBERS} members per call, got {len(members)}")
        response = self._authorized(
            "POST",
            "/interaction/v1/async/events",
            json={"eventDefinitionKey": event_definition_key, "members": members},
        )
        self._check(response, "SFMC async events")
        return _error_body(response)

    def journey_version(self, definition_id: str, version: int) -> tuple[str, set[str]] | None:
        """GET /interaction/v1/interactions/{id}?versionNumber=N&extras=activities: the journey
        version's `status` (Draft, Published, Stopped, ...; docs/vendors/sfmc-custom-activity.md
        §2.2) and the ids of its activities, or None when SFMC does not know it (404).
        `definition_id` is the id of the journey's version 1 (the lifecycle call's
        originalDefinitionId)."""
        response = self._authorized(
            "GET",
            f"/interaction/v1/interactions/{quote(definition_id, safe='')}",
            params={"versionNumber": int(version), "extras": "activities"},
        )
        if response.status_code == 404:
            return None
        self._check(response, "SFMC journey version")
        body = _error_body(response)
        activities = body.get("activities") if isinstance(body.get("activities"), list) else []
        ids = {str(a.get("id")) for a in activities if isinstance(a, dict) and a.get("id")}
        return str(body.get("status") or ""), ids

    def journey_names(self, journey_id: str) -> tuple[str, dict[str, str]] | None:
        """GET /interaction/v1/interactions/{id}?extras=activities: the journey's `name` and its
        activities' names by id, or None when SFMC does not know the id (404). `journey_id` is
        the execute call's journeyId; without `versionNumber` SFMC answers its latest version
        (getInteractionById), whose activities may not hold an older version's id: then only
        the journey's name is known."""
        response = self._authorized(
            "GET",
            f"/interaction/v1/interactions/{quote(journey_id, safe='')}",
            params={"extras": "activities"},
        )
        if response.status_code == 404:
            return None
        self._check(response, "SFMC journey")
        body = _error_body(response)
        activities = body.get("activities") if isinstance(body.get("activities"), list) else []
        names = {
            str(a["id"]): str(a.get("name") or "")
            for a in activities
            if isinstance(a, dict) and a.get("id") and isinstance(a.get("name"), str)
        }
        name = body.get("name")
        return (name if isinstance(name, str) else ""), names

    def contact_exists(self, contact_key: str) -> bool:
        """GET /contacts/v1/contacts/{contactKey}: 200 found, 404 not found.

        SFMC documents no read-by-key route for contacts; this one follows the REST
        resource naming of the Contacts API and is kept to this one method so it is
        easy to swap for `/contacts/v1/establish` if a tenant's stack lacks it.
        """
        response = self._authorized("GET", f"/contacts/v1/contacts/{quote(contact_key, safe='')}")
        if response.status_code == 404:
            return False
        self._check(response, "SFMC find contact")
        return True

    def create_contact(self, contact_key: str, email: str = "") -> None:
        """POST /contacts/v1/contacts, with the Email Addresses attribute set when known."""
        attribute_sets = []
        if email:
            attribute_sets.append(
                {
                    "name": "Email Addresses",
                    "items": [
                        {
                            "values": [
                                {"name": "Email Address", "value": email},
                                {"name": "HTML Enabled", "value": True},
                            ]
                        }
                    ],
                }
            )
        response = self._authorized(
            "POST", "/contacts/v1/contacts", json={"contactKey": contact_key, "attributeSets": attribute_sets}
        )
        self._check(response, "SFMC create contact")

    def upsert_rows_async(self, de_key: str, items: list[dict[str, Any]]) -> str:
        """PUT /data/v1/async/dataextensions/key:{key}/rows (at most 32,000 flat rows): a request id."""
        if len(items) > ASYNC_ROWS_MAX:
            raise ValueError(f"at most {ASYNC_ROWS_MAX} rows per async request, got {len(items)}")
        response = self._authorized(
            "PUT", f"/data/v1/async/dataextensions/key:{de_key}/rows", json={"items": items}
        )
        self._check(response, f"SFMC async upsert {de_key}")
        return str(response.json()["requestId"])

    def async_status(self, request_id: str) -> dict[str, Any]:
        response = self._authorized("GET", f"/data/v1/async/{request_id}/status")
        self._check(response, "SFMC async status")
        return response.json().get("status", {})

    def async_results(self, request_id: str) -> list[dict[str, Any]]:
        response = self._authorized("GET", f"/data/v1/async/{request_id}/results")
        self._check(response, "SFMC async results")
        return response.json().get("items", [])

    def token_context(self, fuel2token: str) -> dict[str, Any]:
        """GET /platform/v1/tokenContext with someone else's token (Journey Builder's fuel2token).

        The REST base is the `rest_instance_url` of this tenant's OWN token (the shared token
        machinery; never a host the browser names). The call passes no rate-limit gate: it is one
        request per UI session, made while a person waits, and a wait for a slot (or the account's
        429 cool-down) must not hold a web request. A 401 here refuses the caller's token, not ours:
        our cached token is left alone. Raises TokenRefused on 401/403, RetryableError (Throttled,
        UnknownOutcome) when SFMC cannot answer now, PermanentError on other 4xx.
        """
        base = self._base_url(self.token.get()).rstrip("/")
        connect, read = self.timeout
        response = send(
            self.session,
            "GET",
            base + "/platform/v1/tokenContext",
            headers={"Authorization": f"Bearer {fuel2token}", "Accept": "application/json"},
            timeout=(connect, min(read, TOKEN_CONTEXT_READ_TIMEOUT)),
        )
        if response.status_code in (401, 403):
            raise TokenRefused(f"SFMC tokenContext: HTTP {response.status_code}", status=response.status_code)
        self._check(response, "SFMC tokenContext")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RetryableError("SFMC tokenContext answer is not a JSON object", status=response.status_code)
        return body
