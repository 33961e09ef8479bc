"""Tracked links: `GET /t/<tenant>/c/<token>` answers a 302 to the link's target and counts the click.

No authentication: the token is the credential (pipeline/journeys/links.py says what it binds).
Anything that is not a token this deployment made for this tenant and a link still stored (made
up, truncated, altered, another tenant's, a link past its retention, a link of a tenant that is
disabled, e.g. while `rokt-sfmc tenants erase` runs) is the same 404, a small
HTML page for the subscriber's browser, and never a redirect: the target always comes from the
execution's record, never from the request. A made-up token costs one HMAC and no read, so a
flood leaves nothing in Redis (tests/integration/test_unauthenticated_flood.py).

What is not counted (but still redirected, so the link works): HEAD (link previewers and
checkers ask HEAD first); a request that says it is a prefetch (`Sec-Purpose`/`Purpose: prefetch`,
`X-Moz: prefetch`: browsers and mail clients that fetch ahead of a tap); a User-Agent naming a
link previewer or crawler (`PREVIEWERS`). A scanner that fetches every link with a browser's
User-Agent is counted: nothing in the request tells it apart from a subscriber.

Every answer is `Cache-Control: no-store` (a cached redirect would be a click nobody counts) and
`Referrer-Policy: no-referrer` (the token is not passed on to the target's site).
"""

from __future__ import annotations

import logging
import re

import redis
from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.urls import iri_to_uri

from pipeline.journeys.links import follow
from pipeline.tenancy.handles import Runtime
from pipeline.web.errors import RETRY_AFTER_SECONDS

log = logging.getLogger(__name__)
links = Blueprint("links", __name__, url_prefix="/t/<tenant>/c")

# User-Agents of link previewers, unfurlers and crawlers: they fetch a link to show a card, not
# because a subscriber tapped it
PREVIEWERS = re.compile(
    r"(?:google|bing|slack|twitter|discord|linkedin|telegram|apple|yandex|duckduck|baidu|petal|ahrefs"
    r"|semrush|mj12|dot|bitly|pinterest)bot|\bbot\b|crawl|spider|slurp|facebookexternalhit|whatsapp"
    r"|embedly|skypeuripreview|outbrain|vkshare|w3c_validator|google-read-aloud|link ?preview|proofpoint",
    re.IGNORECASE,
)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
    "<title>{title}</title><body style='font:16px system-ui,sans-serif;margin:2em'>"
    "<h1 style='font-size:1.2em'>{title}</h1><p>{text}</p></body></html>"
)


def counts_as_click() -> bool:
    """False for a HEAD, a prefetch or a link previewer (see the module docstring)."""
    if request.method != "GET":
        return False
    purpose = (request.headers.get("Sec-Purpose") or request.headers.get("Purpose") or "").lower()
    if (
        "prefetch" in purpose
        or "prerender" in purpose
        or request.headers.get("X-Moz", "").lower() == "prefetch"
    ):
        return False
    return not PREVIEWERS.search(request.headers.get("User-Agent", ""))


def _page(status: int, title: str, text: str, **headers: str) -> Response:
    body = _PAGE.format(title=title, text=text)
    return Response(body, status, {**HEADERS, **headers}, content_type="text/html; charset=utf-8")


@links.get("/<token>")
def tracked_link(tenant: str, token: str) -> Response:
    """302 to the target the token binds (counted once per GET that is a click), else 404."""
    rt: Runtime = current_app.extensions["rsf.runtime"]
    try:
        target = follow(rt, tenant, token, count=counts_as_click())
    except (redis.RedisError, SQLAlchemyError):
        log.warning("tracked link of tenant %s not followed: a store is away", tenant, exc_info=True)
        return _page(
            503,
            "Try again in a moment",
            "This link cannot be opened right now.",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if target is None:
        return _page(404, "Link not found", "This link is not valid, or has expired.")
    response = Response(status=302, headers={**HEADERS, "Location": iri_to_uri(target)})
    response.autocorrect_location_header = False
    return response
