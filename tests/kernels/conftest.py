"""Drift-engine test fixtures: the array backends to run on."""

from __future__ import annotations

import os

import pytest

import kernels


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
