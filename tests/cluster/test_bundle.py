"""The model bundle: the preprocessing it carries, and its byte round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from appliance.errors import InvalidInput
from cluster.bundle import FORMAT, ModelBundle, Preprocessor, build_mlp


def _train_columns() -> dict[str, np.ndarray]:
    return {
        "age": np.array([20.0, 30.0, 40.0, 50.0]),
        "income": np.array([1.0, 2.0, 3.0, np.nan]),
        "home": np.array(["rent", "own", "rent", "mortgage"], dtype=object),
    }


def _bundle(seed: int = 0) -> ModelBundle:
    pre = Preprocessor.fit(_train_columns(), ["home"])
    torch.manual_seed(seed)
    return ModelBundle(pre, build_mlp(pre.width, 8, 2), hidden=8, layers=2, label="y")


def test_fit_standardises_and_orders_features():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    assert pre.feature_names == ["age", "income", "home"]
    assert pre.categorical == {"home": ["mortgage", "own", "rent"]}
    assert pre.numerical["age"] == pytest.approx((35.0, np.std([20, 30, 40, 50])))
    # NaN is ignored when fitting: income's mean and std come from the three known values.
    assert pre.numerical["income"] == pytest.approx((2.0, np.std([1.0, 2.0, 3.0])))
    assert pre.width == 2 + 3


def test_transform_one_hot_and_standardised():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    x = pre.transform(_train_columns())
    assert x.dtype == np.float32 and x.shape == (4, 5)
    ages = np.array([20.0, 30.0, 40.0, 50.0])
    np.testing.assert_allclose(x[:, 0], (ages - 35) / np.std(ages), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 2:], [[0, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_missing_numerical_value_imputes_to_the_training_mean():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    x = pre.transform(
        {
            "age": np.array([np.nan, 35.0]),
            "income": np.array([np.inf, 2.0]),
            "home": np.array(["own", "own"], dtype=object),
        }
    )
    np.testing.assert_array_equal(x[:, :2], 0.0)


def test_unknown_category_encodes_as_all_zeros():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    x = pre.transform(
        {
            "age": np.array([30.0, 30.0]),
            "income": np.array([2.0, 2.0]),
            "home": np.array(["castle", None], dtype=object),
        }
    )
    np.testing.assert_array_equal(x[:, 2:], 0.0)


def test_missing_feature_is_invalid_input():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    with pytest.raises(InvalidInput, match="missing feature.*income"):
        pre.transform({"age": np.array([1.0]), "home": np.array(["own"], dtype=object)})


def test_ragged_columns_are_invalid_input():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    with pytest.raises(InvalidInput, match="different lengths"):
        pre.transform(
            {
                "age": np.array([1.0, 2.0]),
                "income": np.array([1.0]),
                "home": np.array(["own"], dtype=object),
            }
        )


def test_non_numeric_value_is_invalid_input():
    pre = Preprocessor.fit(_train_columns(), ["home"])
    with pytest.raises(InvalidInput, match="'age' must be numeric"):
        pre.transform(
            {
                "age": np.array(["old"], dtype=object),
                "income": np.array([1.0]),
                "home": np.array(["own"], dtype=object),
            }
        )


def test_build_mlp_shape():
    net = build_mlp(5, hidden=8, layers=3)
    assert net(torch.zeros(7, 5)).shape == (7, 1)
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 4
    assert build_mlp(5, layers=0)(torch.zeros(2, 5)).shape == (2, 1)


def test_predict_shapes_and_types():
    bundle = _bundle()
    classes, scores = bundle.predict(_train_columns())
    assert classes.dtype == np.int64 and scores.dtype == np.float32
    assert classes.shape == scores.shape == (4,)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_array_equal(classes, (scores >= bundle.threshold).astype(np.int64))
    assert bundle.feature_names == ["age", "income", "home"]
    assert bundle.categorical == ["home"]


def test_round_trip_keeps_predictions_and_metadata():
    bundle = _bundle(seed=3)
    bundle.threshold = 0.4
    again = ModelBundle.from_bytes(bundle.to_bytes())
    np.testing.assert_array_equal(
        again.predict_proba(_train_columns()), bundle.predict_proba(_train_columns())
    )
    assert again.preprocessor == bundle.preprocessor
    assert (again.hidden, again.layers, again.label, again.threshold) == (8, 2, "y", 0.4)
    # Serialisation is deterministic, so content addressing of the same model is stable.
    assert again.to_bytes() == bundle.to_bytes()


def test_garbage_bytes_are_invalid_input():
    with pytest.raises(InvalidInput, match="not a model bundle"):
        ModelBundle.from_bytes(b"definitely not torch")


def test_wrong_format_is_invalid_input():
    buf = io.BytesIO()
    torch.save({"meta": '{"format": "other/9"}', "state": {}}, buf)
    with pytest.raises(InvalidInput, match="unsupported bundle format"):
        ModelBundle.from_bytes(buf.getvalue())
    assert FORMAT == "appliance.bundle/1"


def test_round_trip_keeps_feature_order_when_names_are_not_sorted():
    # Regression: sorting the metadata's keys permuted the design matrix under the weights.
    cols = {
        "zeta": np.array([1.0, 5.0, 2.0, 8.0]),
        "alpha": np.array([-3.0, 0.0, 4.0, 1.0]),
        "z_cat": np.array(["b", "a", "b", "c"], dtype=object),
        "a_cat": np.array(["y", "x", "x", "y"], dtype=object),
    }
    pre = Preprocessor.fit(cols, ["z_cat", "a_cat"])
    torch.manual_seed(0)
    bundle = ModelBundle(pre, build_mlp(pre.width, 8, 1), hidden=8, layers=1, label="y")
    again = ModelBundle.from_bytes(bundle.to_bytes())
    assert again.feature_names == ["zeta", "alpha", "z_cat", "a_cat"]
    np.testing.assert_array_equal(again.preprocessor.transform(cols), pre.transform(cols))
    np.testing.assert_array_equal(again.predict_proba(cols), bundle.predict_proba(cols))


def test_transform_equals_standardising_each_value_on_its_own():
    """The numerical block is computed in one array operation: every value must still be
    exactly (value - mean) / std in float64, rounded to float32, with NaN and infinities 0."""
    rng = np.random.default_rng(3)
    train = {"a": rng.normal(5, 2, 200), "b": rng.integers(0, 9, 200).astype(float),
             "c": np.array(["x", "y", "z"] * 66 + ["x", "y"], dtype=object), "d": rng.random(200)}
    pre = Preprocessor.fit(train, ["c"])
    cols = {"a": np.array([1.5, np.nan, np.inf, -np.inf, 1e30, 0.1]),
            "b": np.array([0, 1, 2, 3, 4, 5], dtype=np.int64),
            "c": np.array(["z", "w", None, "x", "y", "x"], dtype=object),
            "d": [0.5, 0.25, 0.75, 1.0, 0.0, 1e-9]}
    out = pre.transform(cols)
    for j, (name, (mean, std)) in enumerate(pre.numerical.items()):
        for i, v in enumerate(np.asarray(cols[name], dtype=np.float64)):
            want = (v - mean) / std
            want = 0.0 if not np.isfinite(want) else want
            assert out[i, j] == np.float32(want), (name, i)
    cats = pre.categorical["c"]
    for i, v in enumerate(cols["c"]):
        hot = out[i, len(pre.numerical):]
        assert hot.tolist() == [1.0 if str(v) == c else 0.0 for c in cats]
