"""marshmallow schemas, one module per contract."""
