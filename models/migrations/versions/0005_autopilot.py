"""autopilot lineages and measured fork outcomes

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopilots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("root_job_id", sa.Uuid(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("end_detail", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("current_job_id", sa.Uuid(), nullable=False),
        sa.Column("rounds_done", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["current_job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["root_job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("root_job_id"),
    )
    with op.batch_alter_table("autopilots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autopilots_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_autopilots_state"), ["state"], unique=False)

    op.create_table(
        "fork_outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("remedies", sa.JSON(), nullable=False),
        sa.Column("patch", sa.JSON(), nullable=False),
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("parent_best", sa.Float(), nullable=True),
        sa.Column("child_best", sa.Float(), nullable=True),
        sa.Column("gain", sa.Float(), nullable=True),
        sa.Column("parent_epochs", sa.Integer(), nullable=True),
        sa.Column("child_epochs", sa.Integer(), nullable=True),
        sa.Column("autopilot_id", sa.Uuid(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["autopilot_id"],
            ["autopilots.id"],
        ),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("autopilot_id", "round", name="uq_fork_outcomes_autopilot_round"),
        sa.UniqueConstraint("child_id"),
    )
    with op.batch_alter_table("fork_outcomes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fork_outcomes_autopilot_id"), ["autopilot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fork_outcomes_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index("ix_fork_outcomes_owner_cause", ["owner", "cause"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("fork_outcomes", schema=None) as batch_op:
        batch_op.drop_index("ix_fork_outcomes_owner_cause")
        batch_op.drop_index(batch_op.f("ix_fork_outcomes_parent_id"))
        batch_op.drop_index(batch_op.f("ix_fork_outcomes_autopilot_id"))
    op.drop_table("fork_outcomes")
    with op.batch_alter_table("autopilots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autopilots_state"))
        batch_op.drop_index(batch_op.f("ix_autopilots_owner"))
    op.drop_table("autopilots")
