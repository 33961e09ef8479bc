"""The Journey Builder execute payload (the decoded JWT), docs/vendors/sfmc-custom-activity.md §2.4."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from pipeline.infra.cellsafe import refuse_formula

_ID = validate.Length(min=1, max=200)

# When the contact waiting on a "Wait Until API Event" is released (docs/http-contract.md, inArguments):
# at its outcome (`accepted`, the default), or at Rokt's confirmation (`confirmed`), the outcome
# so far being released after `releaseAfterSeconds` without one.
RELEASE_ON = ("accepted", "confirmed")
DEFAULT_RELEASE_ON = "accepted"
DEFAULT_RELEASE_AFTER_SECONDS = 3600


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def release_problems(args: dict[str, Any]) -> dict[str, list[str]]:
    """`releaseOn` / `releaseAfterSeconds` that cannot be used, by inArgument name (absent or
    blank is fine: the default)."""
    problems: dict[str, list[str]] = {}
    release_on = args.get("releaseOn")
    if not _blank(release_on) and (not isinstance(release_on, str) or release_on.strip() not in RELEASE_ON):
        problems["releaseOn"] = [f"must be one of {', '.join(RELEASE_ON)}"]
    after = args.get("releaseAfterSeconds")
    if not _blank(after) and _whole_seconds(after) is None:
        problems["releaseAfterSeconds"] = ["must be a whole number of seconds >= 0"]
    return problems


def _whole_seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    return None


def release_policy(args: dict[str, Any]) -> tuple[str, int]:
    """(releaseOn, releaseAfterSeconds) of merged inArguments, defaults filled in; values that
    execute would have refused (release_problems) count as the defaults."""
    release_on = args.get("releaseOn")
    mode = release_on.strip() if isinstance(release_on, str) and release_on.strip() in RELEASE_ON else None
    after = _whole_seconds(args.get("releaseAfterSeconds"))
    return (
        mode or DEFAULT_RELEASE_ON,
        DEFAULT_RELEASE_AFTER_SECONDS if after is None else after,
    )


class ExecuteSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # JB adds fields over time (activityInstanceId, mode, ...)

    inArguments = fields.List(fields.Dict(keys=fields.String()), required=True)
    outArguments = fields.List(fields.Dict(), load_default=list)
    activityId = fields.String(required=True, validate=_ID)
    definitionInstanceId = fields.String(required=True, validate=_ID)
    keyValue = fields.String(required=True, validate=[validate.Length(min=1, max=254), refuse_formula])
    journeyId = fields.String(load_default="")
    activityObjectID = fields.String(load_default="")
    activityInstanceId = fields.String(load_default="")
    mode = fields.Raw(load_default=None)

    @validates_schema
    def _in_arguments(self, data: dict[str, Any], **_kwargs: object) -> None:
        merged = merge_in_arguments(data.get("inArguments") or [])
        problems = release_problems(merged)
        template_id = merged.get("templateId")
        if not isinstance(template_id, str) or not template_id.strip():
            problems = {"templateId": ["required: the event template to send"], **problems}
        if problems:
            raise ValidationError({"inArguments": problems})

    @post_load
    def _merge(self, data: dict[str, Any], **_kwargs: object) -> dict[str, Any]:
        data["args"] = merge_in_arguments(data["inArguments"])
        return data


def merge_in_arguments(in_arguments: list[dict[str, Any]]) -> dict[str, Any]:
    """JB sends a list of one-key objects; later keys win, as in Salesforce's example."""
    merged: dict[str, Any] = {}
    for item in in_arguments:
        merged.update(item)
    return merged
