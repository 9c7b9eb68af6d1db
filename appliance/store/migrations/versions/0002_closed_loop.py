"""closed loop: window policy, per-version window stats, request index, alert lifecycle and
outbox, monitor policies, retrain requests, leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 04:53:03.917605
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("acquired_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "retrainrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("deployment", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("active_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("since_window", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("champion_version_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("canary_deployment_id", sa.Integer(), nullable=True),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("gate", sa.JSON(), nullable=True),
        sa.Column("canary", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_key"),
    )
    with op.batch_alter_table("retrainrequest", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retrainrequest_model_name"), ["model_name"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_retrainrequest_state"), ["state"], unique=False)

    op.create_table(
        "monitorpolicy",
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=True),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["registeredmodel.name"],
        ),
        sa.PrimaryKeyConstraint("model_name"),
    )
    op.create_table(
        "requestindex",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["predictionwindow.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("window_id", "request_id"),
    )
    with op.batch_alter_table("requestindex", schema=None) as batch_op:
        batch_op.create_index("ix_requestindex_lookup", ["deployment", "request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_requestindex_window_id"), ["window_id"], unique=False)

    op.create_table(
        "alertdelivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_id", "event", "channel"),
    )
    with op.batch_alter_table("alertdelivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alertdelivery_alert_id"), ["alert_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alertdelivery_status"), ["status"], unique=False)

    op.create_table(
        "windowversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("labelled_rows", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("estimated", sa.JSON(), nullable=True),
        sa.Column("drift_status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("drifted_share", sa.Float(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["modelversion.id"],
        ),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["predictionwindow.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("window_id", "version_id", "shadow"),
    )
    with op.batch_alter_table("windowversion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_windowversion_version_id"), ["version_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_windowversion_window_id"), ["window_id"], unique=False)

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "status", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="open"
            )
        )
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_window_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("value", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("occurrences", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column(
                "team", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="default"
            )
        )
        batch_op.add_column(
            sa.Column("runbook_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("last_seen_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_alert_rule"), ["rule"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_status"), ["status"], unique=False)
    # Alerts acknowledged before alerts had a lifecycle keep that state.
    op.execute(
        "UPDATE alert SET status = 'acknowledged', last_seen_at = created_at "
        "WHERE acknowledged_at IS NOT NULL"
    )
    op.execute("UPDATE alert SET last_seen_at = created_at WHERE last_seen_at IS NULL")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lineage", sa.JSON(), nullable=True))

    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "role", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="primary"
            )
        )
        batch_op.add_column(sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("share", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("retrain_id", sa.Integer(), nullable=True))

    with op.batch_alter_table("driftreport", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("rows", sa.Integer(), nullable=False, server_default="0"))

    with op.batch_alter_table("feedbackbatch", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="applied",
            )
        )
        batch_op.add_column(
            sa.Column("matched_rows", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_feedbackbatch_status"), ["status"], unique=False)
    # Batches indexed before this revision were read whole on every pass by the old monitor;
    # their windows already carry their accuracy, so they count as applied (server default).

    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calibration", sa.JSON(), nullable=True))

    with op.batch_alter_table("predictionwindow", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow_rows", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "closed_by",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="rows",
            )
        )
        batch_op.add_column(
            sa.Column("labels_updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )

    with op.batch_alter_table("registeredmodel", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("runbook_url", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "risk_tier",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default="medium",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("registeredmodel", schema=None) as batch_op:
        batch_op.drop_column("risk_tier")
        batch_op.drop_column("runbook_url")

    with op.batch_alter_table("predictionwindow", schema=None) as batch_op:
        batch_op.drop_column("labels_updated_at")
        batch_op.drop_column("closed_by")
        batch_op.drop_column("shadow_rows")

    with op.batch_alter_table("modelversion", schema=None) as batch_op:
        batch_op.drop_column("calibration")

    with op.batch_alter_table("feedbackbatch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feedbackbatch_status"))
        batch_op.drop_column("applied_at")
        batch_op.drop_column("matched_rows")
        batch_op.drop_column("status")

    with op.batch_alter_table("driftreport", schema=None) as batch_op:
        batch_op.drop_column("rows")
        batch_op.drop_column("shadow")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("lineage")

    with op.batch_alter_table("deployment", schema=None) as batch_op:
        batch_op.drop_column("retrain_id")
        batch_op.drop_column("share")
        batch_op.drop_column("mode")
        batch_op.drop_column("role")

    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_status"))
        batch_op.drop_index(batch_op.f("ix_alert_rule"))
        batch_op.drop_column("resolution")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("runbook_url")
        batch_op.drop_column("team")
        batch_op.drop_column("occurrences")
        batch_op.drop_column("threshold")
        batch_op.drop_column("value")
        batch_op.drop_column("last_window_id")
        batch_op.drop_column("version")
        batch_op.drop_column("status")
        batch_op.drop_column("rule")

    with op.batch_alter_table("windowversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_windowversion_window_id"))
        batch_op.drop_index(batch_op.f("ix_windowversion_version_id"))

    op.drop_table("windowversion")
    with op.batch_alter_table("alertdelivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alertdelivery_status"))
        batch_op.drop_index(batch_op.f("ix_alertdelivery_alert_id"))

    op.drop_table("alertdelivery")
    with op.batch_alter_table("requestindex", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_requestindex_window_id"))
        batch_op.drop_index("ix_requestindex_lookup")

    op.drop_table("requestindex")
    op.drop_table("monitorpolicy")
    with op.batch_alter_table("retrainrequest", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retrainrequest_state"))
        batch_op.drop_index(batch_op.f("ix_retrainrequest_model_name"))

    op.drop_table("retrainrequest")
    op.drop_table("lease")
