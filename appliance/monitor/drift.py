"""Drift of a version's rows in a window against that version's own reference profile."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

import kernels
from appliance.artifacts import ArtifactStore
from appliance.store.models import ModelVersion
from appliance.tables import table_columns

# Prediction drift rides along with feature drift: scores as a numerical column, the
# predicted class as a categorical one.
SCORE, PREDICTION = "score", "prediction"


def profile_columns(version: ModelVersion) -> tuple[list[str], list[str]]:
    """(all columns, categorical columns) a version's reference profile covers."""
    return [*version.features, SCORE, PREDICTION], [*version.categorical, PREDICTION]


def fit_reference(
    features: dict[str, np.ndarray], categorical: list[str],
    scores: np.ndarray, predictions: np.ndarray,
) -> bytes:
    """Fit and serialise the reference profile of training features plus model outputs.

    Args:
        features: the training columns, as `appliance.tables.table_columns` makes them.
        categorical: which of them are categorical.
        scores: the model's score for each row.
        predictions: the model's predicted class for each row.
    """
    cols = dict(features)
    cols[SCORE] = np.asarray(scores, dtype=np.float64)
    cols[PREDICTION] = np.asarray(predictions).astype(str).astype(object)
    profile = kernels.fit_profile(cols, categorical=[*categorical, PREDICTION])
    return profile.to_bytes()


def version_drift(
    store: ArtifactStore, version: ModelVersion, rows: pa.Table
) -> dict[str, Any] | None:
    """The drift report of `rows` (served by `version`) against the version's own reference
    profile, as a document; None when the version has no profile."""
    if not version.profile_digest:
        return None
    names, categorical = profile_columns(version)
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(
        version.profile_digest, what=f"reference profile of {version.model_name}:"
        f"{version.version}", model=version.model_name))
    report = kernels.compare(profile, table_columns(rows, names, categorical))
    return report.to_dict()
