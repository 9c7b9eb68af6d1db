"""Label-free performance estimation for binary classifiers (CBPE, as NannyML does it).

Labels arrive late or never, but every prediction carries a score. If the score is a calibrated
probability p = P(y=1 | x), each row is an expected 0.6 of a true positive and 0.4 of a false
negative, say, so the expected confusion matrix of a window, and from it accuracy, precision,
recall, ROC AUC and log loss, follow from the scores alone (`estimate_binary`).

The scores must first be calibrated: `check_calibration` runs on the reference holdout at
training time, compares the expected calibration error of the raw scores with that of an isotonic
map (pool-adjacent-violators, `isotonic_fit`) measured out of sample by 2-fold cross-fitting, and
keeps the map only when it helps. The result is a `Calibration` stored with the model.

What CBPE assumes: P(y | x) is the same in the window as in the reference data, i.e. any change
is covariate shift (the inputs move, the labelling rule does not), and the calibration learned on
the reference holds over the region of inputs the window occupies. It is then right even when
accuracy moves a lot, because the move is visible in the scores. It is wrong under concept shift
(the same inputs now get different labels): the scores do not change, so neither does the
estimate, however badly the model really does. It is also unreliable when the window lies where
the reference had few rows, because the calibration there is an extrapolation. Realised metrics
from labels (`appliance.monitor.metrics`) remain the ground truth whenever labels exist.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from typing import Any

import numpy as np

from appliance.errors import InvalidInput
from appliance.monitor.metrics import _binary_labels, _finite, _ratio, _same_length

METHODS = ("identity", "isotonic")
_FIELDS = ("method", "x", "y", "ece_raw", "ece_calibrated", "rows")
# Same clip as the realised log loss, so estimate and realisation are comparable.
_CLIP = 1e-7


def _probabilities(name: str, values: Any) -> np.ndarray:
    arr = _finite(name, values)
    bad = (arr < 0.0) | (arr > 1.0)
    if bad.any():
        row = int(np.argmax(bad))
        raise InvalidInput(
            f"{name} must be probabilities in [0, 1], got {arr[row].item()!r} at row {row}; "
            f"are these logits rather than probabilities?"
        )
    return arr


def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InvalidInput(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _ece(p: np.ndarray, y: np.ndarray, bins: int) -> float:
    # p == 1.0 belongs to the last bin, not to a bin of its own past the end.
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    gap = np.bincount(idx, weights=y, minlength=bins) - np.bincount(idx, weights=p, minlength=bins)
    # sum over bins of (n_b / n) * |mean(y)_b - mean(p)_b| = sum |sum(y)_b - sum(p)_b| / n
    return float(np.abs(gap[count > 0]).sum() / len(p))


def _ece_noise(p: np.ndarray, bins: int) -> float:
    """The ECE that scores `p` would show by chance alone if they were perfectly calibrated.

    With y ~ Bernoulli(p), a bin's gap sum(y) - sum(p) has mean 0 and variance sum(p (1 - p)),
    and E|N(0, v)| = sqrt(2 v / pi); summed over bins and divided by n as in `_ece`.
    """
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    var = np.bincount(idx, weights=p * (1.0 - p), minlength=bins)
    return float(np.sqrt(2.0 * var / math.pi).sum() / len(p))


def expected_calibration_error(p: Any, y: Any, bins: int = 10) -> float:
    """Expected calibration error: how far predicted probabilities are from observed rates.

    Rows fall into `bins` equal-width bins over [0, 1] by `p`; the result is the mean over bins
    of |mean(y) - mean(p)| within the bin, each bin weighted by its share of rows.

    Args:
        p: predicted probabilities of class 1, in [0, 1].
        y: 0/1 labels, one per row.
        bins: number of bins (default 10).

    Raises:
        InvalidInput: no rows, lengths that differ, labels other than 0/1, a probability outside
            [0, 1] or not finite, or `bins` not a positive integer.
    """
    p_arr, y_arr = _probabilities("p", p), _binary_labels("y", y)
    if _same_length(p=p_arr, y=y_arr) == 0:
        raise InvalidInput("cannot compute a calibration error on no rows")
    return _ece(p_arr, y_arr.astype(np.float64), _check_bins(bins))


def _pav(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`isotonic_fit` on validated, non-empty arrays."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    # Tied x must get one fitted value, so each group of ties enters PAV as a single weighted
    # point; on sorted data the groups are runs, found in O(n).
    starts = np.concatenate(([0], np.flatnonzero(np.diff(xs)) + 1))
    ux = xs[starts]
    sums = np.add.reduceat(ys, starts).tolist()
    weights = np.diff(np.append(starts, len(xs))).astype(np.float64).tolist()

    # Stack of blocks (sum, weight, index of the block's first point). Each point is pushed
    # once and popped at most once, so the loop is O(n). Equal neighbours merge too, so every
    # block is a maximal constant run and the knots stay few.
    b_sum: list[float] = []
    b_weight: list[float] = []
    b_first: list[int] = []
    for i, (s, w) in enumerate(zip(sums, weights, strict=True)):
        first = i
        while b_sum and b_sum[-1] * w >= s * b_weight[-1]:  # previous mean >= this mean
            s += b_sum.pop()
            w += b_weight.pop()
            first = b_first.pop()
        b_sum.append(s)
        b_weight.append(w)
        b_first.append(first)

    value = np.asarray(b_sum) / np.asarray(b_weight)
    first_idx = np.asarray(b_first, dtype=np.int64)
    last_idx = np.append(first_idx[1:], len(ux)) - 1
    # A block over several distinct x needs a knot at both ends to stay flat under np.interp;
    # one over a single x needs one.
    two = last_idx > first_idx
    knot_idx = np.repeat(first_idx, 1 + two)
    knot_idx[np.cumsum(1 + two)[two] - 1] = last_idx[two]
    return ux[knot_idx], np.repeat(value, 1 + two)


def isotonic_fit(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares non-decreasing fit of `y` on `x` by pool-adjacent-violators.

    Points with equal `x` are pooled first (they get one fitted value, their mean); then
    adjacent blocks whose means decrease are merged into their weighted mean until none do.
    O(n) after the sort.

    Args:
        x: finite values to sort by (e.g. model scores).
        y: finite targets, one per row (e.g. 0/1 labels).

    Returns:
        (xs, ys): strictly increasing knots and non-decreasing fitted values. The fit at a
        point is ``np.interp(point, xs, ys)``: flat within a block, linear between blocks,
        and clamped to the end values outside [xs[0], xs[-1]].

    Raises:
        InvalidInput: no rows, lengths that differ, or a value that is not finite.
    """
    x_arr, y_arr = _finite("x", x), _finite("y", y)
    if _same_length(x=x_arr, y=y_arr) == 0:
        raise InvalidInput("cannot fit an isotonic map to no rows")
    return _pav(x_arr, y_arr)


