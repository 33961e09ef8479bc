"""Rokt Calendar webhook v2 (docs/vendors/rokt-calendar-api.md §9): envelope and subscription objects.

Rokt adds fields and documents several names for some of them, so unknown fields are
excluded and the aliases of §9.4/§11 are folded into one name before loading.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from pipeline.infra.cellsafe import formula_problem, refuse_formula

SUBSCRIBE = "Subscribe"
UNSUBSCRIBE = "Unsubscribe"
DETAILS_UPDATED = "SubscriptionDetailsUpdated"
EVENT_ADDED = "SubscriptionEventAdded"
EVENT_UPDATED = "SubscriptionEventUpdated"
EVENT_REMOVED = "SubscriptionEventRemoved"
EVENT_DELETED = "SubscriptionEventDeleted"
TEST = "Test"
KNOWN_TYPES = (
    SUBSCRIBE,
    UNSUBSCRIBE,
    DETAILS_UPDATED,
    EVENT_ADDED,
    EVENT_UPDATED,
    EVENT_REMOVED,
    EVENT_DELETED,
    TEST,
)
SUBSCRIPTION_TYPES = (SUBSCRIBE, UNSUBSCRIBE, DETAILS_UPDATED)
EVENT_TYPES = (EVENT_ADDED, EVENT_UPDATED, EVENT_REMOVED, EVENT_DELETED)
TYPE_ALIASES = {"SubscriptionDetailsUpdate": DETAILS_UPDATED}  # the documentation's own typo

# documented alternative names -> the name we load (§9.4, §11)
SUBSCRIPTION_ALIASES = {
    "email": "emailAddress",
    "marketingAllowed": "optIn1",
    "additionalOptIn": "optIn2",
    "urlReferrer": "referrer",
    "subscriberExternalId": "subscriberId",
    "timezoneId": "timeZoneId",
}


class TagSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    tagId = fields.String(load_default="")
    tagText = fields.String(load_default="")

    @pre_load
    def _aliases(self, data: Any, **_kwargs: object) -> Any:
        if isinstance(data, dict) and "tagText" not in data:
            text = data.get("text", data.get("name"))
            if text is not None:
                data = {**data, "tagText": text}
        if isinstance(data, dict) and "tagId" not in data and "id" in data:
            data = {**data, "tagId": data["id"]}
        return data


class SubscriptionSchema(Schema):
    """Subscription Basic / Details / Removed: every field optional except the id."""

    class Meta:
        unknown = EXCLUDE

    calendarSubscriptionId = fields.String(
        required=True, validate=[validate.Length(min=1, max=100), refuse_formula]
    )
    calendarId = fields.String(load_default="", validate=refuse_formula)
    calendarTitle = fields.String(load_default="")
    calendarCode = fields.String(load_default="")
    subscriptionMethod = fields.Raw(load_default="")
    calendarTags = fields.List(fields.Nested(TagSchema), load_default=list)
    subscriberId = fields.String(load_default="", allow_none=True, validate=refuse_formula)
    emailAddress = fields.String(load_default="", allow_none=True, validate=refuse_formula)
    optIn1 = fields.Boolean(load_default=None, allow_none=True)
    optIn2 = fields.Boolean(load_default=None, allow_none=True)
    countryCode = fields.String(load_default="", allow_none=True)
    geoCountry = fields.String(load_default="", allow_none=True)
    deviceName = fields.String(load_default="", allow_none=True)
    source = fields.String(load_default="", allow_none=True)
    referrer = fields.String(load_default="", allow_none=True)
    utmSource = fields.String(load_default="", allow_none=True)
    utmMedium = fields.String(load_default="", allow_none=True)
    utmCampaign = fields.String(load_default="", allow_none=True)
    utmContent = fields.String(load_default="", allow_none=True)
    timeZoneId = fields.String(load_default="", allow_none=True)
    removedDateTimeUtc = fields.String(load_default="", allow_none=True)
    createdDateTimeUtc = fields.String(load_default="", allow_none=True)

    @pre_load
    def _aliases(self, data: Any, **_kwargs: object) -> Any:
        if not isinstance(data, dict):
            return data
        folded = dict(data)
        for alias, name in SUBSCRIPTION_ALIASES.items():
            if alias in folded and name not in folded:
                folded[name] = folded.pop(alias)
        return folded


class SubscriptionEventSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    eventId = fields.String(required=True, validate=[validate.Length(min=1, max=200), refuse_formula])


class EnvelopeSchema(Schema):
    """The v2 envelope; `eventDetails` is checked according to `eventType`."""

    class Meta:
        unknown = EXCLUDE

    eventId = fields.String(required=True, validate=[validate.Length(min=1, max=100), refuse_formula])
    eventType = fields.String(required=True, validate=validate.Length(min=1, max=100))
    eventDetails = fields.Dict(required=True)

    @pre_load
    def _type_alias(self, data: Any, **_kwargs: object) -> Any:
        kind = data.get("eventType") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in TYPE_ALIASES:
            data = {**data, "eventType": TYPE_ALIASES[data["eventType"]]}
        return data

    @validates_schema
    def _details(self, data: dict[str, Any], **_kwargs: object) -> None:
        details = data.get("eventDetails") or {}
        kind = data.get("eventType")
        errors: dict[str, Any] = {}
        if kind in SUBSCRIPTION_TYPES or kind in (EVENT_ADDED, EVENT_REMOVED):
            subscription = details.get("subscription")
            if not isinstance(subscription, dict):
                subscription = {}
            if "calendarSubscriptionId" not in subscription and details.get("calendarSubscriptionId"):
                subscription = {**subscription, "calendarSubscriptionId": details["calendarSubscriptionId"]}
            found = SubscriptionSchema().validate(subscription)
            if found:
                errors["subscription"] = found
        account_problem = formula_problem(details.get("accountId"))
        if account_problem:
            errors["accountId"] = [account_problem]
        if kind in EVENT_TYPES:
            found = SubscriptionEventSchema().validate(details.get("subscriptionEvent") or {})
            if found:
                errors["subscriptionEvent"] = found
        if errors:
            raise ValidationError({"eventDetails": errors})


def load_subscription(details: dict[str, Any]) -> dict[str, Any]:
    """The subscription object of a validated envelope, with the top-level id as fallback."""
    subscription = dict(details.get("subscription") or {})
    if "calendarSubscriptionId" not in subscription and details.get("calendarSubscriptionId"):
        subscription["calendarSubscriptionId"] = details["calendarSubscriptionId"]
    return SubscriptionSchema().load(subscription)
