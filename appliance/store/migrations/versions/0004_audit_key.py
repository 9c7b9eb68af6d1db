"""audit: the fingerprint of the HMAC key that signed each audit event

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09 09:00:00.000000

Events already in the table keep a NULL key_id: they were hashed with plain sha256, and
`audit verify` accepts them only once `appliance audit anchor` has anchored them.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("auditevent", schema=None) as batch_op:
        batch_op.drop_column("key_id")
