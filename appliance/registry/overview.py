"""What the store holds right now, in counts: the body of `appliance status`."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, func, select

from appliance.store.models import (
    Alert,
    Approval,
    Dataset,
    Deployment,
    ModelVersion,
    RegisteredModel,
)


def _count(session: Session, model: type, *where: Any) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def store_counts(session: Session) -> dict[str, Any]:
    """Datasets, models, versions, pending approvals and open alerts counted, and the active
    deployments (name, version number, url, since when), keyed in the order `appliance status`
    prints them."""
    deps = session.exec(select(Deployment).where(Deployment.status == "active")).all()
    return {
        "datasets": _count(session, Dataset), "models": _count(session, RegisteredModel),
        "versions": _count(session, ModelVersion),
        "pending_approvals": _count(session, Approval, Approval.status == "pending"),
        "open_alerts": _count(session, Alert, Alert.status == "open"),
        "deployments": [{"name": d.name, "version": session.get(ModelVersion,
                         d.version_id).version, "url": d.url, "since": d.started_at}
                        for d in deps],
    }
