"""The promotion gate's checks as configured in a training spec's ``[gate]`` table, and the
judgement of a candidate's measurements against them.

    [gate.thresholds]              # absolute limits on the candidate's holdout metrics
    auc = { min = 0.8 }
    log_loss = { max = 0.5 }
    [gate.tolerance]               # how far the candidate may trail the alias holder, per metric
    auc = 0.01                     #   (the direction of "worse" comes from `direction`)
    [[gate.segments]]              # a minimum per value of a categorical feature
    column = "employment"
    metric = "accuracy"
    min = 0.7                      #   (or max = ... for a lower-is-better metric)
    min_rows = 50                  #   smaller segments are reported, not judged (default 30)
    functions = ["my_checks:no_segment_collapses"]   # user tests, imported at gate time

A spec without ``[gate]`` gets its task's `default_checks`. The checks are
stored with the model version at registration, so a version is always judged by the gate it was
trained with. Metric names are checked against what the evaluation produced when the gate runs,
not here: which metrics exist depends on the task. Only a tolerance needs a metric whose
direction is known, because "no worse" needs one.

This module is pure: measuring (scoring segments, calling user functions) is the pipeline's job
(`appliance.pipelines.gating`); `judge` turns measurements into one verdict entry per check.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from sqlmodel import Field, SQLModel

from appliance.errors import InvalidInput
from appliance.monitor.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER

# Which way is better, per metric name: the only metric knowledge the gate holds. Other metric
# names may still have thresholds and segment limits; they cannot have a tolerance.
HIGHER = frozenset(HIGHER_IS_BETTER | {"accuracy", "auc", "r2", "macro_f1", "f1",
                                       "macro_precision", "macro_recall", "balanced_accuracy"})
LOWER = frozenset(LOWER_IS_BETTER | {"log_loss", "rmse", "mae", "mse", "brier"})
DEFAULT_MIN_ROWS = 30
_FUNCTION = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_METRIC = re.compile(r"^[A-Za-z_][\w]*$")


def direction(metric: str) -> str | None:
    """"higher" or "lower" (which way `metric` improves), or None for a name not in the table."""
    if metric in HIGHER:
        return "higher"
    if metric in LOWER:
        return "lower"
    return None


class Limit(SQLModel):
    """Bounds on one metric: at least `min`, at most `max` (either may be absent)."""

    min: float | None = None
    max: float | None = None


class SegmentCheck(SQLModel):
    """A limit on `metric` within each value of the categorical feature `column`."""

    column: str
    metric: str
    min: float | None = None
    max: float | None = None
    min_rows: int = DEFAULT_MIN_ROWS


class GateChecks(SQLModel):
    """The checks a candidate must pass; what a version stores as its gate."""

    thresholds: dict[str, Limit] = Field(default_factory=dict)
    tolerance: dict[str, float] = Field(default_factory=dict)
    segments: list[SegmentCheck] = Field(default_factory=list)
    functions: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


# Each task's gate when the spec has no [gate]: floors on scale-free metrics (a regressor's
# r2 >= 0 beats always predicting the mean), and no worse than the alias holder by more than
# 0.01 on them (r2 rather than rmse for a regressor: an error in label units has no natural
# tolerance).
TASK_DEFAULTS: dict[str, GateChecks] = {
    "binary": GateChecks(
        thresholds={"accuracy": Limit(min=0.70), "auc": Limit(min=0.70)},
        tolerance={"accuracy": 0.01, "auc": 0.01},
    ),
    "multiclass": GateChecks(
        thresholds={"macro_f1": Limit(min=0.50)},
        tolerance={"accuracy": 0.01, "macro_f1": 0.01},
    ),
    "regression": GateChecks(thresholds={"r2": Limit(min=0.0)}, tolerance={"r2": 0.01}),
}
# A binary classifier's: the gate of every version registered before tasks existed.
DEFAULT_CHECKS = TASK_DEFAULTS["binary"]


def default_checks(task: str = "binary") -> GateChecks:
    """The gate of a `task`'s version whose spec had no [gate] (a copy: callers may change it)."""
    return TASK_DEFAULTS.get(task, DEFAULT_CHECKS).model_copy(deep=True)


