"""SFMC's web-app OAuth endpoints as App Settings' sign-in uses them: the code exchange and
`/v2/userinfo` (docs/vendors/sfmc-app.md B.2, B.3).

Both go to the account's own authorization base URI (`https://<tssd>.auth.marketingcloudapis.com`),
which the caller builds from a validated `tssd`. No retries here: a failed sign-in is shown to the
admin, who signs in again (an authorization code is single use anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from pipeline.clients.errors import PermanentError
from pipeline.clients.http import new_session, raise_for_status, send
from pipeline.settings import stack_label

DEFAULT_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class SignInToken:
    """What the code exchange gives; `refresh_token` only when the `offline` scope was granted."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int = 0
    scope: str = ""
    rest_instance_url: str = ""
    soap_instance_url: str = ""


@dataclass(frozen=True)
class SignedInUser:
    """Who signed in: the enterprise (EID) names the tenant, the MID is the business unit, the
    stack (`s4`, "" when the answer names none) says which Marketing Cloud hosts frame its pages."""

    eid: str
    mid: str
    name: str
    email: str
    stack: str = ""


class SfmcOAuthClient:
    """One per web process (its session is reused); not shared across forks."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        timeout: tuple[float, float],
        session: requests.Session | None = None,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout = timeout
        self.session = session or new_session()

    def exchange_code(self, auth_url: str, code: str, redirect_uri: str) -> SignInToken:
        response = send(
            self.session,
            "POST",
            f"{auth_url}/v2/token",
            json={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "redirect_uri": redirect_uri,
            },
            timeout=self.timeout,
        )
        raise_for_status(response, "SFMC token", default_retry_after=DEFAULT_RETRY_AFTER)
        body = _json_object(response, "SFMC token")
        access_token = body.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise PermanentError("SFMC token: the answer has no access_token")
        refresh_token = body.get("refresh_token")
        return SignInToken(
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
            expires_in=int(body.get("expires_in") or 0),
            scope=str(body.get("scope") or ""),
            rest_instance_url=str(body.get("rest_instance_url") or ""),
            soap_instance_url=str(body.get("soap_instance_url") or ""),
        )

    def userinfo(self, auth_url: str, access_token: str) -> SignedInUser:
        response = send(
            self.session,
            "GET",
            f"{auth_url}/v2/userinfo",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=self.timeout,
        )
        raise_for_status(response, "SFMC userinfo", default_retry_after=DEFAULT_RETRY_AFTER)
        body = _json_object(response, "SFMC userinfo")
        organization = body.get("organization")
        user = body.get("user")
        if not isinstance(organization, dict):
            raise PermanentError("SFMC userinfo: the answer has no organization")
        eid, mid = _identifier(organization.get("enterprise_id")), _identifier(organization.get("member_id"))
        if not eid or not mid:
            raise PermanentError("SFMC userinfo: organization.enterprise_id or member_id missing")
        user = user if isinstance(user, dict) else {}
        return SignedInUser(
            eid=eid,
            mid=mid,
            name=str(user.get("name") or ""),
            email=str(user.get("email") or ""),
            stack=_stack(organization),
        )


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PermanentError(f"{what}: the answer is not JSON", status=response.status_code) from exc
    if not isinstance(body, dict):
        raise PermanentError(f"{what}: the answer is not a JSON object", status=response.status_code)
    return body


def _stack(organization: dict[str, Any]) -> str:
    """The account's stack label from `organization.stackKey` (as the legacy app JWT names it;
    `stack_key` in one public type of userinfo): docs/vendors/sfmc-app.md B.3. "" when absent or odd."""
    value = organization.get("stackKey", organization.get("stack_key"))
    return stack_label(value) if isinstance(value, str) else ""


def _identifier(value: Any) -> str:
    """EID and MID come as numbers; plain digits (or letters) only, else nothing."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return ""
    text = str(value).strip()
    return text if text.isalnum() and len(text) <= 32 else ""
