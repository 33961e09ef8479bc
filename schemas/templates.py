"""Event templates, stored server-side per tenant so Journey Builder never sees our `{{ }}`."""

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from pipeline.journeys.render import FIELD_LIMITS, RENDERED_FIELDS, canonical_time_zone, placeholder_problems

POLICIES = ("strict", "blank")
# what the store adds to a template (and the API to an item): an update may send them back as
# read, they are ignored (an `id` must then be the template's own)
READ_ONLY_FIELDS = (
    "id",
    "tenant",
    "createdAt",
    "updatedAt",
    "placeholders",
    "archivedAt",
    "cancelJob",
    "sent",
)


class TimeZone(fields.String):
    """A time zone as typed (any case, a city such as "Sydney", a Windows ID), stored canonical
    ("Australia/Sydney"), so the UI's list and the CLI accept the same words; anything else is
    refused naming what to type."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return canonical_time_zone(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


class TemplateSchema(Schema):
    class Meta:
        unknown = RAISE

    # the same caps the renderer applies to the rendered fields (pipeline.journeys.render.FIELD_LIMITS)
    title = fields.String(required=True, validate=validate.Length(min=1, max=FIELD_LIMITS["title"]))
    description = fields.String(load_default="", validate=validate.Length(max=FIELD_LIMITS["description"]))
    location = fields.String(load_default="", validate=validate.Length(max=FIELD_LIMITS["location"]))
    start = fields.String(required=True, validate=validate.Length(min=1, max=200))
    end = fields.String(load_default="", validate=validate.Length(max=200))
    timezone = TimeZone(required=True)
    allDay = fields.Boolean(load_default=False)
    notifyBefore = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 40320))
    missingFieldPolicy = fields.String(load_default="strict", validate=validate.OneOf(POLICIES))
    name = fields.String(load_default="", validate=validate.Length(max=200))
    # links of the description and location go through our redirect (pipeline/journeys/links.py)
    trackClicks = fields.Boolean(load_default=False)

    @validates_schema
    def _placeholders(self, data: dict, **_kwargs: object) -> None:
        """Every `{{` must open a placeholder; each one that does not is named with its rule."""
        errors = {}
        for name in RENDERED_FIELDS:
            problems = placeholder_problems(data.get(name) or "")
            if problems:
                errors[name] = problems
        if errors:
            raise ValidationError(errors)
