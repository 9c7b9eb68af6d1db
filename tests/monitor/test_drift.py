"""A version's drift in a window against its own reference profile (`appliance.monitor.drift`):
the profile covers the features plus the model's scores and predicted classes, and a window
is compared with it straight from the artifact store."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import kernels
from appliance.artifacts import ArtifactStore
from appliance.monitor.drift import fit_reference, profile_columns, version_drift
from appliance.store.models import ModelVersion

N = 1_000


def _rows(seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=N)
    return pa.table({
        "age": rng.normal(40 + shift, 10, N),
        "job": rng.choice(["a", "b"], N),
        "score": scores,
        "prediction": (scores > 0.5).astype(np.int64),
    })


@pytest.fixture
def served(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    ref = _rows(1)
    profile = fit_reference({"age": ref["age"].to_numpy(),
                             "job": np.asarray(ref["job"].to_pylist(), dtype=object)},
                            ["job"], ref["score"].to_numpy(), ref["prediction"].to_numpy())
    version = ModelVersion(model_name="credit", version=1, digest="d", run_id="r", label="y",
                           created_by="ops", features=["age", "job"], categorical=["job"],
                           profile_digest=store.put_bytes(profile))
    return store, version


def test_the_profile_covers_features_scores_and_predicted_classes(served):
    store, version = served
    assert profile_columns(version) == (["age", "job", "score", "prediction"],
                                        ["job", "prediction"])
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(version.profile_digest))
    assert set(profile.features) == {"age", "job", "score", "prediction"}
    assert profile.features["prediction"].kind == "categorical"


def test_a_window_from_the_same_law_is_quiet_and_a_shifted_one_drifts(served):
    store, version = served
    quiet = version_drift(store, version, _rows(2))
    assert not quiet["dataset_drifted"]
    assert not any(f["drifted"] for f in quiet["features"].values())
    shifted = version_drift(store, version, _rows(3, shift=15))
    assert shifted["features"]["age"]["drifted"]
    assert not shifted["features"]["job"]["drifted"]


def test_a_version_without_a_profile_has_no_drift(served):
    store, version = served
    version.profile_digest = None
    assert version_drift(store, version, _rows(2)) is None
