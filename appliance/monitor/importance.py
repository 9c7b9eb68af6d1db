"""Global feature importance of a version, and how far a window's has moved from it.

At training time the pipeline measures, on the holdout, the permutation importance of every
feature: how much the task's main metric (`metrics.MAIN_METRIC`: AUC, macro F1 or RMSE) gets
worse when that feature's values are shuffled among the rows, averaged over a few seeded
shuffles. It needs nothing of the model but a function from rows to the metric, so it works for
every model kind (MLP, XGBoost, custom).

A window has no model to shuffle (the monitor never loads one: it is Ray- and torch-free) and
most of its rows have no label yet. Its importance is therefore measured by a proxy the window
does hold: how strongly the logged score depends on each feature, the absolute Spearman rank
correlation for a numerical feature and the correlation ratio (eta) of the score over a
categorical feature's values. The same association is measured on the holdout at training time,
so a window is compared with its version's own reference on the same scale. When the traffic
changes what the model's answers hang on (a feature that went constant, a new population where
another feature decides), the shares move, though no single feature need drift:

    importance_shift              half the L1 distance between the two association vectors,
                                  each scaled to sum 1 (0: same shape, 1: disjoint)
    importance_rank_correlation   Spearman correlation of the two vectors (1: same ranking)

`version_importance` is the getter the model card uses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlmodel import Session, select

from appliance.errors import InvalidInput, NotFound
from appliance.monitor.metrics import HIGHER_IS_BETTER
from appliance.store.models import ModelVersion

METHOD = "permutation"
PROXY = "score_association"
# Enough rows for a stable ranking; a bigger holdout is sampled down (seeded).
MAX_ROWS = 2000
REPEATS = 3


class FeatureImportance(BaseModel):
    """One feature's permutation importance: the metric's mean loss over the shuffles (higher:
    the model leans on it more), its standard deviation, and its rank (1: most important)."""

    feature: str
    importance: float
    std: float
    rank: int


class VersionImportancePublic(BaseModel):
    """A version's global importance, as the CLI and the model card show it."""

    model: str
    version: int
    method: str
    metric: str
    baseline: float | None
    rows: int
    repeats: int
    features: list[FeatureImportance]
    # The score association of each feature on the holdout: the reference the monitor's
    # importance shift is measured against.
    association: dict[str, float]


def _rankdata(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of the ranks they span), 1-based."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    avg = np.cumsum(counts) - (counts - 1) / 2.0
    return avg[inverse.reshape(-1)]


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Spearman rank correlation of `a` and `b`; None when either is constant or too short."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y):
        raise InvalidInput(f"spearman: {len(x)} values against {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = _rankdata(x), _rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / den) if den > 0 else None


def _eta(groups: np.ndarray, scores: np.ndarray) -> float | None:
    """Correlation ratio of `scores` over the categories `groups`: sqrt(between / total SS)."""
    total = float(((scores - scores.mean()) ** 2).sum())
    if total <= 0:
        return None
    _, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=scores)
    counts = np.bincount(inverse)
    between = float((counts * (sums / counts - scores.mean()) ** 2).sum())
    return float(np.sqrt(max(0.0, min(1.0, between / total))))


def association(columns: Mapping[str, np.ndarray], scores: np.ndarray,
                categorical: Collection[str] = ()) -> dict[str, float]:
    """How strongly `scores` depend on each column: |Spearman| for numerical columns, the
    correlation ratio for categorical ones (both in [0, 1]; 0 when undefined, e.g. constant).

    Args:
        columns: feature name -> values, one per row (numerical ones float, NaN for missing).
        scores: the model's score for each row.
        categorical: which columns are categorical (default none).
    """
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, float] = {}
    for name, values in columns.items():
        if name in categorical:
            value = _eta(np.asarray(values).astype(str), s) if len(s) else None
        else:
            x = np.asarray(values, dtype=np.float64)
            keep = np.isfinite(x) & np.isfinite(s)
            rho = spearman(x[keep], s[keep]) if keep.sum() >= 2 else None
            value = abs(rho) if rho is not None else None
        out[name] = float(value) if value is not None else 0.0
    return out


