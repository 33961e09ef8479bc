"""An SFMC admin in App Settings, over HTTP: how `rokt-sfmc demo` signs its tenant up.

It does what the admin's browser does inside Marketing Cloud's frame, through the same routes:
`/app/login` → the SFMC simulator's `/v2/authorize` → `/app/oauth/callback` → App Settings, then
saves the settings, tests the connection, rotates the webhook secret and installs the data
extensions. Cookies are kept by hand: ours are `Secure`, and `requests` (like any client) will not
send a Secure cookie over the sandbox's plain http; a browser treats loopback as secure.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any
from urllib.parse import urljoin

import requests

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_WEBHOOK_SECRET = re.compile(r'id="new-webhook-secret".*?<code>([^<]+)</code>', re.S)
ERROR_LINE = re.compile(r'class="field-error"[^>]*>([^<]+)<')
MAX_REDIRECTS = 10


class AppAdminError(RuntimeError):
    """App Settings answered something an admin would see as a failure."""


class AppAdmin:
    def __init__(self, web_url: str, timeout: float = 30.0) -> None:
        self.web_url = web_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.cookies: dict[str, str] = {}  # the web app's cookies (name -> value)
        self.csrf = ""

    # -- a browser's cookie handling, for our origin only ------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        ours = url.startswith(self.web_url)
        headers = dict(kwargs.pop("headers", {}) or {})
        if ours and self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = self.http.request(
            method, url, headers=headers, allow_redirects=False, timeout=self.timeout, **kwargs
        )
        if ours:
            for line in response.raw.headers.getlist("Set-Cookie"):
                self._remember(line)
        return response

    def _remember(self, set_cookie: str) -> None:
        first, *attributes = [part.strip() for part in set_cookie.split(";")]
        name, _, value = first.partition("=")
        expired = any(
            a.lower() in ("max-age=0",) or a.lower().startswith("expires=thu, 01 jan 1970")
            for a in attributes
        )
        if expired or not value:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    def _follow(self, url: str) -> requests.Response:
        """GET and follow redirects across origins, as the frame does."""
        for _hop in range(MAX_REDIRECTS):
            response = self._request("GET", url)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            url = urljoin(url, response.headers["Location"])
        raise AppAdminError(f"more than {MAX_REDIRECTS} redirects from {url}")

    # -- what the admin does -------------------------------------------------------------------
    def sign_in(self) -> str:
        """Open the app (Marketing Cloud frames /app/login); returns the settings page."""
        page = self._follow(f"{self.web_url}/app/login")
        if page.status_code != 200 or not page.url.startswith(f"{self.web_url}/app/settings"):
            raise AppAdminError(
                f"sign-in ended at {page.url} with HTTP {page.status_code}: {page.text[:300]}"
            )
        return self._page(page)

    def _page(self, response: requests.Response) -> str:
        found = CSRF_INPUT.search(response.text)
        if found:
            self.csrf = html.unescape(found.group(1))
        return response.text

    def save_settings(self, values: dict[str, str]) -> str:
        response = self._request(
            "POST", f"{self.web_url}/app/settings", data={**values, "csrf_token": self.csrf}
        )
        if response.status_code != 200:
            errors = [html.unescape(e) for e in ERROR_LINE.findall(response.text)]
            raise AppAdminError(
                f"settings refused (HTTP {response.status_code}): {errors or response.text[:300]}"
            )
        return self._page(response)

    def test_connection(self) -> dict[str, Any]:
        response = self._request(
            "POST", f"{self.web_url}/app/settings/test", headers={"X-CSRF-Token": self.csrf}
        )
        response.raise_for_status()
        return response.json()

    def rotate_webhook_secret(self) -> str:
        """The new secret, shown this once (what the admin copies into Rokt's management centre)."""
        response = self._request(
            "POST", f"{self.web_url}/app/settings/webhook/rotate", data={"csrf_token": self.csrf}
        )
        found = NEW_WEBHOOK_SECRET.search(self._page(response))
        if response.status_code != 200 or not found:
            raise AppAdminError(f"webhook secret rotation failed (HTTP {response.status_code})")
        return html.unescape(found.group(1)).strip()

    def install_data_extensions(self, timeout: float = 120.0) -> dict[str, Any]:
        """Click Install and poll as the page does; returns the final progress."""
        response = self._request("POST", f"{self.web_url}/app/install", headers={"X-CSRF-Token": self.csrf})
        if response.status_code not in (202, 409):
            raise AppAdminError(f"install refused (HTTP {response.status_code}): {response.text[:300]}")
        deadline = time.monotonic() + timeout
        while True:
            progress = self._request("GET", f"{self.web_url}/app/install/status").json()
            if progress.get("state") in ("done", "failed"):
                return progress
            if time.monotonic() > deadline:
                raise AppAdminError(f"install not finished after {timeout:.0f} s: {progress}")
            time.sleep(0.5)
