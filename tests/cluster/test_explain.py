"""Explanations of real bundles (`cluster.explain`): TreeSHAP sums to the trees' margin,
integrated gradients are complete, custom TorchScript networks are explained too, and the
holdout's permutation importance ranks the informative feature above noise."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
import xgboost

from cluster.bundle import ModelBundle, Preprocessor, build_mlp
from cluster.explain import attribute, holdout_importance

FEATURES = ["x1", "x2", "c"]


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["a", "b", "z"], size=n).astype(object)
    logit = 2.5 * x1 + 1.0 * (c == "b")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return {"x1": x1, "x2": x2, "c": c}, y


@pytest.fixture(scope="module")
def trees():
    cols, y = _data()
    pre = Preprocessor.fit(cols, ["c"])
    booster = xgboost.train({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic",
                             "seed": 0, "nthread": 1},
                            xgboost.DMatrix(pre.transform(cols), label=y), num_boost_round=20)
    return ModelBundle(pre, booster, 0, 0, "y", kind="xgboost")


@pytest.fixture(scope="module")
def mlp():
    cols, _ = _data()
    pre = Preprocessor.fit(cols, ["c"])
    torch.manual_seed(0)
    return ModelBundle(pre, build_mlp(pre.width, 16, 2), 16, 2, "y")


def _row(i=3):
    cols, _ = _data()
    return {k: v[i:i + 1] for k, v in cols.items()}


def test_tree_shap_contributions_sum_to_the_margin(trees):
    for i in (0, 3, 17):
        doc = attribute(trees, _row(i))
        margin = float(trees.raw(_row(i))[0, 0])
        assert doc["method"] == "tree_shap" and "margin" in doc["output"]
        assert doc["value"] == pytest.approx(margin, abs=1e-4)
        assert doc["baseline_value"] + sum(doc["attributions"].values()) == pytest.approx(
            margin, abs=1e-4)
        assert set(doc["attributions"]) == set(FEATURES)
    # x2 plays no part in the label: the trees lean on x1 far more, on average.
    mean = {f: np.mean([abs(attribute(trees, _row(i))["attributions"][f]) for i in range(20)])
            for f in ("x1", "x2")}
    assert mean["x1"] > 3 * mean["x2"]


def test_integrated_gradients_are_complete(mlp):
    doc = attribute(mlp, _row())
    assert doc["method"] == "integrated_gradients"
    delta = doc["value"] - doc["baseline_value"]
    assert abs(delta) > 1e-3
    assert sum(doc["attributions"].values()) == pytest.approx(delta, rel=0.02, abs=1e-3)
    assert abs(doc["completeness_gap"]) < 0.02 * abs(delta) + 1e-3
    assert doc["value"] == pytest.approx(float(mlp.raw(_row())[0, 0]), abs=1e-5)


def test_a_custom_torchscript_network_is_explained_by_its_gradients(mlp):
    scripted = torch.jit.script(mlp.module)
    custom = ModelBundle(mlp.preprocessor, scripted, 0, 0, "y", kind="custom")
    # Round trip through the bundle format, as serving and the store keep it.
    custom = ModelBundle.from_bytes(custom.to_bytes())
    doc = attribute(custom, _row())
    assert doc["method"] == "integrated_gradients"
    assert doc["attributions"] == pytest.approx(attribute(mlp, _row())["attributions"],
                                                abs=1e-5)


def test_holdout_importance_ranks_the_informative_feature_first(trees):
    cols, y = _data(400, seed=1)
    holdout = pa.table({"x1": cols["x1"], "x2": cols["x2"], "c": cols["c"].tolist(), "y": y})
    doc = holdout_importance(trees, holdout, "y", seed=0)
    imp = {k: v["importance"] for k, v in doc["features"].items()}
    assert doc["metric"] == "auc" and doc["rows"] == 400
    assert imp["x1"] > imp["c"] > imp["x2"] - 0.01
    assert imp["x1"] > 0.1
    assert set(doc["association"]) == set(FEATURES)
    assert doc["association"]["x1"] > doc["association"]["x2"]


class _Frozen(torch.nn.Module):
    """A network that scores without gradients (as some exported models do)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(x)


def test_a_network_without_gradients_falls_back_to_occlusion(mlp):
    frozen = ModelBundle(mlp.preprocessor, torch.jit.script(_Frozen(mlp.module)), 0, 0, "y",
                         kind="custom")
    doc = attribute(frozen, _row())
    assert doc["method"] == "occlusion"
    # Occluding x1 alone (to the training mean) moves the output by its attribution.
    row = _row()
    occluded = {**row, "x1": np.array([mlp.preprocessor.numerical["x1"][0]])}
    drop = float(mlp.raw(row)[0, 0] - mlp.raw(occluded)[0, 0])
    assert doc["attributions"]["x1"] == pytest.approx(drop, abs=1e-5)
