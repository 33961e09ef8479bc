"""Executions found by template: what a correction or a cancel of a template's sent events works
through, without reading every row of the tenant (by activity, 0001's index serves a journey's stop).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # on PostgreSQL an index of the partitioned table is made on every partition, now and later
    op.create_index("executions_template", "executions", ["tenant", "template_id", "status"])


def downgrade() -> None:
    op.drop_index("executions_template", "executions")
