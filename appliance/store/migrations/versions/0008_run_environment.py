"""runs: the runtime they started with (Python, torch, CUDA, driver, hardware) and the run a
rerun trained again from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs recorded before keep no runtime (None: not known) and are reruns of nothing.
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runtime", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("rerun_of", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_run_rerun_of"), ["rerun_of"], unique=False)
        batch_op.create_foreign_key("fk_run_rerun_of", "run", ["rerun_of"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_constraint("fk_run_rerun_of", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_run_rerun_of"))
        batch_op.drop_column("rerun_of")
        batch_op.drop_column("runtime")
