"""Training on Ray Train, scoring, and the concept-drift property the demo relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import InvalidInput
from appliance.pipelines.split import holdout_split
from cluster.bundle import ModelBundle
from cluster.evaluate import evaluate
from cluster.train import fit
from cluster.train_params import DEFAULT_PARAMS

TRAIN_ROWS = 30_000
TEST_ROWS = 10_000


# --- input checks, no Ray needed (the params': test_train_params.py) ------------------------------


def _fit_args(**over):
    # Bad input is refused before the storage folder is touched, or Ray.
    args = {"label": LABEL, "categorical": CATEGORICAL, "params": {}, "seed": 0,
            "storage_path": "/nonexistent/ray_results"}
    args.update(over)
    return args


@pytest.mark.parametrize(
    ("table", "over", "message"),
    [
        (generate(100, seed=1), {"label": "target"}, "label column 'target' not found"),
        (generate(100, seed=1), {"categorical": ["colour"]}, "colour"),
        (generate(100, seed=1), {"categorical": []}, "'employment' has type string"),
        (generate(100, seed=1), {"name": "bad name/.."}, "run name"),
        (generate(100, seed=1), {"seed": -3}, "seed"),
        (generate(100, seed=1), {"num_workers": 0}, "num_workers"),
        (generate(100, seed=1), {"params": {"depth": 3}}, "depth"),
        (generate(8, seed=1), {}, "too few rows"),
        (
            generate(100, seed=1).set_column(10, LABEL, pa.array(np.zeros(100, dtype=np.int64))),
            {},
            "only class 0",
        ),
        (
            generate(100, seed=1).set_column(10, LABEL, pa.array(np.full(100, 2, np.int64))),
            {},
            "must hold 0/1",
        ),
        (generate(100, seed=1), {"task": "ranking"}, "task must be one of"),
        (
            generate(100, seed=1).set_column(10, LABEL, pa.array(np.linspace(0, 1, 100))),
            {"task": "multiclass"},
            "integer or string classes",
        ),
        (
            generate(100, seed=1).set_column(10, LABEL, pa.array(["a"] * 100)),
            {"task": "multiclass"},
            "only class 'a'",
        ),
        (
            generate(100, seed=1).set_column(10, LABEL, pa.array(["a", "b"] * 50)),
            {"task": "regression"},
            "must hold numbers",
        ),
    ],
)
def test_fit_rejects_bad_input_before_starting_ray(table, over, message):
    with pytest.raises(InvalidInput, match=message):
        fit(table, **_fit_args(**over))


# --- evaluate (pure) --------------------------------------------------------------------------


# --- real Ray Train ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray_results")


def _v1_parts():
    return holdout_split(generate(TRAIN_ROWS, seed=101), seed=1, fraction=0.2)


@pytest.fixture(scope="module")
def v1(ray_session, storage):
    """The champion: trained before any drift."""
    train, holdout = _v1_parts()
    return fit(train, **_fit_args(seed=1, storage_path=str(storage), name="v1", holdout=holdout))


@pytest.fixture(scope="module")
def v2(ray_session, storage):
    """The challenger: retrained on fresh data from the drifted regime."""
    table = generate(TRAIN_ROWS, seed=202, concept=1.0)
    return fit(table, **_fit_args(seed=2, storage_path=str(storage), name="v2"))


@pytest.fixture(scope="module")
def test_sets():
    return {
        "before": generate(TEST_ROWS, seed=303),
        "during": generate(TEST_ROWS, seed=404, concept=1.0),
    }


def test_fit_result(v1, storage):
    # Every row of the training part trains the model: no split of fit's own.
    assert v1.train_rows == 24_000 and v1.valid_rows == 0
    assert v1.epochs == DEFAULT_PARAMS["epochs"]
    assert v1.device == "cpu"
    assert v1.params == DEFAULT_PARAMS
    assert 0 < v1.seconds < 600
    assert set(v1.metrics) == {"accuracy", "auc", "log_loss", "rows"}
    assert v1.metrics["rows"] == 6_000
    assert v1.metrics["accuracy"] >= 0.85
    assert v1.metrics["auc"] >= 0.9
    assert v1.metrics["log_loss"] < 0.35
    run = Path(v1.run_path)
    assert run.parent == storage and run.name.startswith("v1-")
    assert any(p.name.startswith("checkpoint_") for p in run.iterdir())
    assert v1.bundle.feature_names[-2:] == CATEGORICAL
    assert v1.bundle.label == LABEL


def test_bundle_round_trip_predicts_identically(v1, test_sets):
    table = test_sets["before"]
    again = ModelBundle.from_bytes(v1.bundle.to_bytes())
    cols = {f: table.column(f).to_numpy(zero_copy_only=False) for f in again.feature_names}
    np.testing.assert_array_equal(again.predict_proba(cols), v1.bundle.predict_proba(cols))
    assert evaluate(again, table, LABEL) == evaluate(v1.bundle, table, LABEL)


def test_concept_drift_hurts_v1_and_retraining_recovers(v1, v2, test_sets):
    before = evaluate(v1.bundle, test_sets["before"], LABEL)["accuracy"]
    during = evaluate(v1.bundle, test_sets["during"], LABEL)["accuracy"]
    after = evaluate(v2.bundle, test_sets["during"], LABEL)["accuracy"]
    assert before >= 0.85
    assert during <= before - 0.10
    assert abs(after - before) <= 0.02, (before, during, after)


def test_same_fit_again_resumes_its_finished_run(v1, storage, test_sets):
    # Same data, params and seed -> same run folder; Ray Train hands the workers the final
    # checkpoint, so no epoch is trained again (no new checkpoint) and the model is the same one.
    checkpoints = sorted(p.name for p in Path(v1.run_path).glob("checkpoint_*"))
    train, holdout = _v1_parts()
    again = fit(train, **_fit_args(seed=1, storage_path=str(storage), name="v1", holdout=holdout))
    assert again.run_path == v1.run_path
    assert sorted(p.name for p in Path(v1.run_path).glob("checkpoint_*")) == checkpoints
    table = test_sets["before"]
    cols = {f: table.column(f).to_numpy(zero_copy_only=False) for f in v1.bundle.feature_names}
    np.testing.assert_array_equal(again.bundle.predict_proba(cols), v1.bundle.predict_proba(cols))
    assert again.metrics == v1.metrics


def test_early_stopping_keeps_a_validation_slice_and_stops(ray_session, storage):
    table = generate(1_000, seed=5)
    # A learning rate this high makes the validation loss stop improving within a few epochs.
    params = {"epochs": 40, "early_stopping": 2, "valid_fraction": 0.25, "lr": 0.5}
    out = fit(table, **_fit_args(params=params, storage_path=str(storage), name="es"))
    assert out.valid_rows == 250 and out.train_rows == 750
    assert out.metrics == {}
    assert out.epochs < 40
    assert out.params["early_stopping"] == 2
