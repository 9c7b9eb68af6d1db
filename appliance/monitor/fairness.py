"""Segments and fairness: a window's metrics per value of chosen columns, and the gaps between
the groups of a protected attribute.

A model's policy names `segments` (columns whose values split each window into segments) and a
`protected_attribute`. Either may be a model feature or a column that serving only logs
(``log_columns`` in the deployment's serving options): the model never sees it. Numerical
values are grouped as text; a column with more than `MAX_VALUES` distinct values keeps its most
frequent ones and pools the rest as "other".

Per segment value: rows, the positive rate (share of rows predicted 1; binary tasks), the mean
score, and once labels land the task's live metrics (`metrics.live_metrics`).

Fairness over the groups g of the protected attribute, with positive rate
PR_g = P(prediction = 1 | g) and true positive rate TPR_g = P(prediction = 1 | label = 1, g):

    demographic_parity_difference   max_g PR_g - min_g PR_g          (0 is parity)
    disparate_impact_ratio          min_g PR_g / max_g PR_g          (1 is parity)
    four_fifths                     disparate_impact_ratio >= 0.8    (the EEOC four-fifths rule:
                                    no group selected at under 4/5 of the most selected one)
    equal_opportunity_difference    max_g TPR_g - min_g TPR_g        over groups with labelled
                                                                     positives (needs labels)

Groups with fewer than `min_group_rows` rows are reported but left out of the gaps: a handful
of rows would make any gap noise. A gap needs two groups; otherwise it is None.
`window_fairness` is the getter the model card uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlmodel import Session, col, select

from appliance.monitor.metrics import live_metrics
from appliance.store.models import PredictionWindow, WindowVersion

MAX_VALUES = 20
FOUR_FIFTHS = 0.8
MIN_GROUP_ROWS = 30
OTHER = "other"
GAPS = ("demographic_parity_difference", "disparate_impact_ratio",
        "equal_opportunity_difference")


def group_values(values: Sequence[Any] | np.ndarray, limit: int = MAX_VALUES) -> np.ndarray:
    """`values` as text, the rarest pooled as "other" beyond `limit` distinct values (missing
    values are "<missing>")."""
    text = np.array(["<missing>" if v is None or (isinstance(v, float) and np.isnan(v))
                     else str(v) for v in np.asarray(values, dtype=object)], dtype=object)
    names, counts = np.unique(text.astype(str), return_counts=True)
    if len(names) <= limit:
        return text
    keep = set(names[np.argsort(-counts, kind="stable")[: limit - 1]])
    return np.array([v if v in keep else OTHER for v in text], dtype=object)


def _rate(mask: np.ndarray, predictions: np.ndarray) -> float | None:
    n = int(mask.sum())
    return float((predictions[mask] == 1).sum() / n) if n else None


def fairness_gaps(
    groups: Sequence[Any] | np.ndarray, predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None, *, min_group_rows: int = MIN_GROUP_ROWS,
) -> dict[str, Any]:
    """The fairness gaps of binary `predictions` across `groups` (see the module docstring).

    Args:
        groups: the protected attribute's value for each row.
        predictions: 0/1 predicted classes, one per row.
        labels: 0/1 true labels, one per row, -1 where none arrived (default None: no labels;
            the equal opportunity difference is then None).
        min_group_rows: groups with fewer rows are left out of the gaps (default 30).

    Returns:
        {"groups": {value: {"rows", "positive_rate", "labelled_positives", "tpr"}},
        "demographic_parity_difference", "disparate_impact_ratio", "four_fifths",
        "equal_opportunity_difference", "min_group_rows"}.
    """
    g = group_values(groups)
    p = np.asarray(predictions, dtype=np.int64)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    out_groups: dict[str, dict[str, Any]] = {}
    rates, tprs = [], []
    for value in sorted({str(v) for v in g}):
        mask = g == value
        rows = int(mask.sum())
        rate = _rate(mask, p)
        positives = 0 if y is None else int((mask & (y == 1)).sum())
        tpr = _rate(mask & (y == 1), p) if y is not None and positives else None
        out_groups[value] = {"rows": rows, "positive_rate": rate,
                             "labelled_positives": positives, "tpr": tpr}
        if rows >= min_group_rows and rate is not None:
            rates.append(rate)
            if tpr is not None:
                tprs.append(tpr)
    dpd = float(max(rates) - min(rates)) if len(rates) >= 2 else None
    dir_ = (float(min(rates) / max(rates)) if len(rates) >= 2 and max(rates) > 0 else None)
    return {
        "groups": out_groups,
        "demographic_parity_difference": dpd,
        "disparate_impact_ratio": dir_,
        "four_fifths": None if dir_ is None else bool(dir_ >= FOUR_FIFTHS),
        "equal_opportunity_difference": float(max(tprs) - min(tprs)) if len(tprs) >= 2 else None,
        "min_group_rows": min_group_rows,
    }


def segment_stats(
    task: str, values: Sequence[Any] | np.ndarray, predictions: np.ndarray, scores: np.ndarray,
    labels: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Per value of one segment column: rows, positive_rate (binary), mean_score, and the live
    metrics of the labelled rows (labels -1 where none arrived; default None: no labels)."""
    g = group_values(values)
    p = np.asarray(predictions)
    s = np.asarray(scores, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for value in sorted({str(v) for v in g}):
        mask = g == value
        entry: dict[str, Any] = {"rows": int(mask.sum()),
                                 "mean_score": float(s[mask].mean()) if mask.any() else None}
        if task == "binary":
            entry["positive_rate"] = _rate(mask, p)
        if labels is not None:
            got = mask & (labels != -1)
            entry["labelled_rows"] = int(got.sum())
            if got.any():
                predicted = s[got] if task == "regression" else p[got]
                got_metrics = live_metrics(task, labels[got], predicted,
                                           s[got] if task == "binary" else None)
                # Its "rows" are the labelled ones, already counted as such.
                entry.update({k: v for k, v in got_metrics.items() if k != "rows"})
        out[value] = entry
    return out


class WindowFairnessPublic(BaseModel):
    """One window's fairness and segment statistics for the version that served most of it."""

    deployment: str
    window: int
    version: int
    shadow: bool
    rows: int
    labelled_rows: int
    last_ts: dt.datetime | None
    fairness: dict[str, Any] | None
    segments: dict[str, Any] | None
    importance: dict[str, Any] | None


def window_fairness(session: Session, deployment: str, *, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[WindowFairnessPublic]:
    """The fairness, segment and importance-shift statistics of each closed window of
    `deployment` (served slices only), oldest first, optionally closed in [since, until)."""
    query = (select(WindowVersion, PredictionWindow)
             .join(PredictionWindow, col(PredictionWindow.id) == col(WindowVersion.window_id))
             .where(PredictionWindow.deployment == deployment, WindowVersion.shadow == False)  # noqa: E712
             .order_by(PredictionWindow.index, WindowVersion.version))
    if since is not None:
        query = query.where(PredictionWindow.closed_at >= since)
    if until is not None:
        query = query.where(PredictionWindow.closed_at < until)
    return [WindowFairnessPublic(
        deployment=deployment, window=w.index, version=s.version, shadow=s.shadow, rows=s.rows,
        labelled_rows=s.labelled_rows, last_ts=w.last_ts, fairness=s.fairness,
        segments=s.segments, importance=s.importance,
    ) for s, w in session.exec(query).all()]