def from_stored(doc: dict[str, Any] | None, task: str = "binary") -> GateChecks:
    """The checks a version stored; its task's default for one registered before checks were
    stored (an empty or null column)."""
    if not doc:
        return default_checks(task)
    return GateChecks.model_validate(doc)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _fail(where: str, key: str, msg: str) -> None:
    raise InvalidInput(f"spec {where}: '{key}' {msg}")


def _table(doc: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        _fail(where, key, f"must be a table, got {doc!r}")
    return doc


def _limit(doc: Any, where: str, key: str) -> Limit:
    doc = _table(doc, where, key)
    bad = sorted(set(doc) - {"min", "max"})
    if bad:
        _fail(where, key, f"has unknown key(s) {bad}; allowed: ['max', 'min']")
    if not doc:
        _fail(where, key, "needs min or max")
    for bound, value in doc.items():
        if not _number(value):
            _fail(where, f"{key}.{bound}", f"must be a finite number, got {value!r}")
    if "min" in doc and "max" in doc and doc["min"] > doc["max"]:
        _fail(where, key, f"has min {doc['min']} above max {doc['max']}")
    return Limit(min=doc.get("min"), max=doc.get("max"))


def _metric(name: Any, where: str, key: str) -> str:
    if not isinstance(name, str) or not _METRIC.match(name):
        _fail(where, key, f"must name a metric (letters, digits, _), got {name!r}")
    return name


def _segment(doc: Any, where: str, key: str, categorical: list[str]) -> SegmentCheck:
    doc = _table(doc, where, key)
    allowed = {"column", "metric", "min", "max", "min_rows"}
    bad = sorted(set(doc) - allowed)
    if bad:
        _fail(where, key, f"has unknown key(s) {bad}; allowed: {sorted(allowed)}")
    column = doc.get("column")
    if column not in categorical:
        _fail(where, f"{key}.column", f"must be one of the spec's categorical columns "
              f"{categorical}, got {column!r}")
    metric = _metric(doc.get("metric"), where, f"{key}.metric")
    if ("min" in doc) == ("max" in doc):
        _fail(where, key, "needs exactly one of min or max")
    limit = _limit({b: doc[b] for b in ("min", "max") if b in doc}, where, key)
    min_rows = doc.get("min_rows", DEFAULT_MIN_ROWS)
    if not isinstance(min_rows, int) or isinstance(min_rows, bool) or min_rows < 1:
        _fail(where, f"{key}.min_rows", f"must be a positive integer, got {min_rows!r}")
    return SegmentCheck(column=column, metric=metric, min=limit.min, max=limit.max,
                        min_rows=min_rows)


def parse_gate(doc: Any, where: str = "<spec>", categorical: list[str] | None = None,
               *, task: str = "binary") -> GateChecks:
    """Validate a spec's ``[gate]`` table; InvalidInput names the offending key.

    Args:
        doc: the table, or None when the spec has none (then `task`'s `default_checks`).
        where: the spec's name for messages (default "<spec>").
        categorical: the spec's categorical columns, the only ones segments may split on
            (default none).
        task: the spec's task (default "binary"), whose default gate a spec without one gets.
    """
    if doc is None:
        return default_checks(task)
    doc = _table(doc, where, "gate")
    allowed = {"thresholds", "tolerance", "segments", "functions"}
    bad = sorted(set(doc) - allowed)
    if bad:
        _fail(where, "gate", f"has unknown key(s) {bad}; allowed: {sorted(allowed)}")
    thresholds = {_metric(m, where, f"gate.thresholds.{m}"): _limit(v, where,
                                                                     f"gate.thresholds.{m}")
                  for m, v in _table(doc.get("thresholds", {}), where,
                                     "gate.thresholds").items()}
    tolerance: dict[str, float] = {}
    for metric, value in _table(doc.get("tolerance", {}), where, "gate.tolerance").items():
        key = f"gate.tolerance.{metric}"
        if direction(metric) is None:
            _fail(where, key, f"names a metric whose better direction is unknown; a "
                  f"tolerance needs one of {sorted(HIGHER | LOWER)}")
        if not _number(value) or value < 0:
            _fail(where, key, f"must be a non-negative number, got {value!r}")
        tolerance[metric] = float(value)
    segments = doc.get("segments", [])
    if not isinstance(segments, list):
        _fail(where, "gate.segments", "must be an array of tables ([[gate.segments]])")
    functions = doc.get("functions", [])
    if not isinstance(functions, list):
        _fail(where, "gate.functions", "must be a list of 'module:function' names")
    for i, name in enumerate(functions):
        if not isinstance(name, str) or not _FUNCTION.match(name):
            _fail(where, f"gate.functions[{i}]", f"must be 'module:function', got {name!r}")
    if len(set(functions)) != len(functions):
        _fail(where, "gate.functions", "names a function twice")
    return GateChecks(
        thresholds=thresholds, tolerance=tolerance,
        segments=[_segment(s, where, f"gate.segments[{i}]", list(categorical or []))
                  for i, s in enumerate(segments)],
        functions=list(functions),
    )


class GateCheckResult(SQLModel):
    """One check of the gate's verdict.

    `judged` is False for a check that was reported but could not count (a segment smaller
    than its `min_rows`, a tolerance with no alias holder to compare with); it then passes.
    """

    name: str
    kind: str  # "threshold", "tolerance", "segment" or "function"
    measured: float | None = None
    limit: float | None = None
    passed: bool
    judged: bool = True
    detail: str = ""


@dataclasses.dataclass
class SegmentMeasure:
    """The candidate's metrics on the rows of one segment (`value` of `column`)."""

    column: str
    value: str
    rows: int
    metrics: dict[str, Any]


@dataclasses.dataclass
class FunctionOutcome:
    """What a user test function answered (or how it failed to)."""

    name: str
    passed: bool
    detail: str


def _produced(metrics: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in metrics if k != "rows")) or "none"


