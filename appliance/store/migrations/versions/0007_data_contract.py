"""datasets: the data contract (label column, profile, report, status, who accepted and why)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions registered before have no profile: "unchecked", never blocked; the next version
    # of their name becomes the baseline its successors are checked against.
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("profile", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("contract", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("contract_status", sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default="unchecked"))
        batch_op.add_column(sa.Column("contract_accepted_by",
                                      sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("contract_accepted_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("contract_accepted_at",
                                      sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("contract_accepted_at")
        batch_op.drop_column("contract_accepted_reason")
        batch_op.drop_column("contract_accepted_by")
        batch_op.drop_column("contract_status")
        batch_op.drop_column("contract")
        batch_op.drop_column("profile")
        batch_op.drop_column("label")
