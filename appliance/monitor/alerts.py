"""Alert rules over a closed window, and delivery to the model's owner."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlmodel import Session

from appliance.governance import audit
from appliance.store.models import Alert, DriftReport, PredictionWindow, RegisteredModel

ACCURACY_DROP = 0.05  # live accuracy this far below the version's evaluation accuracy alerts
MIN_LABELLED = 200  # fewer labelled rows than this say too little about accuracy


def evaluate_rules(
    session: Session,
    model: RegisteredModel,
    window: PredictionWindow,
    drift: DriftReport | None,
    reference_accuracy: float | None,
) -> list[Alert]:
    """Alerts raised by `window`: dataset drift, and live accuracy below the reference."""
    alerts = []
    if drift is not None and drift.dataset_drifted:
        alerts.append(Alert(
            kind="drift", severity="warning", model_name=model.name,
            deployment=window.deployment, window_id=window.id, owner=model.owner,
            message=(f"{model.name}: data drift in window {window.index} of "
                     f"{window.deployment}: {drift.drifted_share:.0%} of features drifted "
                     f"({', '.join(drift.drifted_features[:6])})"),
        ))
    if (
        reference_accuracy is not None and window.accuracy is not None
        and window.labelled_rows >= MIN_LABELLED
        and window.accuracy < reference_accuracy - ACCURACY_DROP
    ):
        alerts.append(Alert(
            kind="accuracy", severity="critical", model_name=model.name,
            deployment=window.deployment, window_id=window.id, owner=model.owner,
            message=(f"{model.name}: live accuracy {window.accuracy:.3f} in window "
                     f"{window.index} is below the evaluation accuracy "
                     f"{reference_accuracy:.3f} by more than {ACCURACY_DROP}"),
        ))
    return alerts


def deliver(alert: Alert, *, log_path: Path, webhook: str | None) -> list[str]:
    """Send `alert` to the owner's channels; return the channels that took it."""
    doc = {"id": alert.id, "kind": alert.kind, "severity": alert.severity,
           "model": alert.model_name, "deployment": alert.deployment, "owner": alert.owner,
           "message": alert.message, "created_at": alert.created_at.isoformat()}
    channels = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as fh:
        fh.write(json.dumps(doc) + "\n")
    channels.append("log")
    if webhook:
        try:
            httpx.post(webhook, json=doc, timeout=5.0).raise_for_status()
            channels.append("webhook")
        except httpx.HTTPError:
            # A down webhook must not stop monitoring; the missing channel is recorded.
            pass
    return channels


def raise_alerts(
    session: Session, alerts: list[Alert], *, log_path: Path, webhook: str | None
) -> list[Alert]:
    for alert in alerts:
        session.add(alert)
        session.flush()
        alert.notified = deliver(alert, log_path=log_path, webhook=webhook)
        session.add(alert)
        audit.record(session, "monitor", "alert.raised", "alert", alert.id,
                     {"kind": alert.kind, "model": alert.model_name, "owner": alert.owner,
                      "channels": alert.notified})
    return alerts
