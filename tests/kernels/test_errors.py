"""Bad input fails with a DriftInputError naming the feature; nothing is dropped silently."""

from __future__ import annotations

import numpy as np
import pytest

import kernels


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    return kernels.fit_profile(
        {"age": rng.normal(size=100), "city": rng.choice(["a", "b"], size=100)},
        categorical=["city"],
    )


@pytest.mark.parametrize(
    ("window", "pattern"),
    [
        ({"age": np.array([]), "city": np.array([])}, "empty"),
        ({"age": np.arange(3.0)}, "'city'"),
        ({"age": np.arange(3.0), "city": np.array(["a"] * 3), "extra": np.arange(3)}, "'extra'"),
        ({"age": np.full(3, np.nan), "city": np.array(["a"] * 3)}, "'age'.*missing"),
        ({"age": np.arange(3.0), "city": np.array([None] * 3)}, "'city'.*missing"),
        ({"age": np.array(["1", "x", "2"]), "city": np.array(["a"] * 3)}, "'age'.*text"),
        ({"age": np.array([1.0, "x"], dtype=object), "city": np.array(["a"] * 2)}, "'age'.*'x'"),
        ({"age": np.arange(3.0), "city": np.array(["a"] * 2)}, "'city' has 2 rows"),
        ({"age": np.zeros((2, 2)), "city": np.array(["a"] * 2)}, "'age' must be 1-D"),
    ],
)
def test_bad_windows(profile, window, pattern):
    with pytest.raises(kernels.DriftInputError, match=pattern):
        kernels.compare(profile, window)


def test_extra_columns_can_be_ignored_explicitly(profile):
    window = {"age": np.arange(3.0), "city": np.array(["a"] * 3), "request_id": np.arange(3)}
    report = kernels.compare(profile, window, ignore_extra_columns=True)
    assert list(report.features) == ["age", "city"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"stats": ["ks", "nope"]}, "unknown statistic 'nope'"),
        ({"stats": ""}, "no statistic"),
        ({"thresholds": {"psi": "high"}}, "threshold 'psi'"),
        ({"thresholds": {"bogus": 1}}, "unknown threshold 'bogus'"),
        ({"correction": "holm"}, "unknown correction 'holm'"),
        ({"backend": "tpu"}, "unknown backend 'tpu'"),
    ],
)
def test_bad_options(profile, kwargs, pattern):
    window = {"age": np.arange(3.0), "city": np.array(["a"] * 3)}
    with pytest.raises(kernels.DriftInputError, match=pattern):
        kernels.compare(profile, window, **kwargs)


@pytest.mark.parametrize(
    ("columns", "kwargs", "pattern"),
    [
        ({}, {}, "no columns"),
        ({"x": np.full(4, np.nan)}, {}, "'x'.*missing"),
        ({"x": np.arange(4.0)}, {"categorical": ["y"]}, "'y' is not among"),
        ({"x": np.arange(4.0)}, {"bins": 1}, "bins"),
        ({"x": np.array(["a", "b"])}, {}, "'x'.*text"),
        ([1, 2, 3], {}, "mapping"),
    ],
)
def test_bad_reference(columns, kwargs, pattern):
    with pytest.raises(kernels.DriftInputError, match=pattern):
        kernels.fit_profile(columns, **kwargs)


def test_cupy_requested_without_gpu():
    if kernels.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(kernels.BackendUnavailable, match="cupy"):
        kernels.compute({"x": np.arange(3.0)}, {"x": np.arange(3.0)}, backend="cupy")