def _value_problem(metric: str, metrics: dict[str, Any], on: str) -> str | None:
    """Why `metric` cannot be judged from `metrics`, or None when it can."""
    if metric not in metrics:
        return (f"the evaluation produced no metric {metric!r} (it produced "
                f"{_produced(metrics)}); fix the spec's [gate]")
    value = metrics[metric]
    if not _number(value):
        return f"{metric} is undefined on {on} (got {value!r}; e.g. one class only)"
    return None


def _bounds(name: str, kind: str, metric: str, limit_min: float | None,
            limit_max: float | None, metrics: dict[str, Any], on: str, detail: str = ""
            ) -> list[GateCheckResult]:
    out = []
    for op, bound in ((">=", limit_min), ("<=", limit_max)):
        if bound is None:
            continue
        check = f"{name}{metric} {op} {bound:g}"
        problem = _value_problem(metric, metrics, on)
        if problem:
            out.append(GateCheckResult(name=check, kind=kind, limit=bound, passed=False,
                                       detail=problem))
            continue
        value = float(metrics[metric])
        ok = value >= bound if op == ">=" else value <= bound
        out.append(GateCheckResult(name=check, kind=kind, measured=value, limit=bound,
                                   passed=ok, detail=detail))
    return out


def _tolerance(metric: str, tol: float, candidate: dict[str, Any],
               incumbent: dict[str, Any] | None) -> GateCheckResult:
    higher = direction(metric) == "higher"
    name = f"{metric} {'>=' if higher else '<='} incumbent {'-' if higher else '+'} {tol:g}"
    problem = _value_problem(metric, candidate, "the holdout")
    if problem:
        return GateCheckResult(name=name, kind="tolerance", passed=False, detail=problem)
    value = float(candidate[metric])
    if incumbent is None:
        return GateCheckResult(name=name, kind="tolerance", measured=value, passed=True,
                               judged=False, detail="no alias holder to compare with")
    if not _number(incumbent.get(metric)):
        return GateCheckResult(name=name, kind="tolerance", measured=value, passed=True,
                               judged=False, detail=f"the incumbent's {metric} is "
                               f"{incumbent.get(metric)!r} on this holdout")
    theirs = float(incumbent[metric])
    limit = theirs - tol if higher else theirs + tol
    ok = value >= limit if higher else value <= limit
    return GateCheckResult(name=name, kind="tolerance", measured=value, limit=limit, passed=ok,
                           detail=f"incumbent {theirs:.4g}, tolerance {tol:g}")


