"""A Journey Builder driver (entry point `rokt-sfmc jb-simulate`): executes the way JB does.

HS256-signed JWT bodies, up to 50 concurrent requests, retries on timeout and 5xx with
the same activityId + definitionInstanceId (so retries are duplicates by design), and a few
deliberate duplicate retries of requests that already succeeded.

Payloads come from the activity as our UI saves it (`demo_activity`/`save_activity`, contract
§1), its `{{...}}` bindings resolved per contact as JB resolves them (`execute_payload`), never
from hand-built inArguments.
"""

from __future__ import annotations

import copy
import random
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from pipeline.journeys.templates import placeholders
from pipeline.settings import Settings, load_settings
from pipeline.tenancy.handles import Runtime
from pipeline.web import create_app
from schemas.jb_execute import merge_in_arguments

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

# The journey's entry source: a data extension whose event definition key JB generates
# (`DEAudience-<guid>`; ours is fixed) and its fields, one with a space in its name.
DEMO_EVENT_KEY = "DEAudience-rokt-demo"
DEMO_ENTRY_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("ContactKey", "Text", 50),
    ("FirstName", "Text", 100),
    ("Home City", "Text", 100),
    ("Email", "EmailAddress", 254),
)
SUBSCRIPTION_ATTRIBUTE = 'Contact.Attribute."Calendar Subscription".CalendarSubscriptionId'
# the UI's default subscription binding (docs/http-contract.md)
DEFAULT_SUBSCRIPTION_BINDING = "{{" + SUBSCRIPTION_ATTRIBUTE + "}}"
RELEASE_ON = ("accepted", "confirmed")
_BINDING = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_DEFAULT_TEXT = re.compile(r'\|\s*default:\s*"((?:[^"\\]|\\.)*)"')
_ONE_BINDING = re.compile(r"\{\{[^{}]+\}\}")
_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_]+")


@dataclass
class Contact:
    key: str
    first_name: str
    email: str
    city: str
    has_subscription: bool
    subscription_id: str = ""
    # whether SFMC links the subscription's row to this contact (its SubscriberExternalId is
    # this contact key): False for an email capture, whose row belongs to a contact keyed by
    # the email, so JB has no Calendar Subscription attribute for this contact


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
    """Create the contacts' subscriptions in the Rokt simulator (sandbox-only route): existing
    subscriptions, as if backfilled into SFMC, so each contact carries its id as an attribute."""
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


def subscribe_contacts(
    rokt_base_url: str, account_code: str, contacts: list[Contact], email_captures: int = 0
) -> int:
    """Subscribe the journey's contacts through the Rokt simulator, which fires a Subscribe
    webhook each (the way a calendar page does), with the contact key as SubscriberExternalId;
    plus `email_captures` walk-in subscribers known only by their email (no external id, not in
    the journey: SFMC gets a new contact keyed by the email). Returns how many subscribed."""
    wanted = [c for c in contacts if c.has_subscription and not c.subscription_id]

    def subscribe(numbered: tuple[int, Contact | str]) -> None:
        index, who = numbered
        email = who.email if isinstance(who, Contact) else who
        city = who.city if isinstance(who, Contact) else ""
        body: dict[str, Any] = {
            "accountCode": account_code,
            "calendarCode": "offers",
            "emailAddress": email,
            "marketingAllowed": index % 2 == 0,
            "utmSource": "newsletter",
            "utmMedium": "email",
            "calendarTags": [{"internalId": f"tag-{city or 'none'}", "tagText": city or "Anywhere"}],
        }
        if isinstance(who, Contact):
            body["subscriberId"] = who.key
        response = requests.post(f"{rokt_base_url.rstrip('/')}/__sandbox__/subscribe", json=body, timeout=30)
        response.raise_for_status()
        if isinstance(who, Contact):
            who.subscription_id = response.json()["subscriptionId"]

    walk_ins: list[Contact | str] = [f"walk-in{i}@example.com" for i in range(email_captures)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(subscribe, enumerate([*wanted, *walk_ins])))
    return len(wanted) + len(walk_ins)


