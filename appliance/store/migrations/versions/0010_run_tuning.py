"""runs: a kind (train, tune, trial) and the tuning run a trial or a tuned retrain belongs to

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-11 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs recorded before were all single fits: kind "train", no parent.
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                      server_default="train")
        )
        batch_op.add_column(
            sa.Column("parent_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_run_parent_run_id"), ["parent_run_id"], unique=False)
        batch_op.create_foreign_key("fk_run_parent_run_id", "run", ["parent_run_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_constraint("fk_run_parent_run_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_run_parent_run_id"))
        batch_op.drop_column("parent_run_id")
        batch_op.drop_column("kind")
