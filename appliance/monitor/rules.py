"""Alert rules: which window value breaches what, for how many windows, and how loudly.

Rules live in the configuration (``[[alert_rules]]`` in appliance.toml; without any, the
`DEFAULT_RULES` below apply). Each rule reads one value per window from the version that
served most of it, and breaches by an absolute comparison or relative to the version's own
evaluation metric on its holdout::

    [[alert_rules]]
    name = "accuracy"            # required, unique: alerts are deduplicated per rule
    metric = "accuracy"          # see below
    drop = 0.05                  # breach when value < the version's evaluation value - drop
    min_rows = 200               # labelled rows (realised metrics) or rows, below: no value
    consecutive = 1              # windows in a row that must breach
    severity = "critical"        # info, warning or critical
    cooldown_seconds = 3600      # after a resolution, the same rule stays quiet this long
    models = []                  # only these models (default: all)

Metrics and the alert kind each gives (retrain policies name kinds as triggers):

    drift               drifted_share, or statistic = "psi"/"ks"/... with an optional feature
                        (the largest value over features when none is named)
    accuracy            realised live metrics from labels: accuracy, precision, recall, auc,
                        log_loss, mae, rmse
    estimated_accuracy  label-free estimates: estimated_accuracy, estimated_precision,
                        estimated_recall, estimated_auc
    fairness            gaps on the policy's protected attribute (`appliance.monitor.fairness`):
                        demographic_parity_difference, disparate_impact_ratio,
                        equal_opportunity_difference (needs labels)
    importance          importance_shift, importance_rank_correlation against the version's
                        holdout importance (`appliance.monitor.importance`)
    segment             with ``segment = "COLUMN"`` (the worst of its values) or
                        ``"COLUMN=VALUE"`` (one value): positive_rate, mean_score or a realised
                        metric of the segment; min_rows counts the segment's (labelled) rows.
                        The worst value is the one the comparison trips on first: the lowest
                        for "<", "<=" and drop, the highest for ">", ">=" and rise

A comparison is one of: ``op`` (">=", ">", "<=", "<") with ``threshold``; ``drop`` (value below
the version's evaluation value by more than it); ``rise`` (above it by more than it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from appliance.errors import InvalidInput

SEVERITIES = ("info", "warning", "critical")
REALISED = ("accuracy", "precision", "recall", "auc", "log_loss", "mae", "rmse")
ESTIMATED = tuple(f"estimated_{m}" for m in ("accuracy", "precision", "recall", "auc"))
DRIFT = ("drifted_share",)
FAIRNESS = ("demographic_parity_difference", "disparate_impact_ratio",
            "equal_opportunity_difference")
IMPORTANCE = ("importance_shift", "importance_rank_correlation")
SEGMENT = ("positive_rate", "mean_score", *REALISED)
OPS = (">=", ">", "<=", "<")
_KEYS = {"name", "metric", "statistic", "feature", "op", "threshold", "drop", "rise",
         "consecutive", "severity", "cooldown_seconds", "min_rows", "models", "segment"}


@dataclasses.dataclass(frozen=True)
class AlertRule:
    """One validated rule (see the module docstring for each field)."""

    name: str
    metric: str | None = None
    statistic: str | None = None
    feature: str | None = None
    op: str | None = None
    threshold: float | None = None
    drop: float | None = None
    rise: float | None = None
    consecutive: int = 1
    severity: str = "warning"
    cooldown_seconds: float = 3600.0
    min_rows: int = 0
    models: tuple[str, ...] = ()
    segment: str | None = None

    @property
    def kind(self) -> str:
        """"drift", "accuracy" (realised metrics), "estimated_accuracy", "fairness",
        "importance" or "segment"."""
        if self.segment:
            return "segment"
        if self.metric in FAIRNESS:
            return "fairness"
        if self.metric in IMPORTANCE:
            return "importance"
        if self.statistic or self.metric in DRIFT:
            return "drift"
        if self.metric in ESTIMATED:
            return "estimated_accuracy"
        return "accuracy"

    @property
    def reference_metric(self) -> str | None:
        """The evaluation metric a relative (drop/rise) rule compares with."""
        if self.metric in ESTIMATED:
            return self.metric.removeprefix("estimated_")
        return self.metric if self.metric in REALISED else None

    def applies_to(self, model: str) -> bool:
        return not self.models or model in self.models

    def limit(self, reference: float | None) -> float | None:
        """The value at which the rule breaches (None: a relative rule without a reference)."""
        if self.op is not None:
            return self.threshold
        if reference is None:
            return None
        return reference - self.drop if self.drop is not None else reference + self.rise

    def breached(self, value: float, reference: float | None) -> bool | None:
        """Whether `value` breaches; None when it cannot be judged (no reference)."""
        limit = self.limit(reference)
        if limit is None:
            return None
        if self.op is not None:
            return {">=": value >= limit, ">": value > limit, "<=": value <= limit,
                    "<": value < limit}[self.op]
        return value < limit if self.drop is not None else value > limit

    def describe(self, reference: float | None) -> str:
        """The condition in words, e.g. ``accuracy < 0.836 (evaluation 0.886 - 0.05)``."""
        what = self.metric or (f"{self.statistic} of {self.feature}" if self.feature
                               else f"largest {self.statistic}")
        if self.segment:
            what = (f"{what} of segment {self.segment}" if "=" in self.segment
                    else f"{what} of the worst {self.segment} segment")
        if self.op is not None:
            return f"{what} {self.op} {self.threshold:g}"
        limit = self.limit(reference)
        sign = "-" if self.drop is not None else "+"
        delta = self.drop if self.drop is not None else self.rise
        cmp = "<" if self.drop is not None else ">"
        return (f"{what} {cmp} {limit:.4g} (evaluation {reference:.4g} {sign} {delta:g})"
                if limit is not None else f"{what} {cmp} evaluation {sign} {delta:g}")


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(name="drift", metric="drifted_share", op=">=", threshold=0.5, severity="warning"),
    AlertRule(name="accuracy", metric="accuracy", drop=0.05, min_rows=200, severity="critical"),
    AlertRule(name="estimated_accuracy", metric="estimated_accuracy", drop=0.05, min_rows=500,
              severity="warning"),
)


def _num(where: str, key: str, value: Any, *, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{where}: {key!r} must be a number, got {value!r}")
    if value < low:
        raise InvalidInput(f"{where}: {key!r} must be >= {low:g}, got {value!r}")
    return float(value)


def parse_rule(doc: dict[str, Any], where: str) -> AlertRule:
    """Validate one rule table; InvalidInput names `where` and the key."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table, got {doc!r}")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {unknown}; known: {sorted(_KEYS)}")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{where}: 'name' is required")
    where = f"{where} ({name!r})"
    metric, statistic = doc.get("metric"), doc.get("statistic")
    if (metric is None) == (statistic is None):
        raise InvalidInput(f"{where}: give exactly one of 'metric' or 'statistic'")
    segment = doc.get("segment")
    known = SEGMENT if segment is not None else (*DRIFT, *REALISED, *ESTIMATED, *FAIRNESS,
                                                  *IMPORTANCE)
    if segment is not None and (not isinstance(segment, str) or not segment.strip("= ")):
        raise InvalidInput(f"{where}: 'segment' names a column, or COLUMN=VALUE, got "
                           f"{segment!r}")
    if metric is not None and metric not in known:
        raise InvalidInput(f"{where}: unknown metric {metric!r}"
                           f"{' for a segment' if segment is not None else ''}; known: "
                           f"{list(known)}")
    if statistic is not None and not isinstance(statistic, str):
        raise InvalidInput(f"{where}: 'statistic' must be a statistic name, e.g. 'psi'")
    feature = doc.get("feature")
    if feature is not None and (statistic is None or not isinstance(feature, str)):
        raise InvalidInput(f"{where}: 'feature' names a feature, with 'statistic'")
    given = [k for k in ("threshold", "drop", "rise") if doc.get(k) is not None]
    if len(given) != 1:
        raise InvalidInput(f"{where}: give exactly one of 'op' with 'threshold', 'drop' or "
                           f"'rise'")
    op = doc.get("op")
    if given == ["threshold"]:
        if op not in OPS:
            raise InvalidInput(f"{where}: 'op' must be one of {list(OPS)}, got {op!r}")
    elif op is not None:
        raise InvalidInput(f"{where}: 'op' goes with 'threshold', not with {given[0]!r}")
    if given != ["threshold"] and (metric is None or metric not in REALISED):
        raise InvalidInput(f"{where}: 'drop'/'rise' compare with an evaluation metric; use "
                           f"'op' and 'threshold' for {metric or 'drift'}")
    severity = doc.get("severity", "warning")
    if severity not in SEVERITIES:
        raise InvalidInput(f"{where}: 'severity' must be one of {list(SEVERITIES)}")
    consecutive = doc.get("consecutive", 1)
    if isinstance(consecutive, bool) or not isinstance(consecutive, int) or consecutive < 1:
        raise InvalidInput(f"{where}: 'consecutive' must be a positive integer")
    min_rows = doc.get("min_rows", 0)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
        raise InvalidInput(f"{where}: 'min_rows' must be a non-negative integer")
    models = doc.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidInput(f"{where}: 'models' must be a list of model names")
    return AlertRule(
        name=name.strip(), metric=metric, statistic=statistic, feature=feature, op=op,
        threshold=_num(where, "threshold", doc["threshold"]) if given == ["threshold"] else None,
        drop=_num(where, "drop", doc["drop"], low=0) if given == ["drop"] else None,
        rise=_num(where, "rise", doc["rise"], low=0) if given == ["rise"] else None,
        consecutive=consecutive, severity=severity,
        cooldown_seconds=_num(where, "cooldown_seconds", doc.get("cooldown_seconds", 3600.0),
                              low=0),
        min_rows=min_rows, models=tuple(models),
        segment=segment.strip() if segment is not None else None,
    )


