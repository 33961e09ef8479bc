"""Dead letters that are done (replayed), kept for audit out of Redis.

Revision ID: 0003
Revises: 0001
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # one row per failure of an item: a later failure of the same item is a row of its own;
    # replayed_at is when it was replayed (NULL is kept for letters that end otherwise, later)
    op.execute(
        """
        CREATE TABLE dead_letters (
            tenant VARCHAR(64) NOT NULL,
            item_id TEXT NOT NULL,
            failed_at VARCHAR(40) NOT NULL,
            stage VARCHAR(32) NOT NULL,
            error_class TEXT NOT NULL DEFAULT '',
            replayed_at VARCHAR(40),
            record TEXT NOT NULL,
            PRIMARY KEY (tenant, item_id, failed_at)
        )
        """
    )
    op.create_index("dead_letters_replayed", "dead_letters", ["tenant", "replayed_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
