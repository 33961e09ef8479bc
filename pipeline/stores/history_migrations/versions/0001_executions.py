"""Finished executions, partitioned by the day received on PostgreSQL.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = """
    tenant VARCHAR(64) NOT NULL,
    execution_id VARCHAR(36) NOT NULL,
    received_on DATE NOT NULL,
    status VARCHAR(32) NOT NULL,
    event_id TEXT NOT NULL,
    activity_id TEXT NOT NULL DEFAULT '',
    template_id TEXT NOT NULL DEFAULT '',
    contact_key TEXT NOT NULL DEFAULT '',
    updated_at VARCHAR(40) NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant, execution_id, received_on)
"""


def upgrade() -> None:
    # PostgreSQL: one partition a day (created by the store before a day's first row), so
    # retention drops a partition; SQLite: one table
    partitioned = op.get_bind().dialect.name == "postgresql"
    partitioning = " PARTITION BY RANGE (received_on)" if partitioned else ""
    op.execute(f"CREATE TABLE executions ({COLUMNS}){partitioning}")
    op.create_index("executions_event", "executions", ["tenant", "event_id"])
    op.create_index("executions_contact", "executions", ["tenant", "contact_key"])
    op.create_index("executions_activity", "executions", ["tenant", "activity_id", "status"])


def downgrade() -> None:
    op.drop_table("executions")