def parse_rules(docs: Any, where: str = "alert_rules") -> tuple[AlertRule, ...]:
    """Validate the ``[[alert_rules]]`` list; None or absent means `DEFAULT_RULES`."""
    if docs is None:
        return DEFAULT_RULES
    if not isinstance(docs, list):
        raise InvalidInput(f"{where} must be an array of tables ([[alert_rules]])")
    rules = tuple(parse_rule(d, f"{where}[{i}]") for i, d in enumerate(docs))
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{where}: rule name(s) {dupes} appear more than once")
    return rules


def window_value(rule: AlertRule, stats: Any, report: dict[str, Any] | None) -> float | None:
    """The value `rule` reads from one version's window statistics, or None if it has none.

    Args:
        rule: the rule.
        stats: the `WindowVersion` row (drift_status, drifted_share, rows, labelled_rows,
            metrics, estimated).
        report: that version's drift report document for the window, if one was computed.
    """
    if rule.kind == "drift":
        if stats.drift_status not in ("drifted", "ok") or stats.rows < rule.min_rows:
            return None  # "insufficient" rows are never a drift verdict
        if rule.metric == "drifted_share":
            return stats.drifted_share
        return _statistic(rule, report)
    if rule.kind == "fairness":
        doc = getattr(stats, "fairness", None) or {}
        rows = stats.labelled_rows if rule.metric == "equal_opportunity_difference" else stats.rows
        if rows < rule.min_rows:
            return None
        value = doc.get(rule.metric)
    elif rule.kind == "importance":
        if stats.rows < rule.min_rows:
            return None
        value = (getattr(stats, "importance", None) or {}).get(rule.metric)
    elif rule.kind == "segment":
        return _segment(rule, getattr(stats, "segments", None) or {})
    elif rule.kind == "estimated_accuracy":
        if stats.rows < rule.min_rows:
            return None
        value = (stats.estimated or {}).get(rule.reference_metric)
    else:
        if stats.labelled_rows < max(rule.min_rows, 1):
            return None
        value = (stats.metrics or {}).get(rule.metric)
    return float(value) if isinstance(value, (int, float)) else None


def _segment(rule: AlertRule, segments: dict[str, Any]) -> float | None:
    """The segment's value, or the worst over the column's values (see the docstring)."""
    column, _, wanted = rule.segment.partition("=")
    by_value = segments.get(column.strip()) or {}
    if wanted:
        by_value = {k: v for k, v in by_value.items() if k == wanted.strip()}
    labelled = rule.metric in REALISED
    values = []
    for entry in by_value.values():
        rows = entry.get("labelled_rows", 0) if labelled else entry.get("rows", 0)
        value = entry.get(rule.metric)
        if rows >= max(rule.min_rows, 1 if labelled else 0) and isinstance(
                value, (int, float)) and math.isfinite(value):
            values.append(float(value))
    if not values:
        return None
    low = rule.drop is not None or rule.op in ("<", "<=")
    return min(values) if low else max(values)


def _statistic(rule: AlertRule, report: dict[str, Any] | None) -> float | None:
    if not report:
        return None
    features = report.get("features", {})
    names = [rule.feature] if rule.feature else list(features)
    values = []
    for name in names:
        entry = features.get(name, {}).get(rule.statistic)
        if isinstance(entry, dict):
            value = entry.get("value", entry.get("statistic"))
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.append(float(value))
    return max(values) if values else None