# --- the activity as Journey Builder stores it, and as our UI saves it (docs/http-contract.md) ---------


def activity_config(settings: Settings | None = None, tenant: str = "default") -> dict[str, Any]:
    """config.json as our web app serves it, rendered in-process by the real view (no Redis,
    no network): for `settings` (default: the built-in defaults) and `tenant`."""
    app = create_app(Runtime(settings or load_settings({})))
    response = app.test_client().get(f"/t/{tenant}/activity/config.json")
    if response.status_code != 200:
        raise RuntimeError(f"config.json for tenant {tenant!r}: HTTP {response.status_code}")
    return response.get_json()


def journey_activity(config: Mapping[str, Any], activity_id: str = "", key: str = "REST-1") -> dict[str, Any]:
    """The activity object JB hands the UI in `initActivity` (docs/vendors/sfmc-app.md §A.4) when a
    marketer drops ours on the canvas: config.json's declarations plus JB's own keys."""
    activity = copy.deepcopy(dict(config))
    activity.pop("workflowApiVersion", None)  # the package's, not the activity's
    activity["id"] = activity_id or str(uuid.uuid4())
    activity["key"] = key
    activity["name"] = ""
    activity["editable"] = True
    activity["outcomes"] = [{"key": f"{key}-next", "next": "WAITUNTILEVENT-1"}]
    activity["errors"] = None
    return activity


def event_binding(event_definition_key: str, field_name: str) -> str:
    """`{{Event.<key>.<Field>}}`, the field name quoted when it holds more than letters,
    digits and `_` (docs/vendors/sfmc-app.md §A.5)."""
    name = field_name if _PLAIN_FIELD.fullmatch(field_name) else f'"{field_name}"'
    return "{{" + f"Event.{event_definition_key}.{name}" + "}}"


def entry_schema(event_definition_key: str = DEMO_EVENT_KEY) -> dict[str, Any]:
    """The demo entry source as JB answers `requestSchema` (§A.4: `key` is the binding path
    without braces, names with spaces verbatim; `null` flags mean false)."""
    return {
        "schema": [
            {
                "key": f"Event.{event_definition_key}.{name}",
                "name": name,
                "type": kind,
                "length": length,
                "default": None,
                "isNullable": None if name == "ContactKey" else True,
                "isPrimaryKey": True if name == "ContactKey" else None,
            }
            for name, kind, length in DEMO_ENTRY_FIELDS
        ]
    }


def activity_name(template: Mapping[str, Any]) -> str:
    """The label under the activity's icon: the template's name, else its title with each
    placeholder replaced by its default text (or dropped) and the gaps tidied; at most 100
    characters. activityName() in js/activity.js does the same (a browser test compares them)."""
    name = " ".join(str(template.get("name") or "").split())
    if not name:

        def fill(match: re.Match[str]) -> str:
            default = _DEFAULT_TEXT.search(match.group(1))
            return default.group(1).replace('\\"', '"') if default else ""

        text = " ".join(_BINDING.sub(fill, str(template.get("title") or "")).split())
        name = re.sub(r"\s+([,;:.!?])", r"\1", text).strip(" ,;:-")
    return name[:100]


