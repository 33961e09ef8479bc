"""Subscriptions and webhook receipts: the record moves out of Redis.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # one row per calendar subscription, kept while live and ENDED_SUBSCRIPTION_RETENTION_DAYS after
    op.execute(
        """CREATE TABLE subscriptions (
    tenant VARCHAR(64) NOT NULL,
    subscription_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    live BOOLEAN NOT NULL,
    contact_key TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    contact_match VARCHAR(16) NOT NULL DEFAULT '',
    updated_at VARCHAR(40) NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (tenant, subscription_id)
)"""
    )
    op.create_index("subscriptions_contact", "subscriptions", ["tenant", "contact_key"])
    op.create_index("subscriptions_email", "subscriptions", ["tenant", "email"])
    op.create_index("subscriptions_updated", "subscriptions", ["tenant", "live", "updated_at"])
    # one row per webhook eventId processed: no contact data, WEBHOOK_RECEIPT_DAYS
    op.execute(
        """CREATE TABLE webhook_receipts (
    tenant VARCHAR(64) NOT NULL,
    event_id TEXT NOT NULL,
    event_type VARCHAR(64) NOT NULL DEFAULT '',
    recorded_at VARCHAR(40) NOT NULL,
    PRIMARY KEY (tenant, event_id)
)"""
    )
    op.create_index("webhook_receipts_recorded", "webhook_receipts", ["recorded_at"])


def downgrade() -> None:
    op.drop_table("webhook_receipts")
    op.drop_table("subscriptions")
