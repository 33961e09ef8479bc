"""The tenant's data extensions in SFMC, installed with one click (App Settings, the CLI).

The schema is one table, `DATA_EXTENSIONS`: the "Calendar Subscription" DE (the integration
guide's 26 attributes plus ours: ContactMatch, UpdatedAt), the status DE (one row per
execution) and the performance DE (one row per day and activity), in the folder "Rokt
Calendar" under the "Data Extensions" root. docs/admin-guide.md shows the table as
`markdown_table()` renders it.

Install (SOAP, docs/vendors/sfmc-app.md §C.3-C.4), idempotent: the folder by its
external key (else by name under the root), created when absent; each DE retrieved by its
external key, created when absent, else its columns are read and only the missing ones added
(`Update`). Nothing is ever dropped or altered. Progress is kept in Redis for the page to poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from pipeline.clients.errors import ClientError, PermanentError
from pipeline.clients.soap import AndFilter, SimpleFilter, SoapClient, SoapObject
from pipeline.infra import keys
from pipeline.settings import Tenant
from pipeline.tenancy.handles import Runtime
from pipeline.vocabulary import HELD_STATES, State

FIELD_TYPES = ("Text", "Number", "Date", "Boolean", "EmailAddress", "Phone", "Decimal", "Locale")
MAX_EXTERNAL_KEY = 36  # SFMC: an external key (CustomerKey) has at most 36 characters
MAX_TEXT_LENGTH = 4000
QUEUED_STALE_SECONDS = 600  # a queued/running install older than this may be queued again
ROOT_CONTENT_TYPE = "dataextension"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a DataExtensionField FieldType
    length: int | None = None  # MaxLength (Text, EmailAddress)
    primary_key: bool = False
    required: bool = False
    description: str = ""

    def soap_field(self) -> dict[str, Any]:
        """A DataExtensionField in the WSDL's element order (Field, then DataExtensionField)."""
        return {
            "Name": self.name,
            "MaxLength": self.length,
            "IsRequired": self.required or self.primary_key,
            "IsPrimaryKey": self.primary_key,
            "FieldType": self.type,
        }


@dataclass(frozen=True)
class DataExtension:
    role: str  # what we write into it: "subscription", "status" or "performance"
    name: str
    description: str
    key_of: Callable[[Tenant], str]  # the tenant's external key (CustomerKey) of this DE
    columns: tuple[Column, ...]
    sendable_field: str = ""  # the column related to "Subscriber Key" (empty: not sendable)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Folder:
    customer_key: str
    name: str
    description: str


FOLDER = Folder("rokt_calendar_de_folder", "Rokt Calendar", "Data extensions of the Rokt Calendar app")


def _text(name: str, length: int, description: str, **flags: bool) -> Column:
    return Column(name, "Text", length, description=description, **flags)


