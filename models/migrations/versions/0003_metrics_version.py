"""jobs.metrics_version: bumped with every epoch row, so unchanged metrics pages can be cached and revalidated

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("metrics_version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("metrics_version")