def shift(reference: Mapping[str, float], current: Mapping[str, float]) -> dict[str, Any]:
    """How far `current` importances moved from `reference` (see the module docstring).

    Returns:
        {"importance_shift": float | None, "importance_rank_correlation": float | None,
        "features": the names compared}: over the features both hold; the shift is None when
        either side sums to 0, the correlation None with fewer than 2 features or a constant.
    """
    names = sorted(set(reference) & set(current))
    ref = np.array([reference[n] for n in names], dtype=np.float64)
    cur = np.array([current[n] for n in names], dtype=np.float64)
    distance = None
    if names and ref.sum() > 0 and cur.sum() > 0:
        distance = float(0.5 * np.abs(ref / ref.sum() - cur / cur.sum()).sum())
    return {"importance_shift": distance,
            "importance_rank_correlation": spearman(ref, cur) if len(names) >= 2 else None,
            "features": names}


def permutation_importance(
    metric_of: Callable[[Mapping[str, np.ndarray], np.ndarray], float | None],
    columns: Mapping[str, np.ndarray], *, metric: str, repeats: int = REPEATS,
    max_rows: int = MAX_ROWS, seed: int = 0,
) -> dict[str, Any]:
    """Permutation importance of each column for any model.

    Args:
        metric_of: called with rows (the columns, one of them shuffled) and the indices of
            those rows in `columns` (their labels, which stay in place); scores the model on
            them and returns the metric's value, None when undefined.
        columns: feature name -> values, one per row (the holdout).
        metric: the metric's name; decides whether a loss is a drop or a rise.
        repeats: shuffles per feature (default 3).
        max_rows: rows used at most, drawn at random with `seed` (default 2000).
        seed: seeds the sample and the shuffles (default 0).

    Returns:
        {"method", "metric", "baseline", "rows", "repeats", "features": {name: {"importance",
        "std"}}}: importance is the mean loss of the metric (positive: the feature helps).

    Raises:
        InvalidInput: no rows, or the metric is undefined on them (e.g. AUC of one class).
    """
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    if n == 0:
        raise InvalidInput("permutation importance needs rows; the holdout is empty")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)
    cols = {k: np.asarray(v)[rows] for k, v in columns.items()}
    baseline = metric_of(cols, rows)
    if baseline is None:
        raise InvalidInput(f"{metric} is undefined on the holdout (one class only?); no "
                           "importance can be measured against it")
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
    out = {}
    size = len(cols[names[0]])
    for name in names:
        losses = []
        for _ in range(repeats):
            shuffled = dict(cols)
            shuffled[name] = cols[name][rng.permutation(size)]
            value = metric_of(shuffled, rows)
            losses.append(sign * (baseline - value) if value is not None else 0.0)
        out[name] = {"importance": float(np.mean(losses)), "std": float(np.std(losses))}
    return {"method": METHOD, "metric": metric, "baseline": float(baseline), "rows": size,
            "repeats": repeats, "features": out}


def to_public(version: ModelVersion) -> VersionImportancePublic:
    """`version`'s stored importance as a typed record.

    Raises:
        NotFound: the version was trained before importance was measured.
    """
    doc = version.importance
    if not doc:
        raise NotFound(f"{version.model_name} v{version.version} has no feature importance "
                       "(trained before it was measured); train it again to get one")
    ranked = sorted(doc["features"].items(), key=lambda kv: (-kv[1]["importance"], kv[0]))
    return VersionImportancePublic(
        model=version.model_name, version=version.version, method=doc["method"],
        metric=doc["metric"], baseline=doc.get("baseline"), rows=doc["rows"],
        repeats=doc["repeats"],
        features=[FeatureImportance(feature=name, importance=v["importance"], std=v["std"],
                                    rank=i + 1) for i, (name, v) in enumerate(ranked)],
        association=dict(doc.get("association") or {}),
    )


def version_importance(session: Session, model: str, version: int) -> VersionImportancePublic:
    """The stored global importance of `model` v`version` (what the model card shows).

    Raises:
        NotFound: no such version, or it has no importance recorded.
    """
    row = session.exec(select(ModelVersion).where(ModelVersion.model_name == model,
                                                  ModelVersion.version == version)).first()
    if row is None:
        raise NotFound(f"no version {version} of model {model!r}")
    return to_public(row)
