"""Drift of a closed window against the reference profile of the version that served it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import Session

import kernels
from appliance.artifacts import ArtifactStore
from appliance.store.models import DriftReport, ModelVersion, PredictionWindow

# Prediction drift rides along with feature drift: scores as a numerical column, the
# predicted class as a categorical one.
SCORE, PREDICTION = "score", "prediction"


def profile_columns(version: ModelVersion) -> tuple[list[str], list[str]]:
    """(all columns, categorical columns) a version's reference profile covers."""
    return [*version.features, SCORE, PREDICTION], [*version.categorical, PREDICTION]


def to_columns(table: pa.Table, names: list[str], categorical: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        col = table.column(name)
        if name in categorical:
            out[name] = np.asarray(col.cast(pa.string()).to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    return out


def fit_reference(
    features: dict[str, np.ndarray], categorical: list[str],
    scores: np.ndarray, predictions: np.ndarray,
) -> bytes:
    """Fit and serialise the reference profile of training features plus model outputs.

    Args:
        features: the training columns, as `to_columns` makes them.
        categorical: which of them are categorical.
        scores: the model's score for each row.
        predictions: the model's predicted class for each row.
    """
    cols = dict(features)
    cols[SCORE] = np.asarray(scores, dtype=np.float64)
    cols[PREDICTION] = np.asarray(predictions).astype(str).astype(object)
    profile = kernels.fit_profile(cols, categorical=[*categorical, PREDICTION])
    return profile.to_bytes()


def window_drift(
    session: Session, store: ArtifactStore, window: PredictionWindow, table: pa.Table,
    version: ModelVersion,
) -> DriftReport | None:
    """Compare the rows `version` served in `window` with its profile; None without a profile."""
    if not version.profile_digest:
        return None
    rows = table.filter(pc.equal(table.column("version"), str(version.version)))
    if rows.num_rows == 0:
        return None
    names, categorical = profile_columns(version)
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(version.profile_digest))
    report = kernels.compare(profile, to_columns(rows, names, categorical))
    doc = report.to_dict()
    drifted = sorted(n for n, f in doc["features"].items() if f.get("drifted"))
    row = DriftReport(
        window_id=window.id, version_id=version.id, drifted_share=float(doc["drifted_share"]),
        dataset_drifted=bool(doc["dataset_drifted"]), drifted_features=drifted, report=doc,
    )
    session.add(row)
    session.flush()
    return row
