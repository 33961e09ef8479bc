"""The App Settings form (`POST /app/settings`): what an admin may change about their own tenant.

Every field may be left empty (a pending tenant is saved step by step; App Settings lists what is
still missing). A write-only secret left empty keeps the stored one. Values are stripped.
"""

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

IDENTIFIER = validate.Regexp(r"^[A-Za-z0-9._-]*$", error="letters, digits, '.', '_' or '-' only")
MID = validate.Regexp(r"^[0-9]*$", error="the business unit's MID: digits only")
NO_CONTROL = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="must not contain control characters")
# HS256 keys shorter than the hash are weak (RFC 7518 3.2); SFMC's own are far longer
JWT_SECRET_MIN = 32

SECRET_FIELDS = ("rokt_client_secret", "sfmc_client_secret", "jb_jwt_secret")


class AppSettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    rokt_account_id = fields.String(load_default="", validate=[validate.Length(max=64), IDENTIFIER])
    rokt_account_code = fields.String(load_default="", validate=[validate.Length(max=64), IDENTIFIER])
    rokt_client_id = fields.String(load_default="", validate=[validate.Length(max=256), IDENTIFIER])
    rokt_client_secret = fields.String(load_default="", validate=[validate.Length(max=512), NO_CONTROL])
    sfmc_account_id = fields.String(load_default="", validate=[validate.Length(max=18), MID])
    sfmc_client_id = fields.String(load_default="", validate=[validate.Length(max=256), IDENTIFIER])
    sfmc_client_secret = fields.String(load_default="", validate=[validate.Length(max=512), NO_CONTROL])
    jb_jwt_secret = fields.String(load_default="", validate=[validate.Length(max=1024), NO_CONTROL])

    @pre_load
    def strip(self, data, **_kwargs):
        if not hasattr(data, "items"):
            raise ValidationError("expected form fields")
        return {key: value.strip() if isinstance(value, str) else value for key, value in data.items()}

    @validates_schema
    def jwt_secret_length(self, data, **_kwargs):
        secret = data.get("jb_jwt_secret", "")
        if secret and len(secret) < JWT_SECRET_MIN:
            raise ValidationError(
                f"at least {JWT_SECRET_MIN} characters (copy the package's JWT Signing Secret)",
                "jb_jwt_secret",
            )

    @post_load
    def drop_empty_secrets(self, data, **_kwargs):
        """An empty write-only field keeps the stored secret."""
        return {key: value for key, value in data.items() if not (key in SECRET_FIELDS and value == "")}
