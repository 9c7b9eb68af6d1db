"""One pass of the monitor over every active deployment.

For each: index newly arrived labels, close the pending predictions into a window, compute drift
against the serving version's reference profile, live accuracy where labels exist (and refresh it
for earlier windows whose labels came late), raise alerts to the owner, and say whether the
retrain policy fires. Training itself is the caller's job (the monitor never imports Ray).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow.compute as pc
from sqlmodel import Session, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.monitor import accuracy, alerts, drift, windows
from appliance.store import session_scope
from appliance.store.models import (
    Alert,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RegisteredModel,
)

RETRAIN_ON = frozenset({"drift", "accuracy"})


@dataclasses.dataclass
class DeploymentPass:
    """What one monitor pass found for one deployment."""

    deployment: str
    model: str
    window: int | None = None
    rows: int = 0
    drifted_share: float | None = None
    dataset_drifted: bool = False
    drifted_features: list[str] = dataclasses.field(default_factory=list)
    accuracy: float | None = None
    labelled_rows: int = 0
    alerts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    retrain: bool = False


def _majority(column) -> str:
    """The most frequent value of a string column."""
    counts = pc.value_counts(column)
    best = pc.index(counts.field("counts"), pc.max(counts.field("counts"))).as_py()
    return counts.field("values")[best].as_py()


def _refresh_accuracy(session: Session, deployment: str, labels, skip: int | None) -> None:
    """Recompute accuracy of earlier windows that still lack labels (`skip`: just computed)."""
    if labels is None:
        return
    stale = session.exec(select(PredictionWindow).where(
        PredictionWindow.deployment == deployment,
        PredictionWindow.labelled_rows < PredictionWindow.rows,
    )).all()
    for w in stale:
        if w.id == skip:
            continue
        n, acc = accuracy.window_accuracy(windows.read_window(w), labels)
        if n != w.labelled_rows:
            w.labelled_rows, w.accuracy = n, acc
            session.add(w)


def _pass_one(session: Session, cfg: Config, dep: Deployment) -> DeploymentPass:
    store = ArtifactStore(cfg.artifacts)
    result = DeploymentPass(deployment=dep.name, model=dep.model_name)
    windows.ingest_feedback(session, cfg.feedback_dir, dep.name)
    labels = windows.labels_for(session, dep.name)
    closed = windows.close_window(session, cfg.predictions_dir, dep.name)
    window = None
    if closed is not None:
        window, table = closed
        window.labelled_rows, window.accuracy = accuracy.window_accuracy(table, labels)
        session.add(window)
        # The version that served most of the window is judged against its own profile.
        served = _majority(table.column("version"))
        version = session.exec(select(ModelVersion).where(
            ModelVersion.model_name == dep.model_name, ModelVersion.version == int(served)
        )).one()
        report = drift.window_drift(session, store, window, table, version)
        model = session.get(RegisteredModel, dep.model_name)
        raised = alerts.evaluate_rules(
            session, model, window, report, version.metrics.get("accuracy")
        )
        alerts.raise_alerts(session, raised, log_path=cfg.alerts_log, webhook=cfg.alert_webhook)
        result.window, result.rows = window.index, window.rows
        result.accuracy, result.labelled_rows = window.accuracy, window.labelled_rows
        if report is not None:
            result.drifted_share = report.drifted_share
            result.dataset_drifted = report.dataset_drifted
            result.drifted_features = report.drifted_features
        result.alerts = [{"id": a.id, "kind": a.kind, "message": a.message} for a in raised]
        result.retrain = any(a.kind in RETRAIN_ON for a in raised)
    _refresh_accuracy(session, dep.name, labels, skip=window.id if window else None)
    return result


def run_once(cfg: Config, deployment: str | None = None) -> list[DeploymentPass]:
    """Monitor every active deployment (or only `deployment`) once."""
    results = []
    with session_scope(cfg.db_url) as session:
        query = select(Deployment).where(Deployment.status == "active")
        if deployment:
            query = query.where(Deployment.name == deployment)
        active = session.exec(query).all()
    for dep in active:
        with session_scope(cfg.db_url) as session:
            results.append(_pass_one(session, cfg, dep))
        if results[-1].window is not None:
            windows.finish_close(cfg.predictions_dir, dep.name, results[-1].window)
    return results


def open_alerts(session: Session, model: str | None = None) -> list[Alert]:
    query = select(Alert).where(Alert.acknowledged_at.is_(None)).order_by(Alert.id)
    if model:
        query = query.where(Alert.model_name == model)
    return list(session.exec(query).all())
