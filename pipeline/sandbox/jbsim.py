"""A Journey Builder driver (entry point `rokt-sfmc jb-simulate`): executes the way JB does.

HS256-signed JWT bodies, up to 50 concurrent requests, retries on timeout and 5xx with
the same activityId + definitionInstanceId (so retries are duplicates by design), and a few
deliberate duplicate retries of requests that already succeeded.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

DEMO_TEMPLATE: dict[str, Any] = {
    "name": "Demo: summer sale reminder",
    "title": '🎉 {{FirstName}}, your {{Brand | default: "Rokt"}} summer sale starts now',
    "description": 'Hi {{FirstName}}, three days of offers for {{City | default: "you"}}: '
    "https://example.com/sale?ref=calendar and https://example.com/app?utm_source=email",
    "location": "Swipe now: https://example.com/sale",
    "start": "2026-12-01T09:00:00",
    "end": "2026-12-01T10:00:00",
    "timezone": "Australia/Sydney",
    "allDay": False,
    "notifyBefore": 15,
    "missingFieldPolicy": "strict",
}
RELEASE_EVENT_KEY = "APIEvent-rokt-calendar-demo"
# A subscription id Rokt does not know: Rokt answers 400 and the execution ends `failed`.
UNKNOWN_SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Contact:
    key: str
    first_name: str
    email: str
    city: str
    has_subscription: bool
    subscription_id: str = ""


def make_contacts(count: int, seed: int = 7) -> list[Contact]:
    """A mix that exercises every outcome: ~6% without subscription, ~5% missing a name,
    ~2% with a subscription id Rokt rejects; the rest are accepted."""
    rng = random.Random(seed)
    cities = ["Sydney", "Melbourne", "", "Brisbane", "Perth"]
    contacts = []
    for i in range(count):
        roll = rng.random()
        contacts.append(
            Contact(
                key=f"C{i:07d}",
                first_name="" if 0.06 <= roll < 0.11 else rng.choice(["Ava", "Noah", "Mia", "Leo"]),
                email=f"contact{i}@example.com",
                city=rng.choice(cities),
                has_subscription=roll >= 0.06,
                subscription_id=UNKNOWN_SUBSCRIPTION_ID if 0.11 <= roll < 0.13 else "",
            )
        )
    return contacts


def seed_subscriptions(rokt_base_url: str, account_code: str, contacts: list[Contact]) -> None:
    """Create the contacts' subscriptions in the Rokt simulator (sandbox-only route)."""
    wanted = [c for c in contacts if c.has_subscription and not c.subscription_id]
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        response = requests.post(
            f"{rokt_base_url.rstrip('/')}/__sandbox__/subscriptions",
            json={
                "accountCode": account_code,
                "subscriptions": [{"subscriberId": c.key, "emailAddress": c.email} for c in chunk],
            },
            timeout=30,
        )
        response.raise_for_status()
        for contact, sub_id in zip(chunk, response.json()["subscriptionIds"], strict=True):
            contact.subscription_id = sub_id


def subscribe_contacts(rokt_base_url: str, account_code: str, contacts: list[Contact]) -> None:
    """Subscribe the contacts through the Rokt simulator, which fires a Subscribe webhook each
    (the way a calendar page does); every fourth one is an email capture without external id."""
    wanted = [c for c in contacts if c.has_subscription and not c.subscription_id]

    def subscribe(numbered: tuple[int, Contact]) -> None:
        index, contact = numbered
        body: dict[str, Any] = {
            "accountCode": account_code,
            "calendarCode": "offers",
            "emailAddress": contact.email,
            "marketingAllowed": index % 2 == 0,
            "utmSource": "newsletter",
            "utmMedium": "email",
            "calendarTags": [
                {"internalId": f"tag-{contact.city or 'none'}", "tagText": contact.city or "Anywhere"}
            ],
        }
        if index % 4:
            body["subscriberId"] = contact.key
        response = requests.post(f"{rokt_base_url.rstrip('/')}/__sandbox__/subscribe", json=body, timeout=30)
        response.raise_for_status()
        contact.subscription_id = response.json()["subscriptionId"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(subscribe, enumerate(wanted)))