@dataclasses.dataclass
class Calibration:
    """A map from a model's raw scores to calibrated probabilities, and the evidence for it.

    Args:
        method: "identity" (scores are used as they are) or "isotonic" (`x`, `y` are knots).
        x: knots: raw scores, strictly increasing; empty for identity.
        y: knots: calibrated probabilities at `x`, non-decreasing; empty for identity.
        ece_raw: expected calibration error of the raw scores on the reference rows.
        ece_calibrated: expected calibration error of the isotonic map, cross-fitted (out of
            sample), recorded whichever method was chosen so the choice can be checked.
        rows: reference rows the calibration was checked on.
    """

    method: str
    x: list[float]
    y: list[float]
    ece_raw: float
    ece_calibrated: float
    rows: int

    def apply(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of class 1 for `scores` (identity returns the scores)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "identity":
            return s
        return np.clip(np.interp(s, self.x, self.y), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able document that `Calibration.from_dict` reads back."""
        return {
            "method": self.method,
            "x": [float(v) for v in self.x],
            "y": [float(v) for v in self.y],
            "ece_raw": float(self.ece_raw),
            "ece_calibrated": float(self.ece_calibrated),
            "rows": int(self.rows),
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Calibration:
        """Read a document written by `to_dict`.

        Raises:
            InvalidInput: `doc` is not a mapping with exactly the fields of `to_dict`, or a
                field has the wrong type or an impossible value (the message names it).
        """
        if not isinstance(doc, dict):
            raise InvalidInput(f"a calibration must be a mapping, got {type(doc).__name__}")
        missing = [f for f in _FIELDS if f not in doc]
        unknown = sorted(set(doc) - set(_FIELDS), key=str)
        if missing or unknown:
            raise InvalidInput(
                f"calibration document has missing field(s) {missing} and unknown field(s) "
                f"{unknown}; expected {list(_FIELDS)}"
            )
        method = doc["method"]
        if method not in METHODS:
            raise InvalidInput(f"calibration method must be one of {METHODS}, got {method!r}")
        knots = {name: _knots(name, doc[name]) for name in ("x", "y")}
        x, y = knots["x"], knots["y"]
        if len(x) != len(y):
            raise InvalidInput(f"calibration has {len(x)} x knots but {len(y)} y knots")
        if method == "identity" and x:
            raise InvalidInput(f"an identity calibration has no knots, got {len(x)}")
        if method == "isotonic":
            if not x:
                raise InvalidInput("an isotonic calibration needs at least one knot, got none")
            if any(b <= a for a, b in itertools.pairwise(x)):
                raise InvalidInput("calibration x knots must be strictly increasing")
            if any(b < a for a, b in itertools.pairwise(y)) or y[0] < 0.0 or y[-1] > 1.0:
                raise InvalidInput("calibration y knots must be non-decreasing within [0, 1]")
        ece = {name: _number(name, doc[name]) for name in ("ece_raw", "ece_calibrated")}
        rows = doc["rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise InvalidInput(f"calibration rows must be a non-negative integer, got {rows!r}")
        return cls(method, x, y, ece["ece_raw"], ece["ece_calibrated"], rows)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"calibration {name} must be a finite number, got {value!r}")
    return float(value)


def _knots(name: str, value: Any) -> list[float]:
    if not isinstance(value, list):
        raise InvalidInput(f"calibration {name} must be a list of numbers, got {value!r}")
    return [_number(f"{name} knot", v) for v in value]


def check_calibration(scores: Any, y: Any, *, bins: int = 10, seed: int = 0) -> Calibration:
    """Choose how to calibrate a model's scores, from its reference holdout at training time.

    The isotonic map is judged out of sample: the rows are split in two halves (seeded), a map
    fitted on each half scores the other, and the ECE of those predictions is compared with the
    ECE of the raw scores. An in-sample ECE would favour isotonic every time, since PAV fits
    its own bins almost exactly. Isotonic, refitted on all rows, is chosen only when its
    cross-fitted ECE is lower than the raw ECE by more than the ECE that the raw scores would
    show by chance if they were perfectly calibrated (it shrinks as 1/sqrt(rows): about 0.013
    on 5,000 rows of a typical model); otherwise the raw scores are kept (identity). Without
    that margin a calibrated model is recalibrated most of the time (about 6 runs in 10 in
    simulation): the cross-fitted ECE of a step function's few distinct values runs a little
    below that of continuous scores, so "lower" alone is noise, and a needless map estimated
    from the holdout only adds its own error to every estimate.

    Args:
        scores: the model's probabilities of class 1 on the holdout, in [0, 1].
        y: the holdout's 0/1 labels.
        bins: bins of the expected calibration error (default 10).
        seed: seeds the split into halves (default 0).

    Raises:
        InvalidInput: no rows, lengths that differ, labels other than 0/1, scores outside
            [0, 1] or not finite, or `bins` not a positive integer.
    """
    s, labels = _probabilities("scores", scores), _binary_labels("y", y)
    n = _same_length(scores=s, y=labels)
    if n == 0:
        raise InvalidInput("cannot check the calibration of scores on no rows")
    bins = _check_bins(bins)
    t = labels.astype(np.float64)
    ece_raw = _ece(s, t, bins)
    if n < 2:
        # Two halves need two rows; one row cannot show that a map helps.
        return Calibration("identity", [], [], ece_raw, ece_raw, n)

    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    crossed = np.empty(n)
    for fit_on, score_on in (halves, halves[::-1]):
        xs, ys = _pav(s[fit_on], t[fit_on])
        crossed[score_on] = np.interp(s[score_on], xs, ys)
    ece_iso = _ece(crossed, t, bins)
    if ece_raw - ece_iso > _ece_noise(s, bins):
        xs, ys = _pav(s, t)
        return Calibration("isotonic", xs.tolist(), ys.tolist(), ece_raw, ece_iso, n)
    return Calibration("identity", [], [], ece_raw, ece_iso, n)


def _expected_auc(scores: np.ndarray, p: np.ndarray) -> float | None:
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], p[order]
    neg = 1.0 - pos
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0.0 or total_neg <= 0.0:
        return None
    # Tied scores are one threshold, so one point of the curve: the trapezoid over the step
    # counts a tied (positive, negative) pair as half, as the realised AUC does. (Tied rows
    # share p, so walking them one by one would trace the same segment; grouping keeps every
    # point of the curve at a threshold the model could really use.)
    ends = np.append(np.flatnonzero(np.diff(s)), len(s) - 1)
    tpr = np.concatenate(([0.0], np.cumsum(pos)[ends] / total_pos))
    fpr = np.concatenate(([0.0], np.cumsum(neg)[ends] / total_neg))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def estimate_binary(scores: Any, *, threshold: float, calibration: Calibration) -> dict[str, Any]:
    """Estimate a window's binary metrics from its scores alone, before labels exist.

    With p = calibration.apply(scores) read as P(y=1) of each row, the expected confusion
    matrix gives the estimates; see the module docstring for when they can be trusted.

    Args:
        scores: the model's raw probabilities of class 1 for the window's rows, in [0, 1].
        threshold: the model's decision threshold: a row is predicted 1 when its score is at
            least `threshold`.
        calibration: the model's `Calibration` (from `check_calibration` at training time).

    Returns:
        {"rows", "accuracy", "precision", "recall", "auc", "log_loss"}: accuracy is the mean of
        p over rows predicted 1 and of 1 - p over the rest; precision is E[TP] / predicted
        positives (None with none predicted); recall is E[TP] / sum(p) (None when sum(p) is 0);
        auc is the area under the expected ROC curve, which ranks rows by score and counts each
        as p of a positive and 1 - p of a negative (None when either total is 0); log_loss is
        the expected cross-entropy of the raw scores, clipped to [1e-7, 1 - 1e-7], under p.
        With no rows every estimate is None.

    Raises:
        InvalidInput: a score outside [0, 1] or not finite, or a threshold that is not a finite
            number.
    """
    s = _probabilities("scores", scores)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
    ):
        raise InvalidInput(f"threshold must be a finite number, got {threshold!r}")
    n = len(s)
    if n == 0:
        keys = ("accuracy", "precision", "recall", "auc", "log_loss")
        return {"rows": 0, **dict.fromkeys(keys)}
    p = np.clip(calibration.apply(s), 0.0, 1.0)
    predicted = s >= threshold
    true_pos = float(p[predicted].sum())
    clipped = np.clip(s, _CLIP, 1 - _CLIP)
    return {
        "rows": n,
        "accuracy": float(np.mean(np.where(predicted, p, 1.0 - p))),
        "precision": _ratio(true_pos, int(predicted.sum())),
        "recall": _ratio(true_pos, float(p.sum())),
        "auc": _expected_auc(s, p),
        "log_loss": float(-np.mean(p * np.log(clipped) + (1.0 - p) * np.log1p(-clipped))),
    }
