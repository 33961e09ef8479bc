"""Event templates, stored server-side per tenant so Journey Builder never sees our `{{ }}`."""

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from pipeline.render import FIELD_LIMITS, PLACEHOLDER, resolve_time_zone

POLICIES = ("strict", "blank")
# what the store adds to a template (and the API to an item): an update may send them back as
# read, they are ignored (an `id` must then be the template's own)
READ_ONLY_FIELDS = ("id", "tenant", "createdAt", "updatedAt", "placeholders")


class TemplateSchema(Schema):
    class Meta:
        unknown = RAISE

    # the same caps the renderer applies to the rendered fields (pipeline.render.FIELD_LIMITS)
    title = fields.String(required=True, validate=validate.Length(min=1, max=FIELD_LIMITS["title"]))
    description = fields.String(load_default="", validate=validate.Length(max=FIELD_LIMITS["description"]))
    location = fields.String(load_default="", validate=validate.Length(max=FIELD_LIMITS["location"]))
    start = fields.String(required=True, validate=validate.Length(min=1, max=200))
    end = fields.String(load_default="", validate=validate.Length(max=200))
    timezone = fields.String(required=True)
    allDay = fields.Boolean(load_default=False)
    notifyBefore = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 40320))
    missingFieldPolicy = fields.String(load_default="strict", validate=validate.OneOf(POLICIES))
    name = fields.String(load_default="", validate=validate.Length(max=200))

    @validates("timezone")
    def _known_zone(self, value: str, **_kwargs: object) -> None:
        try:
            resolve_time_zone(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc

    @validates_schema
    def _balanced_placeholders(self, data: dict, **_kwargs: object) -> None:
        errors = {}
        for name in ("title", "description", "location", "start", "end"):
            text = data.get(name) or ""
            if text.count("{{") != len(PLACEHOLDER.findall(text)):
                errors[name] = ['malformed placeholder: use {{Field}} or {{Field | default: "text"}}']
        if errors:
            raise ValidationError(errors)
