"""Live model metrics: a window's predictions scored against the labels that arrived for them.

Binary tasks get accuracy, precision and recall of class 1, ROC AUC and log loss (the last two
from the scores); multiclass tasks get accuracy and macro-averaged precision and recall;
regression gets MAE and RMSE. `evaluation_metrics` is what training and the promotion gate
record for each task on a holdout (binary: accuracy, auc, log_loss; multiclass: accuracy,
macro_f1, log_loss; regression: rmse, mae, r2), and `MAIN_METRIC` names each task's headline
one. ROC AUC is the Mann-Whitney statistic: the share of (positive,
negative) pairs that the scores put in the right order, a tie counting half. It is computed from
average ranks in O(n log n) instead of over all n1 * n0 pairs.

Every value is a plain int or float, or None where the metric is undefined (no rows, no predicted
or actual positives, one class only), never a NumPy scalar or NaN: the results go straight into
JSON and into comparisons (`better`) that must not meet NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from appliance.errors import InvalidInput

TASKS = ("binary", "multiclass", "regression")
HIGHER_IS_BETTER = frozenset({"accuracy", "auc", "precision", "recall", "macro_f1", "r2"})
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
# The metric a task is judged by first (the gate's no-regression check, comparisons).
MAIN_METRIC = {"binary": "auc", "multiclass": "macro_f1", "regression": "rmse"}
# log(1e-7) ~ -16: one confidently wrong row costs a lot, but never infinity.
_CLIP = 1e-7


def _vector(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be a 1-D array of rows, got shape {arr.shape}")
    return arr


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> tuple[Any, int]:
    """(value, row) of the first flagged row, the value as a plain Python object for messages."""
    row = int(np.argmax(bad))
    return arr[row : row + 1].tolist()[0], row


def _binary_labels(name: str, values: Any) -> np.ndarray:
    """`values` as an int64 array of 0/1, or InvalidInput naming the first other value."""
    arr = _vector(name, values)
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        value, row = _first_bad(arr, bad)
        raise InvalidInput(
            f"{name} must hold 0/1 (binary task), got {value!r} at row {row}; "
            f"is the task multiclass or regression?"
        )
    return arr.astype(np.int64)


def _finite(name: str, values: Any) -> np.ndarray:
    """`values` as a float64 array with no NaN or infinity."""
    arr = _vector(name, values)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be numbers, got dtype {arr.dtype}") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        value, row = _first_bad(arr, bad)
        raise InvalidInput(
            f"{name} must be finite, got {value!r} at row {row}; a model output or a join "
            f"produced a missing value?"
        )
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    (first, a), *rest = arrays.items()
    for name, b in rest:
        if len(b) != len(a):
            raise InvalidInput(f"{first} has {len(a)} rows but {name} has {len(b)}")
    return len(a)


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """`roc_auc` on validated arrays."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Tied scores share the mean of the 1-based ranks they span, which counts each tied
    # (positive, negative) pair as half a win.
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(avg_rank[inverse.reshape(-1)][y == 1].sum())
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def roc_auc(y: Any, scores: Any) -> float | None:
    """ROC AUC: the Mann-Whitney rank statistic of `scores`, ties counted half.

    Args:
        y: 0/1 labels, one per row.
        scores: finite scores, higher meaning more likely 1 (probabilities or any monotone
            transform of them: only their order matters).

    Returns:
        A float in [0, 1], or None when `y` holds one class only (or no rows).

    Raises:
        InvalidInput: `y` holds something other than 0/1, a score is not finite, or the lengths
            differ.
    """
    y_arr, s = _binary_labels("y", y), _finite("scores", scores)
    _same_length(y=y_arr, scores=s)
    return _auc(y_arr, s)


