"""Tenant configuration: one `[tenants.<name>]` table of a TENANTS_FILE, or the env vars."""

from marshmallow import RAISE, Schema, fields, validate

TENANT_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,62}$", error="lower-case letters, digits, - or _")


class TenantSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=TENANT_NAME)
    jb_jwt_secret = fields.String(load_default="")
    rokt_api_base_url = fields.Url(require_tld=False, load_default="https://api.roktcalendar.com")
    rokt_client_id = fields.String(load_default="")
    rokt_client_secret = fields.String(load_default="")
    rokt_account_code = fields.String(load_default="")
    rokt_rate_limit = fields.Float(load_default=50.0, validate=validate.Range(min=0.1))
    sfmc_auth_base_url = fields.String(load_default="")
    sfmc_client_id = fields.String(load_default="")
    sfmc_client_secret = fields.String(load_default="")
    sfmc_account_id = fields.String(load_default="")
    sfmc_status_de_key = fields.String(load_default="RoktCalendarEventStatus")
    sfmc_subscription_de_key = fields.String(load_default="RoktCalendarSubscription")
    sfmc_rate_limit = fields.Float(load_default=40.0, validate=validate.Range(min=0.1))
    rokt_webhook_secret = fields.String(load_default="")
