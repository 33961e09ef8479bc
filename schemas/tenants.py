"""Tenant configuration: one `[tenants.<name>]` table of a TENANTS_FILE, or the env vars.

Validation only: an absent key stays absent, and `pipeline.settings.Tenant` supplies its default.
"""

from marshmallow import RAISE, Schema, fields, validate

from pipeline.vocabulary import DNS_LABEL, SfmcAuthMode, TenantStatus

TENANT_NAME = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,62}$", error="lower-case letters, digits, - or _")


class TenantSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=TENANT_NAME)
    jb_jwt_secret = fields.String()
    rokt_api_base_url = fields.Url(require_tld=False)
    rokt_client_id = fields.String()
    rokt_client_secret = fields.String()
    rokt_account_code = fields.String()
    rokt_rate_limit = fields.Float(validate=validate.Range(min=0.1))
    sfmc_auth_base_url = fields.String()
    sfmc_client_id = fields.String()
    sfmc_client_secret = fields.String()
    sfmc_account_id = fields.String()
    sfmc_status_de_key = fields.String()
    sfmc_subscription_de_key = fields.String()
    sfmc_performance_de_key = fields.String()
    sfmc_rate_limit = fields.Float(validate=validate.Range(min=0.1))
    rokt_webhook_secret = fields.String()
    rokt_account_id = fields.String()
    status = fields.Enum(TenantStatus, by_value=True)
    pinned = fields.Boolean()
    sfmc_eid = fields.String()
    sfmc_tssd = fields.String(validate=validate.Regexp(f"^({DNS_LABEL})?$", error="one DNS label"))
    sfmc_stack = fields.String(validate=validate.Regexp(f"^({DNS_LABEL})?$", error="one DNS label (s4)"))
    frame_origins = fields.String()  # origin patterns: checked by pipeline.settings.tenant_from_mapping
    reporting_time_zone = fields.String()  # an IANA zone: checked by pipeline.settings.tenant_problems
    sfmc_auth_mode = fields.Enum(SfmcAuthMode, by_value=True)
    rokt_webhook_secret_previous = fields.String()
    rokt_webhook_previous_until = fields.Float()
    resumed_at = fields.Float()
    rokt_webhook_path_token = fields.String()
    rokt_webhook_path_mode = fields.Boolean()
    rokt_webhook_path_token_previous = fields.String()
    jb_jwt_secret_previous = fields.String()
    jb_jwt_previous_until = fields.Float()
