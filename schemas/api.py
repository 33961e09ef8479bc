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
