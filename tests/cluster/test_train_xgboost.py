"""Gradient-boosted trees on Ray Train's XGBoostTrainer, for every task, into the same bundle
as the MLP (real Ray, tiny data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from appliance.tables import table_columns
from cluster.bundle import ModelBundle
from cluster.evaluate import evaluate
from cluster.train import fit


def _table(n: int, seed: int) -> pa.Table:
    """x1, x2 ~ N(0, 1), c in {u, v}; `flag` (0/1), `kind` (three string classes) and
    `amount` (a number in the hundreds), each a function of the features."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    c = rng.choice(["u", "v"], n)
    return pa.table({
        "x1": x1, "x2": x2, "c": c,
        "flag": (x1 + 0.5 * (c == "v") > 0.2).astype(np.int64),
        "kind": np.where(x1 > 0.3, "high", np.where(x2 > 0, "mid", "low")),
        "amount": 500 + 120 * x1 - 80 * x2 + 60 * (c == "v") + rng.normal(0, 5, n),
    })


LABELS = {"binary": "flag", "multiclass": "kind", "regression": "amount"}


def _rows(task: str, n: int, seed: int) -> pa.Table:
    return _table(n, seed).select(["x1", "x2", "c", LABELS[task]])


@pytest.mark.parametrize(
    ("task", "good"),
    [("binary", ("auc", 0.95)), ("multiclass", ("macro_f1", 0.85)), ("regression", ("r2", 0.95))],
)
def test_each_task_trains_on_ray_into_a_bundle(ray_session, tmp_path, task, good):
    train, holdout = _rows(task, 800, seed=1), _rows(task, 300, seed=2)
    out = fit(train, label=LABELS[task], categorical=["c"], seed=3, task=task, kind="xgboost",
              params={"num_boost_round": 30, "max_depth": 3}, holdout=holdout,
              storage_path=str(tmp_path), name=f"xgb-{task}")
    assert out.bundle.kind == "xgboost" and out.bundle.task == task
    assert out.train_rows == 800 and out.valid_rows == 0 and out.epochs == 30
    assert out.metrics[good[0]] >= good[1], out.metrics
    assert any(p.name.startswith("checkpoint_") for p in Path(out.run_path).iterdir())
    # One artifact, read back by the one loader, predicts the same.
    again = ModelBundle.from_bytes(out.bundle.to_bytes())
    assert again.kind == "xgboost" and again.classes == out.bundle.classes
    cols = table_columns(holdout, again.feature_names, again.categorical)
    np.testing.assert_array_equal(again.score(cols).scores, out.bundle.score(cols).scores)
    assert evaluate(again, holdout, LABELS[task]) == out.metrics


def test_early_stopping_keeps_the_best_rounds(ray_session, tmp_path):
    out = fit(_rows("regression", 600, seed=4), label="amount", categorical=["c"], seed=5,
              task="regression", kind="xgboost", storage_path=str(tmp_path), name="xgb-es",
              params={"num_boost_round": 400, "eta": 0.5, "early_stopping": 3,
                      "valid_fraction": 0.25})
    assert out.valid_rows == 150 and out.train_rows == 450
    assert out.epochs < 400
