"""Shared helpers for the drift-engine tests: the backends to run on, and scipy references."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# pytest (prepend import mode) puts tests/ on sys.path for the root conftest, and there
# tests/kernels/ would shadow the real package as a namespace package: the project root wins.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("kernels"), "__file__", "") is None:
    del sys.modules["kernels"]

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kernels  # noqa: E402


def _backends() -> list[str]:
    names = ["numpy"]
    # CuPy joins only when asked for and usable, so CPU runs never pay for a CUDA import.
    if os.environ.get("KERNELS_TEST_CUPY") and kernels.gpu_available():
        names.append("cupy")
    return names


@pytest.fixture(params=_backends())
def backend(request) -> str:
    """Each array backend the engine should be tested on here."""
    return request.param


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
