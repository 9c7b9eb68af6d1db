"""Distances between two histograms (integer counts over the same bins or categories).

Histograms are small (bins or categories), so these run on the host in float64 whatever the
backend: the device only produces the integer counts.

PSI uses `PSI_EPSILON` in place of an empty bin's proportion (on either side, without
renormalising), the usual convention that keeps PSI finite; the other distances need no epsilon.
"""

from __future__ import annotations

import math

import numpy as np

PSI_EPSILON = 1e-4
"""Proportion substituted for an empty bin in PSI, so ln(q/p) stays finite."""


def proportions(counts: np.ndarray) -> np.ndarray:
    """Counts (integers) -> proportions (float64) summing to 1."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum()


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index sum((q - p) * ln(q / p)), empty bins set to `PSI_EPSILON`."""
    p = np.maximum(proportions(ref_counts), PSI_EPSILON)
    q = np.maximum(proportions(cur_counts), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def _rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # scipy.special.rel_entr for x >= 0, y > 0 where x > 0: x*log(x/y); 0 where x == 0.
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log(x[pos] / y[pos])
    return out


def jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, in [0, 1]: scipy's formula, but 0.0 (not NaN) when equal.

    scipy's `jensenshannon` can return NaN on identical inputs, because rounding leaves the
    divergence a hair below zero before the square root; here it is clipped at zero.
    """
    p = proportions(ref_counts)
    q = proportions(cur_counts)
    m = (p + q) / 2.0
    js = np.sum(_rel_entr(p, m)) + np.sum(_rel_entr(q, m))
    js /= np.log(2.0)
    return float(math.sqrt(max(float(js) / 2.0, 0.0)))


def hellinger(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Hellinger distance ||sqrt(p) - sqrt(q)||_2 / sqrt(2), in [0, 1].

    Computed from the difference of square roots rather than as sqrt(1 - BC): the latter loses
    all precision for nearby histograms (1 - BC cancels).
    """
    d = np.sqrt(proportions(ref_counts)) - np.sqrt(proportions(cur_counts))
    return float(np.sqrt(np.dot(d, d)) / math.sqrt(2.0))


def total_variation(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Total variation distance 0.5 * sum|p - q|, in [0, 1]."""
    return float(0.5 * np.sum(np.abs(proportions(ref_counts) - proportions(cur_counts))))


_DISTANCES = {
    "psi": psi,
    "jensen_shannon": jensen_shannon,
    "hellinger": hellinger,
    "tvd": total_variation,
}


def histogram_stats(ref_counts: np.ndarray, cur_counts: np.ndarray, stats: frozenset[str]) -> dict:
    """{name: {"value": x}} for each histogram distance named in `stats` (others are ignored)."""
    return {
        name: {"value": fn(ref_counts, cur_counts)}
        for name, fn in _DISTANCES.items()
        if name in stats
    }