def _log_loss(y: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(scores, _CLIP, 1 - _CLIP)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def binary_metrics(y_true: Any, y_pred: Any, scores: Any = None) -> dict[str, Any]:
    """Metrics of a binary classifier, class 1 being the positive class.

    Args:
        y_true: 0/1 labels, one per row.
        y_pred: 0/1 predicted classes, one per row.
        scores: probabilities of class 1, one per row, for `auc` and `log_loss` (default None:
            both come back None). Values outside [0, 1] are clipped for the log loss.

    Returns:
        {"rows", "correct", "accuracy", "precision", "recall", "auc", "log_loss"}: `precision`
        is None without predicted positives, `recall` None without actual positives, `auc` None
        without scores or with one class, `log_loss` (mean binary cross-entropy, scores clipped
        to [1e-7, 1 - 1e-7]) None without scores; `accuracy` is None only with no rows.

    Raises:
        InvalidInput: labels or predictions other than 0/1, a non-finite score, or lengths that
            differ.
    """
    t, p = _binary_labels("y_true", y_true), _binary_labels("y_pred", y_pred)
    n = _same_length(y_true=t, y_pred=p)
    s = None
    if scores is not None:
        s = _finite("scores", scores)
        _same_length(y_true=t, scores=s)
    correct = int((t == p).sum())
    true_pos = int((t & p).sum())
    return {
        "rows": n,
        "correct": correct,
        "accuracy": _ratio(correct, n),
        "precision": _ratio(true_pos, int(p.sum())),
        "recall": _ratio(true_pos, int(t.sum())),
        "auc": None if s is None else _auc(t, s),
        "log_loss": None if s is None or n == 0 else _log_loss(t, s),
    }


def multiclass_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Accuracy and macro-averaged precision and recall of a multiclass classifier.

    The macro average runs over every class seen in `y_true` or `y_pred`. A class that is never
    predicted contributes precision 0, and a class that is predicted but never true contributes
    recall 0 (scikit-learn's `zero_division=0`): a model that ignores a class is penalised
    rather than having that class silently dropped from the average.

    Args:
        y_true: true class labels, one per row (integers or strings).
        y_pred: predicted class labels, one per row, of the same kind as `y_true`.

    Returns:
        {"rows", "correct", "accuracy", "precision", "recall"}; the last three are None with no
        rows.

    Raises:
        InvalidInput: the lengths differ, one side holds numbers and the other strings, or a
            numeric label is not finite.
    """
    t, p = _vector("y_true", y_true), _vector("y_pred", y_pred)
    n = _same_length(y_true=t, y_pred=p)
    numeric = [a.dtype.kind in "biuf" for a in (t, p)]
    if n and numeric[0] != numeric[1]:
        raise InvalidInput(
            f"y_true holds {t.dtype} labels but y_pred holds {p.dtype}; both must be numbers or "
            f"both strings, or no prediction could ever match"
        )
    if n == 0:
        return {"rows": 0, "correct": 0, "accuracy": None, "precision": None, "recall": None}
    if numeric[0]:
        _finite("y_true", t)
        _finite("y_pred", p)
    classes, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
    inverse = inverse.reshape(-1)
    ti, pi = inverse[:n], inverse[n:]
    k = len(classes)
    hit = ti == pi
    true_pos = np.bincount(ti[hit], minlength=k)
    predicted = np.bincount(pi, minlength=k)
    actual = np.bincount(ti, minlength=k)
    precision = np.where(predicted > 0, true_pos / np.maximum(predicted, 1), 0.0)
    recall = np.where(actual > 0, true_pos / np.maximum(actual, 1), 0.0)
    correct = int(hit.sum())
    return {
        "rows": n,
        "correct": correct,
        "accuracy": correct / n,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Mean absolute error and root mean squared error of a regressor.

    Args:
        y_true: true values, one per row.
        y_pred: predicted values, one per row.

    Returns:
        {"rows", "mae", "rmse"}; `mae` and `rmse` are None with no rows.

    Raises:
        InvalidInput: a value is not a finite number, or the lengths differ.
    """
    t, p = _finite("y_true", y_true), _finite("y_pred", y_pred)
    n = _same_length(y_true=t, y_pred=p)
    if n == 0:
        return {"rows": 0, "mae": None, "rmse": None}
    err = p - t
    return {
        "rows": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err * err))),
    }


def live_metrics(task: str, y_true: Any, y_pred: Any, scores: Any = None) -> dict[str, Any]:
    """The metrics of `task` for one window of labelled predictions.

    Args:
        task: "binary", "multiclass" or "regression".
        y_true: true labels or values, one per row.
        y_pred: predicted classes or values, one per row.
        scores: probabilities of class 1 for a binary task (default None); ignored for the other
            tasks, whose windows may carry a score column that means something else.

    Returns:
        {"rows": 0} when there are no rows; otherwise what `binary_metrics`,
        `multiclass_metrics` or `regression_metrics` returns.

    Raises:
        InvalidInput: an unknown task, or input that the task's function rejects.
    """
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if len(_vector("y_true", y_true)) == 0 and len(_vector("y_pred", y_pred)) == 0:
        return {"rows": 0}
    if task == "binary":
        return binary_metrics(y_true, y_pred, scores)
    if task == "multiclass":
        return multiclass_metrics(y_true, y_pred)
    return regression_metrics(y_true, y_pred)


