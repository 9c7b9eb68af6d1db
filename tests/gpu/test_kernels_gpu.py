"""CuPy backend of the drift engine equals the NumPy backend (run on a lent GPU; else skipped)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not kernels.gpu_available(), reason="needs CuPy and a CUDA GPU"),
]

# Capabilities in one place: which statistic runs where, and how close the backends must agree.
EXACT = {("ks", "statistic"), ("chi2", "statistic"), ("tvd", "value"), ("unseen_share", "value")}
RTOL = {("ks", "pvalue"): 1e-6, ("wasserstein", "value"): 1e-9, ("wasserstein", "normed"): 1e-9}
DEFAULT_RTOL = 1e-9


@pytest.fixture(params=["numpy", "cupy"])
def backend(request) -> str:
    """Both backends; the NumPy one is the reference the CuPy one is held to."""
    return request.param


def _data(n: int, seed: int, shift: float) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, size=n)
    x[rng.integers(0, n, size=n // 100)] = np.nan
    x[:3] = [np.inf, -np.inf, np.inf]
    return {
        "x": x,
        "ties": rng.integers(0, 7, size=n).astype(np.float32),
        "z": rng.exponential(size=n) + shift,
        "region": rng.choice(np.array(["a", "b", "c"], dtype=object), size=n),
    }


def _assert_same(got: dict, want: dict, path: tuple = ()) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            _assert_same(got[k], want[k], (*path, k))
        return
    key = tuple(path[-2:])
    if isinstance(want, float) and key not in EXACT:
        if want is None or math.isnan(want):
            assert got is None or math.isnan(got), path
        else:
            assert got == pytest.approx(want, rel=RTOL.get(key, DEFAULT_RTOL), abs=1e-12), path
    else:
        assert got == want, path


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift"),
    [(5_000, 3_000, 0.0), (200_000, 150_000, 0.01), (50_000, 40_000, 0.5)],
)
def test_cupy_equals_numpy(backend, n_ref, n_cur, shift):
    prof = kernels.fit_profile(_data(n_ref, 0, 0.0), categorical=["region"], backend="numpy")
    cur = _data(n_cur, 1, shift)
    want = kernels.compare(prof, cur, backend="numpy").to_dict()
    got = kernels.compare(prof, cur, backend=backend).to_dict()
    _assert_same(got, want)


@pytest.mark.parametrize("stats", [None, "psi,jensen_shannon,hellinger", "ks"])
def test_device_resident_columns(backend, stats):
    # The GPU check's calls: the whole set, the binned statistics, exact KS; columns that live
    # on the device, with missing values, infinities, ties and an integer column among them.
    import cupy as cp

    rng = np.random.default_rng(3)
    ref = {f"f{i}": rng.normal(size=20_000).astype(np.float32) for i in range(4)}
    ref["ties"] = rng.integers(0, 5, size=20_000).astype(np.int32)
    cur = {f"f{i}": rng.normal(0.1 * i, size=10_000).astype(np.float32) for i in range(4)}
    cur["f1"][rng.integers(0, 10_000, size=100)] = np.nan
    cur["f2"][:5] = [np.inf, -np.inf, np.inf, np.nan, -np.inf]
    cur["ties"] = rng.integers(0, 6, size=10_000).astype(np.int32)
    prof = kernels.fit_profile(ref)
    want = kernels.compare(prof, cur, stats=stats, backend="numpy").to_dict()
    on_device = {k: cp.asarray(v) for k, v in cur.items()}
    got = kernels.compare(prof, on_device, stats=stats, backend=backend).to_dict()
    _assert_same(got, want)


def test_profile_fitted_on_the_device_is_the_host_one():
    # fit_profile sorts on the GPU with backend="cupy": the stored profile (sorted values, bin
    # edges and counts, moments, PCA) must be byte for byte the one the host fits.
    import cupy as cp

    data = _data(50_000, 5, 0.0)
    numeric = {k: v for k, v in data.items() if k != "region"}
    host = kernels.fit_profile(data, categorical=["region"], backend="numpy")
    device_cols = {**{k: cp.asarray(v) for k, v in numeric.items()}, "region": data["region"]}
    device = kernels.fit_profile(device_cols, categorical=["region"], backend="cupy")
    assert device.to_bytes() == host.to_bytes()
