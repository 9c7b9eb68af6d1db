"""model versions store the promotion gate they were trained with

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 16:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions registered before this keep null: they are judged by the default gate.
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate_checks", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_column("gate_checks")
