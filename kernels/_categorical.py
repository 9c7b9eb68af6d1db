"""Statistics of one categorical feature: window category counts against the reference's.

Every statistic runs over the union of reference categories and categories first seen in the
window (each unseen category is its own column, so the chi-square table is the exact
contingency table `scipy.stats.chi2_contingency` would be given). Missing values are counted
apart and never form a category.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels import _columns, _divergence, _pvalues
from kernels._errors import DriftInputError


def chi2_contingency(observed: np.ndarray) -> tuple[float, float, int]:
    """Pearson chi-square of a 2 x K table of counts, as scipy's `chi2_contingency` defaults.

    Yates' continuity correction applies when there is one degree of freedom (scipy's default
    `correction=True`); a table with one column has no degrees of freedom: (0.0, 1.0, 0).

    Returns:
        (statistic, pvalue, dof)
    """
    obs = np.asarray(observed, dtype=np.float64)
    expected = obs.sum(axis=1)[:, None] * obs.sum(axis=0)[None, :] / obs.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 0.0, 1.0, 0
    if dof == 1:
        diff = expected - obs
        obs = obs + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((obs - expected) ** 2 / expected))
    return stat, _pvalues.chi2_sf(stat, dof), int(dof)


def compare_categorical(prof: Any, values: Any, *, stats: frozenset[str], what: str) -> dict:
    """All requested statistics of one categorical feature, as plain floats.

    Args:
        prof: the feature's `CategoricalProfile`.
        values: the window's column (strings, ints, or anything `category_key` turns into one).
        stats: names of the statistics to compute.
        what: how errors name the window.
    """
    cats, counts, n_missing = _columns.categorical(prof.name, values, what=what)
    n = int(counts.sum())
    if n == 0:
        raise DriftInputError(
            f"{what}: feature {prof.name!r}: all {n_missing} values are missing (None/NaN/null); "
            "a categorical feature needs at least one value"
        )
    index = {c: i for i, c in enumerate(prof.categories)}
    unseen = [c for c in cats if c not in index]
    k = len(prof.categories)
    ref_counts = np.concatenate((prof.counts, np.zeros(len(unseen), dtype=np.int64)))
    cur_counts = np.zeros(k + len(unseen), dtype=np.int64)
    for i, c in enumerate(unseen):
        index[c] = k + i
    cur_counts[[index[c] for c in cats]] = counts
    unseen_rows = int(cur_counts[k:].sum())
    out: dict[str, Any] = {"n": n, "missing": n_missing}
    if "chi2" in stats:
        stat, p, dof = chi2_contingency(np.stack((ref_counts, cur_counts)))
        out["chi2"] = {"statistic": stat, "pvalue": p, "dof": dof}
    out.update(_divergence.histogram_stats(ref_counts, cur_counts, stats))
    if "unseen_share" in stats:
        out["unseen_share"] = {
            "value": unseen_rows / n,
            "categories": unseen[:20],  # a sample for the operator; the count is below
            "unseen_categories": len(unseen),
        }
    return out
