"""The device (CuPy) code path's algorithm, run here on NumPy arrays.

The per-feature statistics and the PCA are written against an array namespace `xp`; with CuPy
they take the branches for a namespace that is not NumPy: the window sorted without a reused
host buffer, the whole merge as one block ordered by a default (not necessarily stable)
argsort, `xp.std` for the moments, larger PCA blocks. A namespace that forwards to NumPy but is
not NumPy takes those same branches on this machine, so their arithmetic is checked in CI
against the host path; `tests/gpu` checks CuPy itself on a GPU.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import kernels
from kernels import _multivariate, _numerical, _report


class _OtherNamespace(types.ModuleType):
    """NumPy's functions under another module object, so `xp is np` is False."""

    def __getattr__(self, name):
        return getattr(np, name)


XP = _OtherNamespace("numpy_as_device")
NUMERICAL = frozenset(_report.NUMERICAL_STATS)


def _columns(n: int, seed: int, shift: float) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, size=n)
    x[rng.integers(0, n, size=n // 50)] = np.nan
    x[:3] = [np.inf, -np.inf, np.inf]
    return {
        "x": x,
        "ties": rng.integers(0, 7, size=n).astype(np.float32),
        "z": rng.exponential(size=n) * (1 + shift) + rng.normal(size=n) * 0.1,
        "const": np.full(n, 2.0),
    }


def _close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, dict):
            _close(got[key], value)
        elif isinstance(value, float) and not math.isnan(value):
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
        elif isinstance(value, float):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == value, key


@pytest.mark.parametrize(("n_ref", "n_cur", "shift"), [(3_000, 2_000, 0.0), (150_000, 90_000, 0.2)])
def test_device_path_equals_host_path(n_ref, n_cur, shift):
    prof = kernels.fit_profile(_columns(n_ref, 0, 0.0), backend="numpy")
    cur = _columns(n_cur, 1, shift)
    for name in cur:
        host = _numerical.compare_numerical(prof.features[name], cur[name], stats=NUMERICAL,
                                            xp=np)
        device = _numerical.compare_numerical(prof.features[name], XP.asarray(cur[name]),
                                              stats=NUMERICAL, xp=XP)
        # The KS statistic is the same expression at the same points: equal, not close.
        assert device["ks"]["statistic"] == host["ks"]["statistic"], name
        _close(device, host)
    cols = [cur[n] for n in prof.pca.features]
    _close(_multivariate.compare_pca(prof.pca, cols, xp=XP),
           _multivariate.compare_pca(prof.pca, cols, xp=np))


def test_one_block_merge_without_a_stable_sort_keeps_ks_exact():
    # Heavy ties across both samples: an unstable argsort may interleave equal values from the
    # two samples, and the statistic must not depend on that order.
    rng = np.random.default_rng(5)
    ref = np.sort(rng.integers(0, 4, size=20_000).astype(np.float64))
    cur = np.sort(rng.integers(0, 5, size=15_000).astype(np.float64))
    device = _numerical._merged_pass(ref, cur, want_ks=True, want_w1=True, xp=XP)
    host = _numerical._merged_pass(ref, cur, want_ks=True, want_w1=True, xp=np)
    assert device[:2] == host[:2]
    assert device[2] == pytest.approx(host[2], rel=1e-12)
