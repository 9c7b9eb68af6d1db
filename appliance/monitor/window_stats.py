"""What each model version did in a window: drift, live metrics and the label-free estimate.

A window can hold several versions (a promotion mid-window, a canary, a shadow challenger).
Each (version, shadow) slice is judged on its own: drift against that version's own reference
profile, live metrics from the labels that arrived for its rows, and, for a binary
classifier, the confidence-based estimate of its metrics from its calibrated scores. A slice
with fewer than `min_drift_rows` rows gets no drift verdict ("insufficient"); one whose drift
could not be computed is "error" (logged), and the window closes all the same.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import Session, select

from appliance.artifacts import ArtifactStore
from appliance.errors import ArtifactIntegrityError
from appliance.monitor import drift, integrity, labels, metrics
from appliance.monitor.estimate import Calibration, estimate_binary
from appliance.monitor.windows import read_window, served_mask
from appliance.store.models import (
    DriftReport,
    ModelVersion,
    PredictionWindow,
    WindowVersion,
    utcnow,
)

logger = logging.getLogger("appliance.monitor")


def task_of(version: ModelVersion) -> str:
    """The version's task: "binary" unless its metrics say otherwise."""
    return str((version.metrics or {}).get("task", "binary"))


def _slices(table: pa.Table) -> list[tuple[str, bool, pa.Table]]:
    """(version, shadow, rows) for each slice of a window, in a stable order."""
    out = []
    shadow = table.column("shadow")
    for version in sorted({str(v) for v in pc.unique(table.column("version")).to_pylist()}):
        is_version = pc.equal(table.column("version"), version)
        for flag in (False, True):
            rows = table.filter(pc.and_(is_version, pc.equal(shadow, flag)))
            if rows.num_rows:
                out.append((version, flag, rows))
    return out


def _estimate(version: ModelVersion, rows: pa.Table) -> dict[str, Any]:
    if task_of(version) != "binary" or "score" not in rows.column_names:
        return {}
    doc = dict(version.calibration or {})
    threshold = float(doc.pop("threshold", 0.5))
    # Versions trained before calibration was checked take their scores as probabilities.
    calibration = Calibration.from_dict(doc) if doc.get("method") else Calibration(
        method="identity", x=[], y=[], ece_raw=0.0, ece_calibrated=0.0, rows=0)
    scores = rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    estimate = estimate_binary(scores, threshold=threshold, calibration=calibration)
    estimate["calibration"] = calibration.method if doc.get("method") else "unchecked"
    return estimate


def close_stats(
    session: Session, store: ArtifactStore, window: PredictionWindow, table: pa.Table,
    versions: dict[str, ModelVersion], *, min_drift_rows: int,
) -> list[WindowVersion]:
    """Record drift and the estimate of every slice of a just-closed window (flushed).

    Args:
        session: open session; the caller commits.
        store: the artifact store (reference profiles).
        window: the window's index row.
        table: its rows.
        versions: version number (as logged) -> ModelVersion of the deployment's model.
        min_drift_rows: fewer rows than this give no drift verdict.
    """
    out = []
    for number, shadow, rows in _slices(table):
        version = versions.get(number)
        if version is None:
            continue
        stats = WindowVersion(window_id=window.id, version_id=version.id,
                              version=version.version, shadow=shadow, rows=rows.num_rows)
        doc = None
        if not version.profile_digest:
            stats.drift_status = "no_profile"
        elif rows.num_rows < min_drift_rows:
            stats.drift_status = "insufficient"
        else:
            try:
                doc = drift.version_drift(store, version, rows)
            except ArtifactIntegrityError as exc:
                # Refused, and the owner hears of it; the window still closes.
                integrity.raise_integrity_alert(session, exc, channels=None)
            except Exception:  # noqa: BLE001 - the window still closes; its verdict is missing
                logger.exception("drift of v%s in window %s failed", version.version,
                                 window.index)
                stats.drift_status = "error"
                doc = None
        if doc is not None:
            drifted = sorted(n for n, f in doc["features"].items() if f.get("drifted"))
            session.add(DriftReport(
                window_id=window.id, version_id=version.id, shadow=shadow, rows=rows.num_rows,
                drifted_share=float(doc["drifted_share"]),
                dataset_drifted=bool(doc["dataset_drifted"]), drifted_features=drifted,
                report=doc,
            ))
            stats.drift_status = "drifted" if doc["dataset_drifted"] else "ok"
            stats.drifted_share = float(doc["drifted_share"])
        try:
            stats.estimated = _estimate(version, rows)
        except Exception:  # noqa: BLE001 - as for drift: the window closes without it
            logger.exception("estimate of v%s in window %s failed", version.version,
                             window.index)
        session.add(stats)
        out.append(stats)
    session.flush()
    return out


