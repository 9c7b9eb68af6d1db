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


def test_device_resident_columns(backend):
    import cupy as cp

    rng = np.random.default_rng(3)
    ref = {f"f{i}": rng.normal(size=20_000).astype(np.float32) for i in range(4)}
    cur = {f"f{i}": rng.normal(0.1 * i, size=10_000).astype(np.float32) for i in range(4)}
    prof = kernels.fit_profile(ref)
    want = kernels.compare(prof, cur, backend="numpy").to_dict()
    on_device = {k: cp.asarray(v) for k, v in cur.items()}
    got = kernels.compare(prof, on_device, backend=backend).to_dict()
    _assert_same(got, want)
