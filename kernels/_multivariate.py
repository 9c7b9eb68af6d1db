"""Multivariate drift: PCA reconstruction error, linear in rows.

Fitting standardises the numerical reference features (reference mean and std), keeps the
principal components that explain `VARIANCE_KEPT` of the variance (at most d - 1, so the error
is not trivially zero), and records the mean and std of the per-row reconstruction error
||z - z W^T W||^2 / d. A window whose joint structure changed (correlations broken, new modes)
reconstructs worse even when every marginal looks the same.

Non-finite values (NaN, +/-inf) are imputed with the reference mean (z = 0), so every row counts.
Rows are processed in blocks of `_BLOCK` to bound memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

VARIANCE_KEPT = 0.9
_BLOCK = 1 << 16
_COMPARE_BLOCK = 1 << 14  # compare runs beside the per-feature threads: keep its blocks small


@dataclass
class PcaProfile:
    """Reference PCA of the numerical features (see module docstring)."""

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (k, d)
    error_mean: float
    error_std: float


def _block(columns: Sequence[Any], a: int, b: int, mean: Any, scale: Any, xp: ModuleType) -> Any:
    z = xp.stack([xp.asarray(c[a:b], dtype=xp.float64) for c in columns], axis=1)
    z -= mean
    z /= scale
    z[~xp.isfinite(z)] = 0.0
    return z


def _errors(z: Any, comps: Any, xp: ModuleType) -> Any:
    # Orthonormal components: ||z - zW'W||^2 = ||z||^2 - ||zW'||^2, one small matmul per block.
    proj = z @ comps.T
    err = xp.einsum("ij,ij->i", z, z) - xp.einsum("ij,ij->i", proj, proj)
    return xp.maximum(err, 0.0) / z.shape[1]


def fit_pca(
    names: list[str], columns: Sequence[np.ndarray], means: Sequence[float], stds: Sequence[float]
) -> PcaProfile | None:
    """Fit the reference PCA; None when fewer than two numerical features (nothing joint)."""
    d = len(names)
    if d < 2:
        return None
    n = columns[0].shape[0]
    mean = np.nan_to_num(np.asarray(means, dtype=np.float64))
    scale = np.asarray(stds, dtype=np.float64)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    gram = np.zeros((d, d))
    for a in range(0, n, _BLOCK):
        z = _block(columns, a, min(a + _BLOCK, n), mean, scale, np)
        gram += z.T @ z
    vals, vecs = np.linalg.eigh(gram / n)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    total = float(vals.sum())
    k = 1 if total <= 0 else int(np.searchsorted(np.cumsum(vals) / total, VARIANCE_KEPT) + 1)
    comps = np.ascontiguousarray(vecs[:, : min(max(k, 1), d - 1)].T)
    s1 = s2 = 0.0
    for a in range(0, n, _BLOCK):
        e = _errors(_block(columns, a, min(a + _BLOCK, n), mean, scale, np), comps, np)
        s1 += float(e.sum())
        s2 += float(np.dot(e, e))
    err_mean = s1 / n
    err_std = math.sqrt(max(s2 / n - err_mean * err_mean, 0.0))
    return PcaProfile(list(names), mean, scale, comps, err_mean, err_std)


def compare_pca(prof: PcaProfile, columns: Sequence[Any], *, xp: ModuleType) -> dict:
    """Mean reconstruction error of the window against the reference's.

    The mean error needs only the window's second moments: with S = Z'Z / n (z standardised by
    the reference), mean ||z - zW'W||^2 / d = (tr S - tr(W S W')) / d. S is accumulated from
    raw value blocks (one BLAS Gram product per block) and standardised afterwards as a d x d
    matrix, so the window is read once and never standardised element by element.

    Returns:
        {"value": window mean error, "reference": reference mean error, "ratio": value/reference,
         "zscore": (value - reference) / (reference std / sqrt(rows)), "components": k}
    """
    n = columns[0].shape[0]
    d = len(columns)
    mean = xp.asarray(prof.mean)
    gram = xp.zeros((d, d))
    sums = xp.zeros(d)
    step = _COMPARE_BLOCK if xp is np else _BLOCK
    # Feature-major blocks: each column is copied in as one contiguous row (a transposing
    # stack into row-major blocks costs twice as much), and X'X of the block is one GEMM.
    block = xp.empty((d, min(step, n)))
    fill = mean[:, None]
    for a in range(0, n, step):
        b = min(a + step, n)
        blk = block[:, : b - a]
        for k, c in enumerate(columns):
            blk[k] = c[a:b]
        # Non-finite values take the reference mean (z = 0), as at fitting.
        xp.copyto(blk, fill, where=~xp.isfinite(blk))
        gram += blk @ blk.T
        sums += blk.sum(axis=1)
    inv = 1.0 / xp.asarray(prof.scale)
    # S = D^-1 (X'X - s mu' - mu s' + n mu mu') D^-1 / n, D = diag(scale)
    centred = gram - xp.outer(sums, mean) - xp.outer(mean, sums) + n * xp.outer(mean, mean)
    s = centred * xp.outer(inv, inv) / n
    w = xp.asarray(prof.components)
    value = float(xp.trace(s) - xp.trace(w @ s @ w.T)) / d
    value = max(value, 0.0)
    ref = prof.error_mean
    ratio = value / ref if ref > 0 else (1.0 if value == 0 else math.inf)
    se = prof.error_std / math.sqrt(n)
    zscore = (value - ref) / se if se > 0 else (0.0 if value == ref else math.inf)
    return {
        "value": value,
        "reference": ref,
        "ratio": ratio,
        "zscore": zscore,
        "components": int(prof.components.shape[0]),
    }
