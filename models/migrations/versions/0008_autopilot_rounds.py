"""autopilot rounds claimed before their child exists; best-epoch validation predictions per job (own table)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopilot_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("autopilot_id", sa.Uuid(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=False),
        sa.Column("cause", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("remedy", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("patch", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("start", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("child_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["autopilot_id"], ["autopilots.id"]),
        sa.ForeignKeyConstraint(["parent_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["child_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("autopilot_id", "round", name="uq_autopilot_rounds_round"),
    )
    with op.batch_alter_table("autopilot_rounds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autopilot_rounds_autopilot_id"), ["autopilot_id"], unique=False)
    _backfill_rounds()
    op.create_table(
        "val_predictions",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("stored", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("fork_outcomes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comparison", sa.JSON(), nullable=True))


def _backfill_rounds() -> None:
    """Rounds of lineages started before this revision, from their fork outcomes, so they go on where they were."""
    bind = op.get_bind()
    outcomes = sa.table(
        "fork_outcomes",
        sa.column("autopilot_id", sa.Uuid()),
        sa.column("round", sa.Integer()),
        sa.column("parent_id", sa.Uuid()),
        sa.column("child_id", sa.Uuid()),
        sa.column("cause", sa.String()),
        sa.column("remedies", sa.JSON()),
        sa.column("patch", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    rounds = sa.table(
        "autopilot_rounds",
        *(
            sa.column(name, kind)
            for name, kind in (
                ("autopilot_id", sa.Uuid()),
                ("round", sa.Integer()),
                ("parent_id", sa.Uuid()),
                ("child_id", sa.Uuid()),
                ("cause", sa.String()),
                ("remedy", sa.String()),
                ("patch", sa.JSON()),
                ("evidence", sa.JSON()),
                ("start", sa.String()),
                ("created_at", sa.DateTime(timezone=True)),
            )
        ),
    )
    found = bind.execute(
        sa.select(outcomes).where(outcomes.c.autopilot_id.is_not(None), outcomes.c.round.is_not(None))
    ).mappings()
    rows = [
        {
            "autopilot_id": r["autopilot_id"],
            "round": r["round"],
            "parent_id": r["parent_id"],
            "child_id": r["child_id"],
            "cause": r["cause"],
            "remedy": "+".join(r["remedies"] or []) or "patch",
            "patch": r["patch"] or {},
            "evidence": {},
            "start": "cold",
            "created_at": r["created_at"],
        }
        for r in found
    ]
    if rows:
        op.bulk_insert(rounds, rows)
    # Before this revision a crash between a round's child and the counter's bump left the child outside its
    # lineage: the lineage adopts it as its current job, as a claimed round would be.
    autopilots = sa.table(
        "autopilots",
        sa.column("id", sa.Uuid()),
        sa.column("state", sa.String()),
        sa.column("rounds_done", sa.Integer()),
        sa.column("current_job_id", sa.Uuid()),
    )
    last: dict = {}
    for row in rows:
        if row["round"] > last.get(row["autopilot_id"], {"round": 0})["round"]:
            last[row["autopilot_id"]] = row
    for autopilot_id, row in last.items():
        bind.execute(
            sa.update(autopilots)
            .where(
                autopilots.c.id == autopilot_id,
                autopilots.c.state == "active",
                autopilots.c.rounds_done < row["round"],
            )
            .values(rounds_done=row["round"], current_job_id=row["child_id"])
        )


def downgrade() -> None:
    with op.batch_alter_table("fork_outcomes", schema=None) as batch_op:
        batch_op.drop_column("comparison")
    op.drop_table("val_predictions")
    with op.batch_alter_table("autopilot_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autopilot_rounds_autopilot_id"))
    op.drop_table("autopilot_rounds")
