"""Statistic names, default thresholds, drift decisions, and the report objects.

Decision rule for one feature (all thresholds overridable through `thresholds=`):

* the *test* (KS for numerical, chi-square for categorical) is significant when its p-value
  (Benjamini-Hochberg or Bonferroni adjusted across features when `correction` is set) is below
  its threshold;
* an *effect size* is material when it reaches its threshold (absolute value for the shifts);
* the feature drifted when the test is significant (or no test was asked for) and at least one
  effect size is material (or none was asked for) - at a million rows every p-value is tiny, so
  significance alone flags noise - or when its missing share moved by `missing_share` or more.

The dataset drifted when the share of drifted features reaches `dataset`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernels._errors import DriftInputError

NUMERICAL_STATS = ("ks", "wasserstein", "psi", "jensen_shannon", "hellinger", "mean_shift",
                   "std_shift")
CATEGORICAL_STATS = ("chi2", "psi", "jensen_shannon", "hellinger", "tvd", "unseen_share")
MULTIVARIATE_STATS = ("pca",)
STATS = tuple(dict.fromkeys(NUMERICAL_STATS + CATEGORICAL_STATS + MULTIVARIATE_STATS))
"""Every statistic name `compare(stats=...)` and `--stats` accept; all are computed by default."""

TESTS = {"ks": "pvalue", "chi2": "pvalue"}

DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.05,  # p-value below: significant
    "chi2": 0.05,  # p-value below: significant
    "wasserstein": 0.1,  # Wasserstein-1 / reference std at or above: material
    "psi": 0.2,  # the customary "significant shift" level of PSI
    "jensen_shannon": 0.1,  # distance, base 2, in [0, 1]
    "hellinger": 0.1,  # distance in [0, 1]
    "tvd": 0.1,  # total variation distance in [0, 1]
    "unseen_share": 0.01,  # share of window rows whose category the reference never saw
    "mean_shift": 0.2,  # |mean change| in reference stds (a "small" effect in Cohen's terms)
    "std_shift": 0.2,  # |window std / reference std - 1|
    "missing_share": 0.05,  # |change of the missing share| (a data-quality drift on its own)
    "pca": 0.1,  # relative increase of the mean reconstruction error (and z-score >= 3)
    "dataset": 0.5,  # share of drifted features at or above which the dataset drifted
}
"""Default thresholds, keyed by statistic name (plus "missing_share" and "dataset")."""

CORRECTIONS = ("bh", "bonferroni")
_PCA_MIN_ZSCORE = 3.0


def parse_stats(stats: Sequence[str] | str | None) -> frozenset[str]:
    """Validate statistic names (a sequence or a comma-separated string); None means all."""
    if stats is None:
        return frozenset(STATS)
    if isinstance(stats, str):
        stats = [s for s in stats.split(",")]
    names = [s.strip().lower() for s in stats if s.strip()]
    if not names:
        raise DriftInputError(f"no statistic named; choose from {', '.join(STATS)}")
    for s in names:
        if s not in STATS:
            raise DriftInputError(f"unknown statistic {s!r}; choose from {', '.join(STATS)}")
    return frozenset(names)


def merge_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    """Defaults overridden by `thresholds`; unknown keys or non-numbers are errors."""
    out = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in out:
            raise DriftInputError(
                f"unknown threshold {key!r}; choose from {', '.join(DEFAULT_THRESHOLDS)}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise DriftInputError(f"threshold {key!r} must be a number, got {value!r}")
        out[key] = float(value)
    return out


def adjust_pvalues(pvalues: Sequence[float], correction: str | None) -> list[float]:
    """Adjusted p-values: Benjamini-Hochberg ("bh"), Bonferroni, or unchanged (None)."""
    m = len(pvalues)
    if correction is None or m == 0:
        return list(pvalues)
    if correction == "bonferroni":
        return [min(1.0, p * m) for p in pvalues]
    if correction != "bh":
        raise DriftInputError(
            f"unknown correction {correction!r}; choose from {', '.join(CORRECTIONS)} or None"
        )
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 1.0
    # Step-up: walk from the largest p-value down, keeping the running minimum of p*m/rank.
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        # max(): p*m/m can round below p; an adjusted p-value is never below the raw one.
        adjusted[i] = max(min(running, 1.0), pvalues[i])
    return adjusted


def _effect_drifted(name: str, entry: dict, thr: float) -> bool:
    v = entry["normed"] if name == "wasserstein" else entry["value"]
    if v is None or math.isnan(v):
        return False
    if name in ("mean_shift", "std_shift"):
        v = abs(v)
    return v >= thr


def decide_feature(stats: dict[str, dict], missing: dict, thresholds: Mapping[str, float]) -> bool:
    """Set each statistic's "drifted" flag in place and return the feature's verdict."""
    significant: bool | None = None
    material: bool | None = None
    for name, entry in stats.items():
        if name in TESTS:
            p = entry.get("pvalue_adjusted", entry["pvalue"])
            entry["drifted"] = bool(p < thresholds[name])
            significant = bool(significant) or entry["drifted"]
        else:
            entry["drifted"] = _effect_drifted(name, entry, thresholds[name])
            material = bool(material) or entry["drifted"]
    missing["drifted"] = bool(abs(missing["change"]) >= thresholds["missing_share"])
    core = (significant is not False) and (material is not False)
    if significant is None and material is None:
        core = False
    return bool(core or missing["drifted"])


def decide_pca(entry: dict, thresholds: Mapping[str, float]) -> bool:
    """PCA drift: relative error increase >= threshold and z-score >= 3."""
    entry["drifted"] = bool(
        entry["ratio"] - 1.0 >= thresholds["pca"] and entry["zscore"] >= _PCA_MIN_ZSCORE
    )
    return entry["drifted"]


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity: non-finite floats are reported as null.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass
class FeatureDrift:
    """The statistics of one feature and whether it drifted."""

    name: str
    kind: str  # "numerical" | "categorical"
    drifted: bool
    missing_share: dict[str, Any]  # {"reference", "current", "change", "drifted"}
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    infinite_share: dict[str, Any] | None = None  # numerical only

    def __getitem__(self, stat: str) -> dict[str, Any]:
        return self.stats[stat]

    def to_dict(self) -> dict[str, Any]:
        """The feature's JSON object (non-finite floats as null)."""
        out: dict[str, Any] = {
            "kind": self.kind, "drifted": self.drifted, "missing_share": self.missing_share,
        }
        if self.infinite_share is not None:
            out["infinite_share"] = self.infinite_share
        out.update(self.stats)
        return _clean(out)


@dataclass
class DriftReport:
    """Drift of one window against a reference profile, feature by feature and overall."""

    rows: dict[str, int]  # {"reference": n, "current": m}
    features: dict[str, FeatureDrift]
    drifted_share: float
    dataset_drifted: bool
    multivariate: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: tuple[str, ...] = ()
    correction: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    backend: str = "numpy"

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [n for n, f in self.features.items() if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """The report as issue 3's JSON shape; "multivariate" appears when PCA was computed."""
        out: dict[str, Any] = {
            "rows": dict(self.rows),
            "features": {n: f.to_dict() for n, f in self.features.items()},
            "drifted_share": self.drifted_share,
            "dataset_drifted": self.dataset_drifted,
        }
        if self.multivariate:
            out["multivariate"] = _clean(self.multivariate)
        return out