def save_activity(
    activity: Mapping[str, Any],
    *,
    template: Mapping[str, Any],
    template_id: str,
    bindings: Mapping[str, str],
    subscription_binding: str = DEFAULT_SUBSCRIPTION_BINDING,
    release_key: str = "",
    release_on: str = "accepted",
    release_after_seconds: int = 3600,
) -> dict[str, Any]:
    """What the UI sends with `updateActivity` (docs/http-contract.md): `activity` as received, changed
    only in `name`, `metaData.isConfigured` and `arguments.execute.inArguments`.

    `bindings` maps placeholder -> binding (`{{Event...}}`, `{{Contact.Attribute...}}`) or fixed
    text; a placeholder absent from it keeps its template default (no inArgument). Raises
    ValueError for what the UI refuses to save as configured.
    """
    found = placeholders(dict(template))  # what the API lists for the UI
    names = [item["name"] for item in found]
    unknown = sorted(set(bindings) - set(names))
    if unknown:
        raise ValueError(f"not placeholders of the template: {', '.join(unknown)}")
    unbound = [item["name"] for item in found if item["default"] is None and item["name"] not in bindings]
    if unbound:
        raise ValueError(f"placeholders without a binding or a default: {', '.join(unbound)}")
    for name, value in bindings.items():
        if "{{" in value and not _ONE_BINDING.fullmatch(value):
            raise ValueError(f"{name}: a fixed value must not contain '{{{{'")
    if not template_id:
        raise ValueError("templateId: choose or create an event")
    if release_on not in RELEASE_ON:
        raise ValueError(f"releaseOn: one of {', '.join(RELEASE_ON)}")
    if isinstance(release_after_seconds, bool) or int(release_after_seconds) < 0:
        raise ValueError("releaseAfterSeconds: a whole number of seconds >= 0")
    saved = copy.deepcopy(dict(activity))
    saved["name"] = activity_name(template)
    saved["metaData"] = {**(saved.get("metaData") or {}), "isConfigured": True}
    in_arguments: list[dict[str, str]] = [
        {"contactKey": "{{Contact.Key}}"},
        {"templateId": template_id},
        {"subscriptionId": subscription_binding},
        {"releaseEventDefinitionKey": release_key},
        {"releaseOn": release_on},
        {"releaseAfterSeconds": str(int(release_after_seconds))},
    ]
    in_arguments += [{name: bindings[name]} for name in names if name in bindings]
    arguments = saved.setdefault("arguments", {})
    arguments["execute"] = {**(arguments.get("execute") or {}), "inArguments": in_arguments}
    return saved


def demo_bindings(
    event_definition_key: str = DEMO_EVENT_KEY, template: Mapping[str, Any] = DEMO_TEMPLATE
) -> dict[str, str]:
    """The demo marketer's mapping: placeholders auto-matched to same-named entry fields (the
    demo template's FirstName), City picked as "Home City", the rest (Brand) on their default."""
    fields = {name: event_binding(event_definition_key, name) for name, _kind, _length in DEMO_ENTRY_FIELDS}
    names = [item["name"] for item in placeholders(dict(template))]
    bindings = {name: fields[name] for name in names if name in fields}
    if "City" in names:
        bindings["City"] = fields["Home City"]
    return bindings


def demo_activity(
    template_id: str,
    event_definition_key: str,
    release_key: str,
    *,
    config: Mapping[str, Any] | None = None,
    activity_id: str = "demo-activity",
    template: Mapping[str, Any] = DEMO_TEMPLATE,
    release_on: str = "confirmed",
) -> dict[str, Any]:
    """The demo's activity as the UI saves it: `template` (DEMO_TEMPLATE, stored as
    `template_id`) mapped with `demo_bindings`, the default subscription binding, released
    once on confirmation (`release_on`) with the UI's default time limit. `config` is
    config.json as served (default: rendered in-process for the built-in settings)."""
    return save_activity(
        journey_activity(config if config is not None else activity_config(), activity_id),
        template=template,
        template_id=template_id,
        bindings=demo_bindings(event_definition_key, template),
        release_key=release_key,
        release_on=release_on,
        release_after_seconds=3600,
    )


# --- execute time: JB resolves the saved bindings per contact --------------------------------


