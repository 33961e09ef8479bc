"""Template documents are validated, naming the field."""

import pytest
from marshmallow import ValidationError

from schemas.templates import TemplateSchema


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"title": "Hi {{Name"}, "title"),
        ({"missingFieldPolicy": "guess"}, "missingFieldPolicy"),
        ({"notifyBefore": -5}, "notifyBefore"),
        ({"colour": "red"}, "colour"),
        ({"start": None}, "start"),
    ],
)
def test_invalid_templates_name_the_field(change, field):
    document = {"title": "t", "start": "2026-01-01T09:00:00", "timezone": "Pacific Standard Time", **change}
    document = {k: v for k, v in document.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        TemplateSchema().load(document)
    assert field in caught.value.messages


def test_template_defaults():
    loaded = TemplateSchema().load({"title": "t", "start": "2026-01-01T09:00:00", "timezone": "UTC"})
    assert loaded["missingFieldPolicy"] == "strict" and loaded["allDay"] is False