def execute_payload(
    contact: Contact, template_id: str, journey_id: str, activity_id: str, release_key: str = ""
) -> dict[str, Any]:
    in_arguments: list[dict[str, Any]] = [
        {"contactKey": contact.key},
        {"email": contact.email},
        {"FirstName": contact.first_name},
        {"City": contact.city},
        {"templateId": template_id},
    ]
    if contact.subscription_id:
        in_arguments.append({"subscriptionId": contact.subscription_id})
    if release_key:
        in_arguments.append({"releaseEventDefinitionKey": release_key})
    return {
        "inArguments": in_arguments,
        "outArguments": [{"roktStatus": ""}, {"roktEventId": ""}, {"executionId": ""}],
        "activityObjectID": activity_id,
        "journeyId": journey_id,
        "activityId": activity_id,
        "definitionInstanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{journey_id}/{contact.key}")),
        "activityInstanceId": str(uuid.uuid4()),
        "keyValue": contact.key,
        "mode": 0,
    }


def sign(payload: dict[str, Any], secret: str, lifetime: int = 300) -> str:
    now = int(time.time())
    return jwt.encode({**payload, "iat": now, "exp": now + lifetime}, secret, algorithm="HS256")


@dataclass
class DriveResult:
    sent: int = 0
    ok: int = 0
    non_200: int = 0
    duplicates_sent: int = 0
    retries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # contact key -> 200 body

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict[str, Any]:
        """What `jb-simulate` prints and the demo reports under `execute`."""
        return {
            "sent": self.sent,
            "ok": self.ok,
            "non_200": self.non_200,
            "duplicates_sent": self.duplicates_sent,
            "retries": self.retries,
            "statuses": self.statuses,
            "p50_ms": round(self.percentile(50), 1),
            "p99_ms": round(self.percentile(99), 1),
        }


def drive(
    url: str,
    secret: str,
    payloads: list[dict[str, Any]],
    *,
    concurrency: int = 50,
    retries: int = 2,
    timeout_ms: int = 10000,
    duplicate_every: int = 97,
    on_done: Callable[[], None] | None = None,
) -> DriveResult:
    """Send every payload like JB: ≤ `concurrency` in flight, retry timeouts and 5xx."""
    result = DriveResult()
    lock = threading.Lock()
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def post(body: str) -> tuple[int | None, dict[str, Any] | None]:
        started = time.perf_counter()
        try:
            response = session().post(
                url, data=body, headers={"Content-Type": "application/jwt"}, timeout=timeout_ms / 1000
            )
        except requests.RequestException:
            status, answer = None, None
        else:
            status = response.status_code
            answer = response.json() if status == 200 else None
        with lock:
            result.sent += 1
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            if status is not None:
                result.statuses[status] = result.statuses.get(status, 0) + 1
        return status, answer

    def one(index: int, payload: dict[str, Any]) -> None:
        body = sign(payload, secret)
        status, answer = None, None
        for attempt in range(retries + 1):
            status, answer = post(body)
            if status is not None and status < 500:
                break
            if attempt < retries:
                with lock:
                    result.retries += 1
                time.sleep(1.0)  # JB's default retryDelay
        if status == 200 and duplicate_every and index % duplicate_every == 0:
            post(body)  # a deliberate duplicate: JB retrying after a lost answer
            with lock:
                result.duplicates_sent += 1
        with lock:
            if status == 200:
                result.ok += 1
                if answer is not None:
                    result.answers[payload["keyValue"]] = answer
            else:
                result.non_200 += 1
        if on_done is not None:
            on_done()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda pair: one(*pair), enumerate(payloads)))
    return result
