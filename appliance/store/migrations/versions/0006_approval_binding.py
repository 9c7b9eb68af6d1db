"""approvals bound to their incumbent, with expiry, votes and risk-tier quorum; token issuers;
window file digests

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvalvote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=False),
        sa.Column("voter", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("token_issuer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["approval_id"], ["approval.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("approval_id", "voter"),
    )
    with op.batch_alter_table("approvalvote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvalvote_approval_id"), ["approval_id"],
                              unique=False)
    # Requests made before this migration keep no incumbent (so approving one whose alias has
    # a holder asks for a re-gate), need one approver and never expire.
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.add_column(sa.Column("incumbent_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("required_approvals", sa.Integer(), nullable=False,
                                      server_default="1"))
        batch_op.add_column(
            sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_foreign_key("fk_approval_incumbent_version_id", "modelversion",
                                    ["incumbent_version_id"], ["id"])
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("issued_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("predictionwindow", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("predictionwindow", schema=None) as batch_op:
        batch_op.drop_column("sha256")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_column("issued_by")
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_constraint("fk_approval_incumbent_version_id", type_="foreignkey")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("required_approvals")
        batch_op.drop_column("incumbent_version_id")
    with op.batch_alter_table("approvalvote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvalvote_approval_id"))
    op.drop_table("approvalvote")
