"""The user's own PyTorch training function (kind "custom") on Ray Train, into the same bundle
as the built-in kinds (real Ray, tiny data)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from appliance.errors import InvalidInput
from appliance.pipelines.spec import parse_spec
from appliance.tables import table_columns
from cluster.bundle import ModelBundle
from cluster.evaluate import evaluate
from cluster.scoring import TorchScorer
from cluster.train import fit
from cluster.train_custom import resolve_function
from cluster.train_params import resolve_params


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    c = rng.choice(["u", "v"], n)
    kind = np.where(x1 > 0.3, "high", np.where(x2 > 0, "mid", "low"))
    return pa.table({"x1": x1, "x2": x2, "c": c, "kind": kind})


def test_the_function_and_its_params_are_checked_before_any_run():
    with pytest.raises(InvalidInput, match="'module:function'"):
        resolve_function("no_colon")
    with pytest.raises(InvalidInput, match="cannot import module 'no_such_module'"):
        resolve_function("no_such_module:train")
    with pytest.raises(InvalidInput, match="no callable 'missing'"):
        resolve_function("custom_training:missing")
    assert resolve_params({"epochs": 5, "note": "x"}, kind="custom") == {"epochs": 5, "note": "x"}
    with pytest.raises(InvalidInput, match="'layers'"):
        resolve_params({"layers": [1, 2]}, kind="custom")
    base = {"model": "m", "dataset": "d", "label": "y"}
    with pytest.raises(InvalidInput, match="'function'"):
        parse_spec({**base, "kind": "custom"})
    with pytest.raises(InvalidInput, match="'function'"):
        parse_spec({**base, "function": "custom_training:train_small_net"})
    spec = parse_spec({**base, "kind": "custom", "function": "custom_training:train_small_net"})
    assert spec.to_dict()["function"] == "custom_training:train_small_net"


def test_a_custom_function_trains_on_ray_into_the_same_bundle(ray_session, tmp_path):
    train, holdout = _table(800, seed=1), _table(300, seed=2)
    out = fit(train, label="kind", categorical=["c"], seed=3, task="multiclass", kind="custom",
              function="custom_training:train_small_net", params={"epochs": 60},
              holdout=holdout, storage_path=str(tmp_path), name="custom")
    assert out.bundle.kind == "custom" and out.bundle.classes == ["high", "low", "mid"]
    assert out.train_rows == 800
    assert out.metrics["macro_f1"] >= 0.8, out.metrics
    again = ModelBundle.from_bytes(out.bundle.to_bytes())
    assert again.kind == "custom"
    cols = table_columns(holdout, again.feature_names, again.categorical)
    np.testing.assert_allclose(again.score(cols).probabilities,
                               out.bundle.score(cols).probabilities, rtol=1e-6)
    assert evaluate(again, holdout, "kind") == out.metrics
    # A replica scores it with the same torch scorer as the MLP, from the bytes alone.
    served = TorchScorer(again, num_gpus=0).predict(cols)
    np.testing.assert_array_equal(served.predictions, out.bundle.score(cols).predictions)
