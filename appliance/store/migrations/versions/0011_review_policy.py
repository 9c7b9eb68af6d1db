"""review policies: a model's periodic review interval, and the reviews recorded

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 19:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the risk tier's default interval (appliance.governance.reviews.DEFAULT_INTERVAL_DAYS).
    with op.batch_alter_table("registeredmodel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_interval_days", sa.Integer(), nullable=True))
    op.create_table(
        "modelreview",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("next_due_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_name"], ["registeredmodel.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_modelreview_model_name"), "modelreview", ["model_name"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_modelreview_model_name"), table_name="modelreview")
    op.drop_table("modelreview")
    with op.batch_alter_table("registeredmodel", schema=None) as batch_op:
        batch_op.drop_column("review_interval_days")