SUBSCRIPTION_DE = DataExtension(
    role="subscription",
    name="Calendar Subscription",
    description="Rokt Calendar subscriptions, one row per subscription (written by the Rokt webhooks)",
    key_of=lambda tenant: tenant.sfmc_subscription_de_key,
    sendable_field="SubscriberExternalId",
    columns=(
        _text("CalendarSubscriptionId", 100, "Rokt's subscription id", primary_key=True, required=True),
        _text("SubscriberExternalId", 254, "the subscriber's id at the brand: the Contact Key"),
        Column("Email", "EmailAddress", 254, description="the email entered when subscribing"),
        _text("accountCode", 100, "code of the Rokt Calendar account"),
        _text("accountId", 50, "id of the Rokt Calendar account (a UUID)"),
        _text("accountName", 200, "name of the Rokt Calendar account"),
        _text("calendarCode", 100, "code of the calendar"),
        _text("calendarId", 50, "id of the calendar (a UUID)"),
        _text("calendarTitle", 500, "title of the calendar"),
        _text("countryCode", 10, "country code of the subscription"),
        _text("deviceName", 100, "device type of the subscription"),
        _text("EventId", 100, "id of the Rokt webhook event that last set the row"),
        _text("geoCountry", 100, "country the subscription came from"),
        Column("optIn1", "Boolean", description="first of two opt-ins"),
        Column("optIn2", "Boolean", description="second of two opt-ins"),
        _text("Referrer", 2000, "the page the subscriber came from"),
        Column("RemovedDateTime", "Date", description="when the subscriber unsubscribed (UTC)"),
        _text("source", 200, "source of the subscription"),
        _text("subscriptionMethod", 50, "webcal, Google, Microsoft"),
        _text("TimeZoneTag", 100, "time zone the subscription's events are filtered by"),
        _text("tagID", 4000, "calendar tag ids, joined with ;"),
        _text("TagText", 4000, "calendar tag texts, joined with ; in the order of tagID"),
        _text("UtmCampaign", 500, "utm_campaign of the subscription"),
        _text("UtmContent", 500, "utm_content of the subscription"),
        _text("UtmMedium", 500, "utm_medium of the subscription"),
        _text("UtmSource", 500, "utm_source of the subscription"),
        _text("ContactMatch", 20, "ours: matched (contact existed), created, or failed"),
        Column("UpdatedAt", "Date", description="ours: when the row was last written (UTC)"),
    ),
)

STATUS_DE = DataExtension(
    role="status",
    name="Rokt Calendar Event Status",
    description="One row per Journey Builder execution of the Rokt Calendar activity",
    key_of=lambda tenant: tenant.sfmc_status_de_key,
    columns=(
        _text("ContactKey", 254, "the journey's contact", primary_key=True, required=True),
        _text(
            "ExecutionId",
            100,
            "the execution (activity and journey instance)",
            primary_key=True,
            required=True,
        ),
        _text("Status", 30, ", ".join(State)),
        _text(
            "RoktEventId", 100, f"the event at Rokt (while Rokt holds it: {', '.join(sorted(HELD_STATES))})"
        ),
        _text("Error", 500, "why it failed, or why its event was cancelled, removed or withdrawn"),
        _text("TemplateId", 100, "the event template"),
        _text("JourneyId", 100, "the journey"),
        _text("ActivityId", 100, "the activity in the journey"),
        Column("CreatedAt", "Date", description="when the execution arrived (UTC)"),
        Column("UpdatedAt", "Date", description="when its row last changed: its status, or a click (UTC)"),
        Column(
            "FirstClickedAt",
            "Date",
            description="when the subscriber first followed a tracked link of the event (UTC; empty: never)",
        ),
        Column("Clicks", "Number", description="tracked links of the event followed (every click counts)"),
    ),
)


def _count(name: str, description: str) -> Column:
    return Column(name, "Number", description=description)


# One row per tenant-local day and activity, plus the tenant's own row (ActivityId `*`),
# upserted by pipeline/delivery/performance_rows.py from pipeline/stores/performance.py's figures
# (the column -> figure map is there). Date is Text: SFMC refuses a Date primary key.
PERFORMANCE_DE = DataExtension(
    role="performance",
    name="Rokt Calendar Performance",
    description="What the Rokt Calendar activity did, one row per day (the tenant's time zone) and activity",
    key_of=lambda tenant: tenant.sfmc_performance_de_key,
    columns=(
        _text("Date", 10, "the day, YYYY-MM-DD in TimeZone", primary_key=True, required=True),
        _text(
            "ActivityId",
            100,
            "the activity in the journey; `*`: the whole tenant",
            primary_key=True,
            required=True,
        ),
        _text("ActivityName", 200, "the activity's name in Journey Builder (else its id)"),
        _text("JourneyId", 100, "the journey, as Journey Builder's execute call names it"),
        _text("JourneyName", 200, "the journey's name in Journey Builder (else its id)"),
        _text("TimeZone", 100, "the IANA time zone of the tenant's report days"),
        _count("Entered", "contacts that reached the activity"),
        _count("Sent", "events Rokt accepted (created)"),
        _count("InCalendars", "events Rokt confirmed in a subscriber's calendar"),
        _count("Updated", "sent events corrected"),
        _count("RemovedBySubscribers", "events subscribers took out of their calendar"),
        _count("Deleted", "sent events cancelled (deleted everywhere)"),
        _count("Withdrawn", "events removed from one contact's subscription"),
        _count("NotSent", "no subscription, a missing field, or cancelled before sending"),
        _count("Failed", "executions that failed"),
        _count("Clicks", "tracked links followed"),
        _count("Clickers", "executions whose link was followed at least once"),
        _count("Subscribed", "tenant row only: calendar subscriptions created"),
        _count("Unsubscribed", "tenant row only: calendar subscriptions ended"),
        _count("NetSubscribers", "tenant row only: Subscribed - Unsubscribed"),
        Column("UpdatedAt", "Date", description="when the row was last written (UTC)"),
    ),
)