def _segment_results(check: SegmentCheck, measured: list[SegmentMeasure]
                     ) -> list[GateCheckResult]:
    mine = [m for m in measured if m.column == check.column]
    if not mine:
        return [GateCheckResult(
            name=f"segments of {check.column}: {check.metric}", kind="segment", passed=False,
            detail=f"no segment of {check.column!r} was measured (no such column in the "
                   f"holdout, or no rows)")]
    out = []
    for seg in mine:
        prefix = f"segment {seg.column}={seg.value}: "
        results = _bounds(prefix, "segment", check.metric, check.min, check.max, seg.metrics,
                          f"segment {seg.column}={seg.value}", f"{seg.rows} rows")
        if seg.rows < check.min_rows:
            for r in results:
                r.passed, r.judged = True, False
                r.detail = (f"{seg.rows} rows, fewer than min_rows {check.min_rows}: "
                            "reported, not judged")
        out += results
    return out


class GateResult(SQLModel):
    """The gate's verdict, with one entry per check (`GateCheckResult`)."""

    passed: bool
    checks: list[GateCheckResult]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def failed(self) -> list[GateCheckResult]:
        return [c for c in self.checks if not c.passed]

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GateResult:
        """A verdict as `to_dict` stored it; one stored before checks were configurable
        (entries of "check", "value", "passed") reads as threshold entries."""
        checks = [c if "name" in c else {"name": c.get("check", "?"), "kind": "threshold",
                                         "measured": c.get("value"), "passed": c["passed"]}
                  for c in doc.get("checks", [])]
        return cls(passed=bool(doc.get("passed")), checks=checks)


def describe_failures(result: GateResult) -> str:
    """The failed checks of `result` on one line, each with its detail."""
    return "; ".join(f"{c.name} ({c.detail})" if c.detail else c.name for c in result.failed)


def judge(
    checks: GateChecks, candidate: dict[str, Any], incumbent: dict[str, Any] | None = None,
    segments: list[SegmentMeasure] | None = None,
    functions: list[FunctionOutcome] | None = None,
) -> list[GateCheckResult]:
    """One verdict entry per check of `checks`, for a segment check one per segment.

    Args:
        checks: what to check.
        candidate: the candidate's metrics on the holdout.
        incumbent: the alias holder's metrics on the same holdout, or None (default) when the
            alias is empty.
        segments: the candidate's metrics per segment of each segment check's column (default
            none measured).
        functions: the user functions' outcomes, in `checks.functions` order (default none).
    """
    out: list[GateCheckResult] = []
    for metric, limit in checks.thresholds.items():
        out += _bounds("", "threshold", metric, limit.min, limit.max, candidate, "the holdout")
    for metric, tol in checks.tolerance.items():
        out.append(_tolerance(metric, tol, candidate, incumbent))
    for check in checks.segments:
        out += _segment_results(check, segments or [])
    answered = {f.name: f for f in functions or []}
    for name in checks.functions:
        got = answered.get(name)
        if got is None:
            out.append(GateCheckResult(name=f"function {name}", kind="function", passed=False,
                                       detail="was not run"))
        else:
            out.append(GateCheckResult(name=f"function {name}", kind="function",
                                       passed=got.passed, detail=got.detail))
    return out
