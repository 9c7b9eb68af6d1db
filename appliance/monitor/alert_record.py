"""The fields of an alert that every face shows: the CLI's `AlertPublic` and the document its
owner's channels receive (`AlertNotification`) both build on `AlertFields`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import SQLModel

from appliance.store.models import Alert


class AlertFields(SQLModel):
    """An alert as people read it (the row's `model_name` is `model`)."""

    id: int
    kind: str
    rule: str
    severity: str
    status: str
    model: str
    deployment: str | None
    version: int | None
    value: float | None
    threshold: float | None
    occurrences: int
    message: str
    owner: str
    team: str
    runbook_url: str | None
    created_at: dt.datetime
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    resolution: str | None


def alert_fields(alert: Alert) -> dict[str, Any]:
    """The `AlertFields` values of an alert row."""
    values = {name: getattr(alert, name) for name in AlertFields.model_fields if name != "model"}
    return {**values, "model": alert.model_name}
