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
    validates,
)

from pipeline.settings import zone_problem

IDENTIFIER = validate.Regexp(r"^[A-Za-z0-9._-]*$", error="letters, digits, '.', '_' or '-' only")
MID = validate.Regexp(r"^[0-9]*$", error="the business unit's MID: digits only")
NO_CONTROL = validate.Regexp(r"^[^\x00-\x1f\x7f]*$", error="must not contain control characters")
# HS256 keys shorter than the hash are weak (RFC 7518 3.2); SFMC's own are far longer
JWT_SECRET_MIN = 32

SECRET_FIELDS = ("rokt_client_secret", "sfmc_client_secret", "jb_jwt_secret")

# What the admin reads for each setting: the form's labels, and the same words wherever a setting
# is named to them ("Still missing", Test connection's "not set", errors): never an internal key.
LABELS = {
    "rokt_account_id": "Rokt Calendar account ID",
    "rokt_account_code": "Rokt account code",
    "rokt_client_id": "Rokt OAuth client ID",
    "rokt_client_secret": "Rokt OAuth client secret",
    "sfmc_account_id": "Business unit (MID)",
    "sfmc_client_id": "Server-to-server client ID",
    "sfmc_client_secret": "Server-to-server client secret",
    "jb_jwt_secret": "Package JWT signing secret",
    "reporting_time_zone": "Reporting time zone",
    # not on the form: set by the operator or by signing in
    "rokt_api_base_url": "Rokt API address (set by the operator)",
    "sfmc_refresh_token": "Marketing Cloud sign-in (sign out, then open the app again)",
    "sfmc_auth_base_url": "Marketing Cloud sign-in address (set by signing in)",
    "sfmc_eid": "Marketing Cloud enterprise",
    "name": "Tenant",
}


def label(field: str) -> str:
    """The admin's words for `field` (an unknown key is shown as it is, never dropped)."""
    return LABELS.get(field, field)


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
    reporting_time_zone = fields.String(load_default="", validate=[validate.Length(max=64)])

    @pre_load
    def strip(self, data, **_kwargs):
        if not hasattr(data, "items"):
            raise ValidationError("expected form fields")
        return {key: value.strip() if isinstance(value, str) else value for key, value in data.items()}

    @validates("jb_jwt_secret")
    def jwt_secret_length(self, value, **_kwargs):
        """A field validator, so it is reported beside every other field's error at once."""
        if value and len(value) < JWT_SECRET_MIN:
            raise ValidationError(
                f"at least {JWT_SECRET_MIN} characters (copy the package's JWT Signing Secret)"
            )

    @validates("reporting_time_zone")
    def known_zone(self, value, **_kwargs):
        problem = zone_problem(value)
        if problem:
            raise ValidationError(problem)

    @post_load
    def drop_empty_secrets(self, data, **_kwargs):
        """An empty write-only field keeps the stored secret."""
        return {key: value for key, value in data.items() if not (key in SECRET_FIELDS and value == "")}