DATA_EXTENSIONS: tuple[DataExtension, ...] = (SUBSCRIPTION_DE, STATUS_DE, PERFORMANCE_DE)


def markdown_table() -> str:
    """The schema as docs/admin-guide.md shows it (`make docs`): one table per data extension."""
    parts = []
    for de in DATA_EXTENSIONS:
        sendable = f"; sendable: `{de.sendable_field}` → Subscriber Key" if de.sendable_field else ""
        parts.append(f"**{de.name}** (external key: the tenant's `sfmc_{de.role}_de_key`{sendable})\n")
        parts.append("| Column | Type | Length | Key | Meaning |\n|---|---|---|---|---|")
        for c in de.columns:
            key = "primary" if c.primary_key else ""
            parts.append(f"| `{c.name}` | {c.type} | {c.length or ''} | {key} | {c.description} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


# --- progress ------------------------------------------------------------------------------


def install_progress(r: redis.Redis, tenant: str) -> dict[str, Any]:
    """What the last install did: state never|queued|running|done|failed, its steps, the error."""
    raw = r.get(keys.install_progress(tenant))
    if not raw:
        return {"state": "never", "steps": [], "error": "", "updatedAt": 0.0}
    return json.loads(raw)


def _save(r: redis.Redis, tenant: str, state: str, steps: list[dict[str, str]], error: str = "") -> None:
    progress = {"state": state, "steps": steps, "error": error, "updatedAt": time.time()}
    r.set(keys.install_progress(tenant), json.dumps(progress))


def mark_queued(r: redis.Redis, tenant: str) -> bool:
    """Record a new run as queued; False when one is queued or running and younger than 10 minutes."""
    key = keys.install_progress(tenant)

    def queue(pipe: redis.client.Pipeline) -> bool:
        raw = pipe.get(key)
        current = json.loads(raw) if raw else {}
        busy = current.get("state") in ("queued", "running")
        if busy and time.time() - float(current.get("updatedAt") or 0) < QUEUED_STALE_SECONDS:
            return False
        pipe.multi()
        pipe.set(key, json.dumps({"state": "queued", "steps": [], "error": "", "updatedAt": time.time()}))
        return True

    return bool(r.transaction(queue, key, value_from_callable=True))


def installed(r: redis.Redis, tenant: str) -> bool:
    """Whether the last install finished (every step created, updated or found)."""
    return install_progress(r, tenant)["state"] == "done"


def not_installed(r: redis.Redis, tenant: str) -> list[str]:
    """The data extensions the tenant's last finished install is known not to have made or found:
    an install from before they existed (the performance DE came later). [] when that is not known
    (never installed here, an install running or failed: SFMC itself may have them)."""
    progress = install_progress(r, tenant)
    if progress.get("state") != "done":
        return []
    steps = [str(step.get("name", "")) for step in progress.get("steps", [])]
    return [
        de.name
        for de in DATA_EXTENSIONS
        if not any(s.startswith(f"data extension {de.name} (") for s in steps)
    ]


def record_failure(r: redis.Redis, tenant: str, reason: str) -> None:
    """End the run `failed` with the reason (the task calls it when it stops retrying)."""
    progress = install_progress(r, tenant)
    _save(r, tenant, "failed", progress.get("steps", []), reason)


# --- install -------------------------------------------------------------------------------


def soap_client(rt: Runtime, tenant: str) -> SoapClient:
    """SOAP with the REST client's token (asked for the tenant's MID) and the tenant's SFMC limiter."""
    rest = rt.sfmc(tenant)
    return SoapClient(
        rest.token,
        rt.settings.http_timeout,
        session=rest.session,  # its calls count with the REST client's (rsf_vendor_calls_total)
        gate=rt.limiter(tenant, "sfmc").acquire,
    )


def install(rt: Runtime, tenant: str) -> dict[str, Any]:
    """Create what is absent, add missing columns; returns the progress (state "done").

    Raises the ClientError that stopped it: a PermanentError ends the progress `failed` with the
    reason; a retryable one leaves it `running` with the reason, for the task to retry.
    """
    config = rt.tenant(tenant)
    client = soap_client(rt, tenant)
    steps: list[dict[str, str]] = []
    _save(rt.redis, tenant, "running", steps)
    step = f"folder {FOLDER.name}"
    try:
        result, folder_id = ensure_folder(client)
        steps.append({"name": step, "result": result, "detail": f"folder id {folder_id}"})
        _save(rt.redis, tenant, "running", steps)
        for de in DATA_EXTENSIONS:
            step = f"data extension {de.name} ({de.key_of(config)})"
            if not 0 < len(de.key_of(config)) <= MAX_EXTERNAL_KEY:
                raise PermanentError(
                    f"sfmc_{de.role}_de_key must have 1 to {MAX_EXTERNAL_KEY} characters (an external key)"
                )
            result, detail = ensure_data_extension(client, de, de.key_of(config), folder_id)
            steps.append({"name": step, "result": result, "detail": detail})
            _save(rt.redis, tenant, "running", steps)
    except ClientError as exc:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            rt.limiter(tenant, "sfmc").pause(retry_after)
        if exc.retryable:
            _save(rt.redis, tenant, "running", steps, f"retrying: {exc.reason}")
        else:
            steps.append({"name": step, "result": "failed", "detail": exc.reason})
            _save(rt.redis, tenant, "failed", steps, exc.reason)
        raise
    _save(rt.redis, tenant, "done", steps)
    return install_progress(rt.redis, tenant)


def missing_at_sfmc(rt: Runtime, tenant: str) -> list[str]:
    """What an install would still create or add, read without changing anything (`tenants
    check`): "folder Rokt Calendar", "data extension <key>", "<key>.<column>"."""
    config = rt.tenant(tenant)
    client = soap_client(rt, tenant)
    missing = []
    if not client.retrieve("DataFolder", ("ID",), SimpleFilter("CustomerKey", FOLDER.customer_key)):
        missing.append(f"folder {FOLDER.name}")
    for de in DATA_EXTENSIONS:
        key = de.key_of(config)
        if not client.retrieve("DataExtension", ("CustomerKey",), SimpleFilter("CustomerKey", key)):
            missing.append(f"data extension {key}")
            continue
        fields = client.retrieve(
            "DataExtensionField", ("Name",), SimpleFilter("DataExtension.CustomerKey", key)
        )
        present = {f.get("Name", "").lower() for f in fields}
        missing.extend(f"{key}.{c.name}" for c in de.columns if c.name.lower() not in present)
    return missing


def ensure_folder(client: SoapClient) -> tuple[str, int]:
    """("exists"|"created", folder id) of "Rokt Calendar" under the Data Extensions root."""
    properties = ("ID", "CustomerKey", "Name", "ContentType")
    found = client.retrieve("DataFolder", properties, SimpleFilter("CustomerKey", FOLDER.customer_key))
    if found:
        return "exists", int(found[0]["ID"])
    roots = client.retrieve(
        "DataFolder",
        properties,
        AndFilter(SimpleFilter("ContentType", ROOT_CONTENT_TYPE), SimpleFilter("ParentFolder.ID", "0")),
    )
    if not roots:
        raise PermanentError("SFMC has no Data Extensions root folder (DataFolder dataextension, parent 0)")
    root_id = int(roots[0]["ID"])
    same_name = client.retrieve(
        "DataFolder",
        properties,
        AndFilter(SimpleFilter("Name", FOLDER.name), SimpleFilter("ParentFolder.ID", str(root_id))),
    )
    if same_name:  # made by hand before: use it, whatever its key
        return "exists", int(same_name[0]["ID"])
    folder = SoapObject(
        "DataFolder",
        {
            "CustomerKey": FOLDER.customer_key,
            "ParentFolder": {"ID": root_id},
            "Name": FOLDER.name,
            "Description": FOLDER.description,
            "ContentType": ROOT_CONTENT_TYPE,
            "IsActive": True,
            "IsEditable": True,
            "AllowChildren": True,
        },
    )
    result = client.create([folder])[0]
    return "created", int(result["NewID"])


def ensure_data_extension(client: SoapClient, de: DataExtension, key: str, folder_id: int) -> tuple[str, str]:
    """("created"|"updated"|"exists", detail): create it, or add the columns it lacks."""
    found = client.retrieve(
        "DataExtension", ("ObjectID", "CustomerKey", "Name", "CategoryID"), SimpleFilter("CustomerKey", key)
    )
    if not found:
        client.create([_definition(de, key, folder_id)])
        return "created", f"{len(de.columns)} columns"
    fields = client.retrieve(
        "DataExtensionField",
        ("Name", "FieldType", "MaxLength", "IsPrimaryKey"),
        SimpleFilter("DataExtension.CustomerKey", key),
    )
    present = {f.get("Name", "").lower(): f for f in fields}
    missing = [c for c in de.columns if c.name.lower() not in present]
    differs = [
        f"{c.name} is {present[c.name.lower()].get('FieldType')}, ours {c.type}"
        for c in de.columns
        if c.name.lower() in present and present[c.name.lower()].get("FieldType") != c.type
    ]
    note = f"; kept as they are: {', '.join(differs)}" if differs else ""
    if not missing:
        return "exists", f"all {len(de.columns)} columns present{note}"
    key_columns = [c.name for c in missing if c.primary_key]
    if key_columns:
        raise PermanentError(
            f"data extension {key} exists without the primary key column(s) {', '.join(key_columns)}, "
            "which cannot be added: delete or rename it in SFMC, then install again"
        )
    added = [{**c.soap_field(), "IsRequired": False} for c in missing]
    client.update([SoapObject("DataExtension", {"CustomerKey": key, "Fields": {"Field": added}})])
    return "updated", f"added {', '.join(c.name for c in missing)}{note}"


def _definition(de: DataExtension, key: str, folder_id: int) -> SoapObject:
    """A Create of the DE, in the WSDL's element order."""
    properties: dict[str, Any] = {"CustomerKey": key, "Name": de.name, "Description": de.description}
    if de.sendable_field:
        properties.update(
            {
                "IsSendable": True,
                "IsTestable": True,
                "SendableDataExtensionField": {"Name": de.sendable_field, "FieldType": "Text"},
                # "Subscriber Key" on create; a Retrieve answers "_SubscriberKey"
                "SendableSubscriberField": {"Name": "Subscriber Key"},
            }
        )
    properties["Fields"] = {"Field": [c.soap_field() for c in de.columns]}
    properties["CategoryID"] = folder_id
    return SoapObject("DataExtension", properties)
