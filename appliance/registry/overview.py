"""What the store holds right now, in counts: the store's part of `appliance status`.

Read through SQLAlchemy Core (`appliance.store.core_tables`), not the ORM: `status` is the
command an operator runs first and most, and the ORM's table classes would double its start-up.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import TableClause

from appliance.store.clock import as_utc
from appliance.store.core_tables import (
    alert,
    approval,
    dataset,
    deployment,
    model_version,
    registered_model,
)


class ServingPublic(BaseModel):
    """An active deployment: its name, the version number it serves, its URL, since when."""

    name: str
    version: int
    url: str
    since: dt.datetime


class StoreCountsPublic(BaseModel):
    """Datasets, models, versions, pending approvals and open alerts counted, and the active
    deployments, in the order `appliance status` prints them."""

    datasets: int
    models: int
    versions: int
    pending_approvals: int
    open_alerts: int
    deployments: list[ServingPublic]


def _count(conn: Connection, table: TableClause, *where: Any) -> int:
    return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def store_counts(conn: Connection) -> StoreCountsPublic:
    """What the store holds, read on `conn` (any read permission is the caller's to check)."""
    active = conn.execute(
        select(deployment.c.name, model_version.c.version, deployment.c.url,
               deployment.c.started_at)
        .join(model_version, model_version.c.id == deployment.c.version_id)
        .where(deployment.c.status == "active").order_by(deployment.c.id)
    ).all()
    return StoreCountsPublic(
        datasets=_count(conn, dataset), models=_count(conn, registered_model),
        versions=_count(conn, model_version),
        pending_approvals=_count(conn, approval, approval.c.status == "pending"),
        open_alerts=_count(conn, alert, alert.c.status == "open"),
        deployments=[ServingPublic(name=d.name, version=d.version, url=d.url,
                                   since=as_utc(d.started_at)) for d in active],
    )
