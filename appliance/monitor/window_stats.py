"""What each model version did in a window: drift, live metrics and the label-free estimate.

A window can hold several versions (a promotion mid-window, a canary, a shadow challenger).
Each (version, shadow) slice is judged on its own: drift against that version's own reference
profile, live metrics from the labels that arrived for its rows, and, for a binary
classifier, the confidence-based estimate of its metrics from its calibrated scores. A slice
with fewer than `min_drift_rows` rows gets no drift verdict ("insufficient"); one whose drift
could not be computed is "error" (logged), and the window closes all the same.

Each slice also gets, when the model's policy asks for them, its segment statistics and the
fairness gaps on the protected attribute (`fairness`), and its importance shift against the
version's holdout importance (`importance`): at closing from the predictions, and again with
the labels as they land (the equal opportunity difference and per-segment live metrics need
them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlmodel import Session, select

from appliance.artifacts import ArtifactStore
from appliance.errors import ArtifactIntegrityError
from appliance.monitor import drift, fairness, importance, integrity, labels, metrics
from appliance.monitor.estimate import Calibration, estimate_binary
from appliance.monitor.policy import Policy
from appliance.monitor.windows import read_window, served_mask
from appliance.store.models import (
    DriftReport,
    ModelVersion,
    PredictionWindow,
    WindowVersion,
    utcnow,
)
from appliance.tables import table_columns

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


@dataclasses.dataclass(frozen=True)
class Segmenting:
    """What a model's policy asks to split windows by (`appliance.monitor.policy`)."""

    segments: tuple[str, ...] = ()
    protected_attribute: str | None = None
    min_group_rows: int = fairness.MIN_GROUP_ROWS

    @classmethod
    def of(cls, policy: Policy) -> Segmenting:
        """The policy's segments, protected attribute and minimum group size."""
        return cls(tuple(policy.segments), policy.protected_attribute,
                   policy.fairness_min_rows)


def _importance_shift(version: ModelVersion, rows: pa.Table) -> dict[str, Any] | None:
    """The slice's score association per feature, and its shift from the version's."""
    reference = (version.importance or {}).get("association")
    if not reference or "score" not in rows.column_names or rows.num_rows < 2:
        return None
    names = [f for f in version.features if f in rows.column_names]
    cols = table_columns(rows, names, list(version.categorical or []))
    scores = rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    current = importance.association(cols, scores, version.categorical or [])
    return {"method": importance.PROXY, "association": current,
            **importance.shift(reference, current)}


def _accountability(stats: WindowVersion, version: ModelVersion, rows: pa.Table,
                    segmenting: Segmenting, labelled: np.ndarray | None) -> None:
    """Set the slice's segment and fairness statistics from its `rows` (labels: one per row,
    -1 where none arrived; None before any)."""
    task = task_of(version)
    predictions = rows.column("prediction").to_numpy(zero_copy_only=False)
    scores = rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64)
    present = set(rows.column_names)
    segments = {}
    for name in segmenting.segments:
        if name in present:
            segments[name] = fairness.segment_stats(
                task, rows.column(name).to_pylist(), predictions, scores, labelled)
    stats.segments = segments or None
    protected = segmenting.protected_attribute
    if protected and protected in present and task == "binary":
        stats.fairness = {"attribute": protected, **fairness.fairness_gaps(
            rows.column(protected).to_pylist(), predictions, labelled,
            min_group_rows=segmenting.min_group_rows)}
    elif protected:
        stats.fairness = {"attribute": protected,
                          "error": ("not logged" if protected not in present
                                    else f"fairness gaps need a binary task, not {task}")}


def close_stats(
    session: Session, store: ArtifactStore, window: PredictionWindow, table: pa.Table,
    versions: dict[str, ModelVersion], *, min_drift_rows: int,
    segmenting: Segmenting = Segmenting(),
) -> list[WindowVersion]:
    """Record drift and the estimate of every slice of a just-closed window (flushed).

    Args:
        session: open session; the caller commits.
        store: the artifact store (reference profiles).
        window: the window's index row.
        table: its rows.
        versions: version number (as logged) -> ModelVersion of the deployment's model.
        min_drift_rows: fewer rows than this give no drift verdict.
        segmenting: the segments and protected attribute to measure (default none).
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
        try:
            stats.importance = _importance_shift(version, rows)
            _accountability(stats, version, rows, segmenting, None)
        except Exception:  # noqa: BLE001 - as for drift: the window closes without them
            logger.exception("segments, fairness or importance of v%s in window %s failed",
                             version.version, window.index)
        session.add(stats)
        out.append(stats)
    session.flush()
    return out


def refresh_metrics(
    session: Session, artifacts: Path, window: PredictionWindow,
    versions: dict[int, ModelVersion], segmenting: Segmenting = Segmenting(),
) -> list[WindowVersion]:
    """Recompute the live metrics of every slice of `window` from the labels so far.

    Args:
        session: open session; the caller commits.
        artifacts: the artifact root (label files).
        window: the window whose labels changed.
        versions: ModelVersion id -> row, for each version in the window.
        segmenting: the segments and protected attribute to measure (default none).
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
        if segmenting.segments or segmenting.protected_attribute:
            _refresh_accountability(stats, version, window, got, segmenting)
        stats.updated_at = utcnow()
        session.add(stats)
    session.flush()
    return list(rows)


def _refresh_accountability(stats: WindowVersion, version: ModelVersion,
                            window: PredictionWindow, got: pa.Table,
                            segmenting: Segmenting) -> None:
    """Segment and fairness statistics of one slice again, with the labels so far."""
    names = pq.read_schema(window.path).names
    wanted = ["request_id", "row", "version", "shadow", "prediction", "score",
              *[c for c in (*segmenting.segments, segmenting.protected_attribute)
                if c and c in names]]
    table = read_window(window, list(dict.fromkeys(wanted)))
    rows = table.filter(pc.and_(pc.equal(table.column("version"), str(version.version)),
                                pc.equal(table.column("shadow"), stats.shadow)))
    joined = rows.join(got, keys=["request_id", "row"], join_type="left outer")
    label = pc.fill_null(joined.column("label"), -1).to_numpy(zero_copy_only=False)
    if task_of(version) == "binary":
        # A label a binary classifier cannot have is no label here (it is counted above).
        label = np.where(np.isin(label, (0, 1)), label, -1)
    _accountability(stats, version, joined, segmenting, label.astype(np.int64))


def main_slice(rows: list[WindowVersion]) -> WindowVersion | None:
    """The served slice with the most rows: the version a window is judged by."""
    served = [r for r in rows if not r.shadow]
    return max(served, key=lambda r: (r.rows, r.version)) if served else None
