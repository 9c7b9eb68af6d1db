"""The metadata store's tables.

Times are timezone-aware UTC (SQLModel's UTCDateTime refuses naive ones, and hands back UTC
even from SQLite, which keeps no zone); `utcnow()` makes them. JSON columns hold small
documents (params, metrics, gate results); bulk data lives in the artifact store and rows point
to it by sha256 digest.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    """Current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


class Role(str, enum.Enum):
    viewer = "viewer"
    operator = "operator"
    approver = "approver"
    admin = "admin"


class User(SQLModel, table=True):
    # Not "user": in PostgreSQL an unquoted `user` is the current role, a silent trap in raw SQL.
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: str = Field(default=Role.viewer.value)
    team: str = Field(default="default")
    email: str | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str
    # sha256 of the secret: the secret itself is shown once and never stored.
    token_hash: str = Field(unique=True, index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    revoked_at: dt.datetime | None = None


class Dataset(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    version: int
    digest: str = Field(index=True)
    rows: int
    columns: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    source: str | None = None
    created_by: str
    created_at: dt.datetime = Field(default_factory=utcnow)


class RegisteredModel(SQLModel, table=True):
    name: str = Field(primary_key=True)
    owner: str
    team: str = "default"
    description: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    model_name: str = Field(index=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    seed: int
    code_version: str
    environment: str
    status: str = "running"
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    device: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_by: str
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


class ModelVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("model_name", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="registeredmodel.name", index=True)
    version: int
    digest: str = Field(index=True)
    profile_digest: str | None = None
    run_id: str = Field(foreign_key="run.id")
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    features: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    categorical: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    label: str
    created_by: str
    created_at: dt.datetime = Field(default_factory=utcnow)


class Alias(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("model_name", "alias"),)
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(foreign_key="registeredmodel.name", index=True)
    alias: str
    version_id: int = Field(foreign_key="modelversion.id")
    approval_id: int | None = Field(default=None, foreign_key="approval.id")
    updated_at: dt.datetime = Field(default_factory=utcnow)


class ApprovalStatus(str, enum.Enum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class Approval(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    model_name: str = Field(index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    target_alias: str
    status: str = Field(default=ApprovalStatus.pending.value, index=True)
    gate: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    requested_by: str
    requested_at: dt.datetime = Field(default_factory=utcnow)
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    comment: str | None = None


class Deployment(SQLModel, table=True):
    """One row per (deployment, version) period: the ledger of what served when."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    model_name: str = Field(index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    url: str
    status: str = "active"
    created_by: str
    started_at: dt.datetime = Field(default_factory=utcnow)
    stopped_at: dt.datetime | None = None


class PredictionWindow(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("deployment", "index"),)
    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True)
    index: int
    path: str
    rows: int
    requests: int
    versions: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    first_ts: dt.datetime | None = None
    last_ts: dt.datetime | None = None
    labelled_rows: int = 0
    accuracy: float | None = None
    closed_at: dt.datetime = Field(default_factory=utcnow)


class FeedbackBatch(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    deployment: str = Field(index=True)
    path: str = Field(unique=True)
    rows: int
    received_at: dt.datetime = Field(default_factory=utcnow)


class DriftReport(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    window_id: int = Field(foreign_key="predictionwindow.id", index=True)
    version_id: int = Field(foreign_key="modelversion.id")
    drifted_share: float
    dataset_drifted: bool
    drifted_features: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    computed_at: dt.datetime = Field(default_factory=utcnow)


class Alert(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    severity: str = "warning"
    model_name: str = Field(index=True)
    deployment: str | None = None
    window_id: int | None = Field(default=None, foreign_key="predictionwindow.id")
    message: str = Field(sa_column=Column(Text))
    owner: str
    notified: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: dt.datetime = Field(default_factory=utcnow)
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained: each row's hash covers its content and the previous hash."""

    __table_args__ = (Index("ix_auditevent_object", "object_type", "object_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ts: dt.datetime = Field(default_factory=utcnow)
    actor: str
    action: str = Field(index=True)
    object_type: str
    object_id: str
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Unique: two writers that read the same head cannot both append, so the chain never forks.
    prev_hash: str = Field(unique=True)
    hash: str = Field(unique=True)