def evaluation_metrics(
    task: str, y_true: Any, outputs: Any, *, threshold: float = 0.5
) -> dict[str, Any]:
    """The holdout metrics of a model of `task`: the one place they are computed.

    Args:
        task: "binary", "multiclass" or "regression".
        y_true: binary: 0/1 labels; multiclass: class indices (-1 for a class the model never
            saw, which counts as wrong); regression: true values.
        outputs: binary: probabilities of class 1; multiclass: the (rows, classes) matrix of
            probabilities; regression: predicted values.
        threshold: binary only: the score at or above which the class is 1 (default 0.5).

    Returns:
        binary: {"accuracy", "auc", "log_loss", "rows"}; multiclass: {"accuracy", "macro_f1",
        "log_loss", "rows"} (macro F1 over the classes seen in the labels or predictions; log
        loss is the mean cross-entropy, probabilities clipped to [1e-7, 1]); regression:
        {"rmse", "mae", "r2", "rows"} (r2 None when the labels are constant).

    Raises:
        InvalidInput: an unknown task, no rows, or input the task cannot have.
    """
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task == "binary":
        scores = _finite("scores", outputs)
        m = binary_metrics(y_true, (scores >= threshold).astype(np.int64), scores)
        return {key: m[key] for key in ("accuracy", "auc", "log_loss", "rows")}
    if task == "regression":
        t, p = _finite("y_true", y_true), _finite("y_pred", outputs)
        n = _same_length(y_true=t, y_pred=p)
        m = regression_metrics(t, p)
        total = float(np.sum((t - t.mean()) ** 2)) if n else 0.0
        r2 = 1.0 - float(np.sum((p - t) ** 2)) / total if total > 0 else None
        return {"rmse": m["rmse"], "mae": m["mae"], "r2": r2, "rows": n}
    t = _vector("y_true", y_true).astype(np.int64)
    proba = np.asarray(outputs, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(t):
        raise InvalidInput(
            f"multiclass outputs must be a (rows, classes) matrix for {len(t)} rows, got shape "
            f"{proba.shape}"
        )
    n = len(t)
    if n == 0:
        return {"accuracy": None, "macro_f1": None, "log_loss": None, "rows": 0}
    pred = proba.argmax(axis=1)
    seen = np.unique(np.concatenate([t[t >= 0], pred]))
    f1 = []
    for c in seen:
        tp = int(np.sum((pred == c) & (t == c)))
        both = int(np.sum(pred == c)) + int(np.sum(t == c))
        f1.append(2 * tp / both if both else 0.0)
    # A class the model never saw has no probability: the clip floor, the worst it can do.
    p_true = np.where(t >= 0, proba[np.arange(n), np.clip(t, 0, None)], 0.0)
    return {
        "accuracy": float(np.mean(pred == t)),
        "macro_f1": float(np.mean(f1)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, _CLIP, 1.0)))),
        "rows": n,
    }


def _undefined(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def better(metric: str, a: float | None, b: float | None) -> bool:
    """Whether value `a` of `metric` is at least as good as value `b`.

    An undefined value (None, or NaN from elsewhere) is worse than any number, so a challenger
    whose metric could not be computed never beats a champion whose metric could; two undefined
    values tie.

    Args:
        metric: a key of HIGHER_IS_BETTER or LOWER_IS_BETTER, e.g. "accuracy" or "log_loss".
        a: the candidate's value.
        b: the value to compare against.

    Raises:
        InvalidInput: `metric` is in neither set (e.g. "rows", which is not a quality).
    """
    if metric not in HIGHER_IS_BETTER and metric not in LOWER_IS_BETTER:
        known = sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER)
        raise InvalidInput(f"no ordering known for metric {metric!r}; known: {known}")
    if _undefined(a) or _undefined(b):
        return _undefined(b)
    return a >= b if metric in HIGHER_IS_BETTER else a <= b
