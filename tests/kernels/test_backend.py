"""Backend resolution (`kernels._backend`): NumPy by name or when no GPU is usable, CuPy refused
with its remedy where it cannot run, and host arrays passed through untouched."""

from __future__ import annotations

import numpy as np
import pytest

from kernels._backend import gpu_available, resolve_backend, to_numpy
from kernels._errors import BackendUnavailable, DriftInputError


def test_numpy_by_name():
    assert resolve_backend("numpy") == ("numpy", np)


@pytest.mark.parametrize("name", [None, "auto"])
def test_unset_picks_cupy_only_when_a_gpu_is_usable(name):
    picked, xp = resolve_backend(name)
    assert picked == ("cupy" if gpu_available() else "numpy")
    assert (xp is np) == (picked == "numpy")


def test_an_unknown_backend_lists_the_known_ones():
    with pytest.raises(DriftInputError, match="unknown backend 'torch'; choose one of numpy, cupy"):
        resolve_backend("torch")


def test_cupy_asked_for_without_a_gpu_is_refused_with_the_remedy():
    if gpu_available():
        pytest.skip("CuPy runs here: tests/gpu covers it")
    with pytest.raises(BackendUnavailable, match="use backend='numpy'"):
        resolve_backend("cupy")


def test_to_numpy_passes_host_arrays_through_and_converts_the_rest():
    host = np.arange(3.0)
    assert to_numpy(host) is host
    out = to_numpy([1, 2, 3])
    assert isinstance(out, np.ndarray) and out.tolist() == [1, 2, 3]
