"""Helpers shared by the drift-engine tests (a unique module name: every test folder has a
conftest, so `from conftest import ...` would bind to whichever was imported first)."""

from __future__ import annotations

import numpy as np

import kernels


def one_feature(ref, cur, *, stats, backend="numpy", categorical=False, **kw):
    """Compare one column `x` and return its FeatureDrift."""
    report = kernels.compute(
        {"x": ref}, {"x": cur}, stats=stats, backend=backend,
        categorical=["x"] if categorical else (), **kw,
    )
    return report.features["x"]


def finite(a: np.ndarray) -> np.ndarray:
    """The finite values of `a`."""
    return a[np.isfinite(a)]


def nonmissing(a: np.ndarray) -> np.ndarray:
    """The non-NaN values of `a`."""
    return a[~np.isnan(a)]
