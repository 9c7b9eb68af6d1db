"""Reference profiles: what is fitted, and the pickle-free byte format."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import kernels


def _columns(seed: int = 0, n: int = 500) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[::50] = np.nan
    return {
        "x": x,
        "y": rng.exponential(size=n).astype(np.float32),
        "z": x * 2 + rng.normal(size=n) * 0.1,
        "region": rng.choice(np.array(["north", "south", "east"], dtype=object), size=n),
        "prediction": rng.integers(0, 2, size=n),
    }


def test_fit_keeps_sorted_values_and_quantile_bins():
    cols = _columns()
    prof = kernels.fit_profile(cols, categorical=["region", "prediction"], bins=5)
    assert prof.rows == 500
    assert list(prof.features) == ["x", "y", "z", "region", "prediction"]
    assert prof.numerical == ["x", "y", "z"] and prof.categorical == ["region", "prediction"]
    x = prof.features["x"]
    assert x.n_missing == 10 and x.n == 490
    np.testing.assert_array_equal(x.sorted, np.sort(cols["x"][~np.isnan(cols["x"])]))
    assert x.bin_counts.sum() == 490 and len(x.bin_counts) == len(x.edges) + 1 == 5
    assert prof.features["prediction"].categories == ["0", "1"]
    assert prof.pca is not None and prof.pca.features == ["x", "y", "z"]


def test_round_trip_without_pickle():
    prof = kernels.fit_profile(_columns(), categorical=["region", "prediction"])
    blob = prof.to_bytes()
    # Every member is a plain array: loading with allow_pickle=False must work.
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        assert "header.json" in z.files
    again = kernels.ReferenceProfile.from_bytes(blob)
    cur = _columns(seed=1, n=300)
    assert kernels.compare(again, cur).to_dict() == kernels.compare(prof, cur).to_dict()
    assert again.to_bytes() == blob


@pytest.mark.parametrize("blob", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_bad_bytes_are_an_input_error(blob):
    with pytest.raises(kernels.DriftInputError, match="reference profile"):
        kernels.ReferenceProfile.from_bytes(blob)


def test_foreign_npz_is_rejected():
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    with pytest.raises(kernels.DriftInputError):
        kernels.ReferenceProfile.from_bytes(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("header.json.npy", b"nonsense")
    with pytest.raises(kernels.DriftInputError):
        kernels.ReferenceProfile.from_bytes(buf.getvalue())


def test_single_numerical_feature_has_no_pca():
    prof = kernels.fit_profile({"x": np.arange(10.0)})
    assert prof.pca is None
    report = kernels.compare(prof, {"x": np.arange(5.0)})
    assert "multivariate" not in report.to_dict()
