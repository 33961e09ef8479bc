"""Request bodies and queries of `/t/<tenant>/api/...` (pipeline/web/api.py)."""

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas.templates import TemplateSchema

MAX_VALUES = 200


class TemplateQuerySchema(Schema):
    """`GET /api/templates?q=&page=&perPage=`; other query parameters (cache busters) are ignored."""

    class Meta:
        unknown = EXCLUDE

    q = fields.String(load_default="", validate=validate.Length(max=200))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    perPage = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class PreviewSchema(Schema):
    """`POST /api/preview`: a stored template (`templateId`) or one given inline (`template`),
    exactly one of them, and the placeholder values to render with (strings)."""

    class Meta:
        unknown = RAISE

    templateId = fields.String(validate=validate.Length(min=1, max=100))
    template = fields.Nested(TemplateSchema)
    values = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=200)),
        values=fields.String(validate=validate.Length(max=8000)),
        load_default=dict,
        validate=validate.Length(max=MAX_VALUES),
    )
    # the brand's name, when the UI knows it, for the "brand in the title" advice
    brand = fields.String(load_default="", validate=validate.Length(max=100))

    @validates_schema
    def _one_template(self, data: dict, **_kwargs: object) -> None:
        given = [name for name in ("templateId", "template") if name in data]
        if len(given) != 1:
            message = (
                "give exactly one of templateId and template" if given else "templateId or template required"
            )
            raise ValidationError({"templateId": [message], "template": [message]})


class TemplateUpdateQuerySchema(Schema):
    """`PUT /api/templates/<id>?applyToSent=true|false`: whether the change also corrects the
    events already sent (a correction job); also accepted as the body's `applyToSent` field."""

    class Meta:
        unknown = EXCLUDE

    applyToSent = fields.Boolean(load_default=False)


class CancelEventsSchema(Schema):
    """`POST /api/templates/<id>/cancel`: why (shown in every cancelled contact's status row), and
    the count the person confirmed (optional: when given, it must be the count held now)."""

    class Meta:
        unknown = RAISE

    reason = fields.String(load_default="", validate=validate.Length(max=300))
    confirmCount = fields.Integer(validate=validate.Range(min=0))


class RemoveEventsSchema(Schema):
    """`POST /api/events/remove`: one contact's events out of their subscriptions (all, or one
    template's)."""

    class Meta:
        unknown = RAISE

    contactKey = fields.String(required=True, validate=validate.Length(min=1, max=254))
    templateId = fields.String(validate=validate.Length(min=1, max=100))
    reason = fields.String(load_default="", validate=validate.Length(max=300))


class EventJobsQuerySchema(Schema):
    """`GET /api/event-jobs?running=&limit=`."""

    class Meta:
        unknown = EXCLUDE

    running = fields.Boolean(load_default=False)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class PerformanceQuerySchema(Schema):
    """`GET /api/performance?from=&to=&activity=&template=&format=`: days in the tenant's
    reporting time zone (both default to today; `to` alone ends a range that starts `from`)."""

    class Meta:
        unknown = RAISE

    start = fields.Date(data_key="from", load_default=None)
    end = fields.Date(data_key="to", load_default=None)
    activity = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    template = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))

    @validates_schema
    def one_scope(self, data, **_kwargs):
        if data.get("activity") and data.get("template"):
            raise ValidationError("give an activity or a template, not both", "template")
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            raise ValidationError("must not be before from", "to")
