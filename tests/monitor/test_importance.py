"""Global importance (`appliance.monitor.importance`): permutation importance for any scorer,
the score association, and the shift between two importance vectors."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import InvalidInput
from appliance.monitor import importance
from appliance.monitor.metrics import evaluation_metrics


def _world(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    x = {"signal": rng.normal(size=n), "weak": rng.normal(size=n), "noise": rng.normal(size=n)}
    logit = 3 * x["signal"] + 0.7 * x["weak"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def _model(cols):
    # The true rule, as a fitted model would have it; "noise" plays no part.
    return 1 / (1 + np.exp(-(3 * cols["signal"] + 0.7 * cols["weak"])))


def test_permutation_ranks_an_informative_feature_above_noise():
    x, y = _world()

    def metric_of(cols, rows):
        return evaluation_metrics("binary", y[rows], _model(cols))["auc"]

    got = importance.permutation_importance(metric_of, x, metric="auc", max_rows=1000, seed=3)
    imp = {k: v["importance"] for k, v in got["features"].items()}
    assert got["rows"] == 1000 and got["metric"] == "auc"
    assert imp["signal"] > imp["weak"] > 0.005
    assert abs(imp["noise"]) < 1e-9  # shuffling an unused column changes nothing
    assert 0.85 < got["baseline"] < 1.0


def test_a_lower_is_better_metric_counts_a_rise_as_importance():
    x, _ = _world()
    target = 2 * x["signal"]

    def metric_of(cols, rows):
        return evaluation_metrics("regression", target[rows], 2 * cols["signal"])["rmse"]

    got = importance.permutation_importance(metric_of, x, metric="rmse", repeats=2)
    assert got["features"]["signal"]["importance"] > 1.0


def test_an_undefined_baseline_is_refused():
    with pytest.raises(InvalidInput, match="undefined"):
        importance.permutation_importance(lambda cols, rows: None, {"a": np.ones(3)},
                                          metric="auc")


def test_association_and_shift():
    x, _ = _world()
    s = _model(x)
    cat = np.where(x["signal"] > 0, "hi", "lo").astype(object)
    got = importance.association({**x, "band": cat}, s, categorical=["band"])
    assert got["signal"] > got["weak"] > got["noise"]
    assert got["band"] > 0.5  # the band splits the score
    same = importance.shift(got, got)
    assert same["importance_shift"] == pytest.approx(0.0)
    assert same["importance_rank_correlation"] == pytest.approx(1.0)
    # The model now hangs on "noise" instead: half of the mass moved, ranking reversed.
    moved = importance.shift({"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0})
    assert moved["importance_shift"] == pytest.approx(1.0)
    assert moved["importance_rank_correlation"] == pytest.approx(-1.0)
    assert importance.shift({"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.75})[
        "importance_shift"] == pytest.approx(0.25)


def test_spearman_handles_ties_and_constants():
    assert importance.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert importance.spearman([1, 1, 1], [1, 2, 3]) is None
