"""The Journey Builder execute payload (the decoded JWT), sfmc-custom-activity.md §2.4."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

_ID = validate.Length(min=1, max=200)


class ExecuteSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # JB adds fields over time (activityInstanceId, mode, ...)

    inArguments = fields.List(fields.Dict(keys=fields.String()), required=True)
    outArguments = fields.List(fields.Dict(), load_default=list)
    activityId = fields.String(required=True, validate=_ID)
    definitionInstanceId = fields.String(required=True, validate=_ID)
    keyValue = fields.String(required=True, validate=validate.Length(min=1, max=254))
    journeyId = fields.String(load_default="")
    activityObjectID = fields.String(load_default="")
    activityInstanceId = fields.String(load_default="")
    mode = fields.Raw(load_default=None)

    @validates_schema
    def _template_named(self, data: dict[str, Any], **_kwargs: object) -> None:
        merged = merge_in_arguments(data.get("inArguments") or [])
        template_id = merged.get("templateId")
        if not isinstance(template_id, str) or not template_id.strip():
            raise ValidationError({"inArguments": {"templateId": ["required: the event template to send"]}})

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
