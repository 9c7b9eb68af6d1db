"""explanations and fairness: a version's feature importance, each window slice's segment,
fairness and importance-shift statistics, and request ids indexed on their own

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions and windows recorded before this keep null: nothing was measured for them.
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("importance", sa.JSON(), nullable=True))
    with op.batch_alter_table("windowversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segments", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("fairness", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("importance", sa.JSON(), nullable=True))
    # `predictions show REQUEST_ID` knows no deployment: the (deployment, request_id) index
    # cannot serve a lookup by request id alone.
    op.create_index("ix_requestindex_request_id", "requestindex", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_requestindex_request_id", table_name="requestindex")
    with op.batch_alter_table("windowversion", schema=None) as batch_op:
        batch_op.drop_column("importance")
        batch_op.drop_column("fairness")
        batch_op.drop_column("segments")
    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_column("importance")