def refresh_metrics(
    session: Session, artifacts: Path, window: PredictionWindow,
    versions: dict[int, ModelVersion],
) -> list[WindowVersion]:
    """Recompute the live metrics of every slice of `window` from the labels so far.

    Args:
        session: open session; the caller commits.
        artifacts: the artifact root (label files).
        window: the window whose labels changed.
        versions: ModelVersion id -> row, for each version in the window.
    """
    got = labels.window_labels(artifacts, window.deployment, window.index)
    rows = session.exec(select(WindowVersion).where(WindowVersion.window_id == window.id)).all()
    if got is None or not rows:
        return list(rows)
    table = read_window(window, ["request_id", "row", "version", "shadow", "prediction",
                                 "score"])
    joined = table.join(got, keys=["request_id", "row"], join_type="inner")
    # A label a binary classifier cannot have (a typo, another model's classes) is counted,
    # not used: it must not poison the metrics, nor stop the other labels.
    binary = {str(versions[r.version_id].version) for r in rows
              if task_of(versions[r.version_id]) == "binary"}
    bad = pc.and_(pc.is_in(joined.column("version"), value_set=pa.array(sorted(binary))),
                  pc.invert(pc.is_in(joined.column("label"), value_set=pa.array([0, 1]))))
    invalid = joined.filter(bad)
    joined = joined.filter(pc.invert(bad))
    served = joined.filter(served_mask(joined))
    window.labelled_rows = served.num_rows
    # A regressor's rows have no class to be right about: the window's accuracy is its
    # classifiers' (a regressor's own metrics, rmse and mae, are in its slice's metrics).
    regressors = {str(versions[r.version_id].version) for r in rows
                  if task_of(versions[r.version_id]) == "regression"}
    classified = served.filter(pc.invert(pc.is_in(served.column("version"),
                                                  value_set=pa.array(sorted(regressors),
                                                                     pa.string()))))
    window.accuracy = (
        float(pc.mean(pc.equal(classified.column("prediction"),
                               classified.column("label")).cast(pa.float64())).as_py())
        if classified.num_rows else None
    )
    window.labels_updated_at = utcnow()
    session.add(window)
    for stats in rows:
        version = versions[stats.version_id]
        part = joined.filter(pc.and_(pc.equal(joined.column("version"), str(version.version)),
                                     pc.equal(joined.column("shadow"), stats.shadow)))
        stats.labelled_rows = part.num_rows
        dropped = invalid.filter(pc.and_(
            pc.equal(invalid.column("version"), str(version.version)),
            pc.equal(invalid.column("shadow"), stats.shadow))).num_rows
        # A regressor logs its value as the score (`cluster.bundle.Outputs`).
        predicted = "score" if task_of(version) == "regression" else "prediction"
        stats.metrics = metrics.live_metrics(
            task_of(version),
            part.column("label").to_numpy(),
            part.column(predicted).to_numpy(zero_copy_only=False),
            part.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
            if task_of(version) == "binary" else None,
        ) if part.num_rows else {}
        if dropped:
            stats.metrics = {**stats.metrics, "invalid_labels": dropped}
        stats.updated_at = utcnow()
        session.add(stats)
    session.flush()
    return list(rows)


def main_slice(rows: list[WindowVersion]) -> WindowVersion | None:
    """The served slice with the most rows: the version a window is judged by."""
    served = [r for r in rows if not r.shadow]
    return max(served, key=lambda r: (r.rows, r.version)) if served else None