def _resolved(in_arguments: list[dict[str, Any]], fields: Mapping[str, str]) -> list[dict[str, Any]]:
    def value(item: Any) -> Any:
        if not isinstance(item, str):
            return item
        return _BINDING.sub(lambda m: str(fields.get(m.group(1).strip(), "") or ""), item)

    return [{key: value(item) for key, item in argument.items()} for argument in in_arguments]


def resolve_in_arguments(in_arguments: list[dict[str, Any]], fields: Mapping[str, str]) -> dict[str, Any]:
    """What JB does at execute time: each `{{path}}` replaced by `fields[path]` (paths without
    braces), "" when the contact has no value there; literals unchanged; merged like execute."""
    return merge_in_arguments(_resolved(in_arguments, fields))


def contact_fields(contact: Contact, event_definition_key: str = DEMO_EVENT_KEY) -> dict[str, str]:
    """A contact's data under the binding paths the UI writes: its entry-source row and its
    Calendar Subscription attribute ("" when SFMC links no subscription to this contact key:
    the worker then looks it up server-side, or the contact ends no_subscription)."""
    entry = {"ContactKey": contact.key, "FirstName": contact.first_name, "Home City": contact.city}
    entry["Email"] = contact.email
    fields = {event_binding(event_definition_key, name)[2:-2]: value for name, value in entry.items()}
    fields["Contact.Key"] = contact.key
    fields[SUBSCRIPTION_ATTRIBUTE] = contact.subscription_id
    return fields


def _in_arguments(activity: Mapping[str, Any]) -> list[dict[str, Any]]:
    return ((activity.get("arguments") or {}).get("execute") or {}).get("inArguments") or []


def binding_paths(activity: Mapping[str, Any]) -> list[str]:
    """Every `{{path}}` the saved activity's inArguments bind (paths without braces), in order."""
    found = [
        match.group(1).strip()
        for argument in _in_arguments(activity)
        for value in argument.values()
        if isinstance(value, str)
        for match in _BINDING.finditer(value)
    ]
    return list(dict.fromkeys(found))


def event_field(path: str) -> tuple[str, str] | None:
    """(event definition key, field name) of `Event.<key>.<Field>` (the name quoted or verbatim,
    spaces kept); None for any other path."""
    if not path.startswith("Event."):
        return None
    key, dot, name = path[len("Event.") :].partition(".")
    if not (key and dot and name):
        return None
    return key, name[1:-1] if len(name) > 1 and name[0] == name[-1] == '"' else name


def activity_fields(contact: Contact, activity: Mapping[str, Any]) -> dict[str, str]:
    """The contact's data under every path `activity` binds, as JB holds it: its entry-source row
    for `Event.<key>.<Field>` (the demo fields by name, in any case and spacing: "Home City",
    "City", "first name"; any other field a sample text of its own) and its Calendar Subscription
    attribute; "" for other contact attributes."""
    known = {"contactkey": contact.key, "firstname": contact.first_name, "email": contact.email}
    known |= {"homecity": contact.city, "city": contact.city, "emailaddress": contact.email}
    fields = {"Contact.Key": contact.key, SUBSCRIPTION_ATTRIBUTE: contact.subscription_id}
    for path in binding_paths(activity):
        found = event_field(path)
        if found is not None:
            normal = re.sub(r"[^a-z0-9]", "", found[1].lower())
            fields[path] = known.get(normal, f"{found[1]} of {contact.key}")
    return fields


def execute_payload(
    contact: Contact,
    activity: Mapping[str, Any],
    journey_id: str,
    event_definition_key: str = DEMO_EVENT_KEY,
    fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """JB's execute body for `contact` at the saved `activity`: its inArguments resolved for the
    contact (from `fields`, default the demo entry source's `contact_fields`); retries of the same
    contact and activity share the definitionInstanceId."""
    activity_id = str(activity["id"])
    in_arguments = _in_arguments(activity)
    if fields is None:
        fields = contact_fields(contact, event_definition_key)
    return {
        "inArguments": _resolved(in_arguments, fields),
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
