"""Array backends: NumPy everywhere, CuPy where a CUDA GPU is present.

The namespace is resolved once at the public entry point and passed as `xp=` to private helpers.
CuPy is never imported at module import time: a CPU-only host must not pay for it, and a broken
CUDA install must not break `import kernels`.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from kernels._errors import BackendUnavailable, DriftInputError

BACKENDS = ("numpy", "cupy")


@functools.lru_cache(maxsize=1)
def _cupy_or_none() -> ModuleType | None:
    try:
        # Deferred on purpose: see the module docstring.
        import cupy
    except Exception:  # ImportError, or a CUDA library failing to load
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver, no device
        return None
    return cupy


def gpu_available() -> bool:
    """Return True when CuPy imports and sees at least one CUDA device."""
    return _cupy_or_none() is not None


def resolve_backend(backend: str | None) -> tuple[str, ModuleType]:
    """Return `(name, xp)` for `backend`.

    Args:
        backend: "numpy", "cupy", or None (default) for CuPy when a GPU is usable, else NumPy.

    Raises:
        DriftInputError: the name is not a known backend.
        BackendUnavailable: "cupy" was asked for explicitly but cannot run here.
    """
    if backend is None or backend == "auto":
        cp = _cupy_or_none()
        return ("cupy", cp) if cp is not None else ("numpy", np)
    if backend not in BACKENDS:
        raise DriftInputError(
            f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} (or leave it unset)"
        )
    if backend == "numpy":
        return "numpy", np
    cp = _cupy_or_none()
    if cp is None:
        raise BackendUnavailable(
            "backend 'cupy' requested but CuPy is not importable or sees no CUDA device; "
            "install the 'gpu' extra on a GPU host or use backend='numpy'"
        )
    return "cupy", cp


def to_numpy(array: Any) -> np.ndarray:
    """Return `array` as a NumPy array (copying from the device when it is a CuPy array)."""
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    if callable(get) and type(array).__module__.startswith("cupy"):
        return get()
    return np.asarray(array)
