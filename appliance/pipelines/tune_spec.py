"""The `[tune]` table of a spec: what `appliance tune` searches, and how.

    [tune]
    metric = "auc"             # optional: a validation metric of the task (binary: accuracy,
                               #   auc, log_loss; multiclass: accuracy, macro_f1, log_loss;
                               #   regression: rmse, mae, r2); default the task's main metric
    mode = "max"               # optional: "min" or "max"; default the metric's direction
    num_samples = 8            # optional: trials (configurations) to try
    max_epochs = 8             # optional: epochs a trial that is never stopped trains
                               #   (default [params] epochs, else the kind's default); the
                               #   xgboost kind counts boosting rounds: max_rounds = 100
    grace_period = 1           # optional: epochs (rounds) every trial trains before ASHA
                               #   may stop it
    reduction_factor = 2       # optional: ASHA keeps about 1/reduction_factor at each rung
    valid_fraction = 0.2       # optional: share of the training part trials are scored on
    [tune.space]               # required: one distribution per tuned param
    lr = {loguniform = [1e-4, 1e-1]}
    weight_decay = {uniform = [0.0, 0.01]}
    hidden = {choice = [8, 16, 32]}
    layers = {randint = [1, 3]}          # both bounds included

The space's params are the model kind's (`cluster.train_params`): the mlp's (lr, hidden,
layers, batch_size, weight_decay), the xgboost kind's (max_depth, eta, subsample,
colsample_bytree, min_child_weight, reg_lambda), or for the custom kind any name the user's
function reads from ctx.params (numbers, strings or booleans). The budget param (epochs,
num_boost_round) is the sweep's to set, and early stopping is ASHA's.

The spec's `[resources] max_concurrent_trials` (1) caps the trials running at once; the
sweep never runs more than the cluster has CPUs for (one each). Every tuned value is checked
against the model kind's params here, so a bad space exits 2 before any run is recorded.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from appliance.errors import InvalidInput
from appliance.monitor.metrics import LOWER_IS_BETTER, MAIN_METRIC
from appliance.pipelines.spec import TrainSpec, parse_spec, read_spec_doc

# The validation metrics a trial reports per task: the keys `evaluation_metrics` returns.
METRICS = {"binary": ("accuracy", "auc", "log_loss"),
           "multiclass": ("accuracy", "macro_f1", "log_loss"),
           "regression": ("rmse", "mae", "r2")}
_KEYS = {"metric", "mode", "num_samples", "max_epochs", "max_rounds", "grace_period",
         "reduction_factor", "valid_fraction", "space"}


@dataclasses.dataclass
class TuneSpec:
    """A validated `[tune]` table (see the module docstring for each key)."""

    kind: str
    metric: str
    mode: str
    space: dict[str, tuple[str, list]]
    num_samples: int = 8
    # The kind's budget a trial that is never stopped trains: epochs, or boosting rounds for
    # xgboost (the spec's max_rounds).
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: float = 2.0
    valid_fraction: float = 0.2
    max_concurrent_trials: int = 1

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["space"] = {k: {dist: list(args)} for k, (dist, args) in self.space.items()}
        return doc


def kind_of(spec: TrainSpec) -> str:
    """The model kind `spec` trains (its `kind`, "mlp" by default)."""
    return spec.kind or "mlp"


def _fail(where: str, key: str, msg: str) -> InvalidInput:
    return InvalidInput(f"spec {where}: 'tune.{key}' {msg}")


def _int(doc: dict, key: str, default: int, low: int, high: int, where: str) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(where, key, f"must be an integer in [{low}, {high}], got {value!r}")
    return value


def _number(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _distribution(key: str, value: Any, where: str) -> tuple[str, list]:
    """(distribution, arguments) of one `[tune.space]` entry, checked for shape."""
    from cluster.tune import DISTRIBUTIONS  # deferred: torch and Ray only when tuning

    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
        raise _fail(where, f"space.{key}", f"must be one of {{uniform = [a, b]}}, "
                    f"{{loguniform = [a, b]}}, {{randint = [a, b]}}, {{choice = [...]}}; "
                    f"got {value!r}")
    dist, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise _fail(where, f"space.{key}", f"{dist} needs a non-empty list, got {args!r}")
    if dist == "choice":
        return dist, list(args)
    if len(args) != 2 or not all(_number(a) for a in args) or not args[0] < args[1]:
        raise _fail(where, f"space.{key}",
                    f"{dist} needs [low, high] with low < high, got {args!r}")
    if dist == "loguniform" and args[0] <= 0:
        raise _fail(where, f"space.{key}", f"loguniform needs low > 0, got {args!r}")
    if dist == "randint" and not all(isinstance(a, int) for a in args):
        raise _fail(where, f"space.{key}", f"randint needs integer bounds, got {args!r}")
    return dist, list(args)


def _check_space(spec: TrainSpec, kind_name: str, raw: Any, where: str) -> dict:
    """The space, each param known to the kind and each value one it accepts."""
    from cluster.tune import KINDS  # deferred: torch and Ray only when tuning

    kind = KINDS.get(kind_name)
    if kind is None:
        raise InvalidInput(f"spec {where}: model kind {kind_name!r} cannot be tuned; "
                           f"tunable kinds: {sorted(KINDS)}")
    if not isinstance(raw, dict) or not raw:
        raise _fail(where, "space", "must be a table with at least one param, e.g. "
                    "lr = {loguniform = [1e-4, 1e-1]}")
    space: dict[str, tuple[str, list]] = {}
    for key, value in raw.items():
        if key not in kind.defaults and not kind.open_params:
            raise _fail(where, f"space.{key}", f"is not a param of the {kind.name} model; its "
                        f"params: {sorted(kind.defaults)}")
        if key in kind.fixed:
            raise _fail(where, f"space.{key}", f"cannot be tuned: {kind.fixed[key]}")
        if key in spec.params:
            raise _fail(where, f"space.{key}", "is also fixed in [params]; keep it in one")
        dist, args = _distribution(key, value, where)
        if dist in ("uniform", "loguniform") and isinstance(kind.defaults.get(key), int):
            raise _fail(where, f"space.{key}", f"is an integer param: use randint or choice, "
                        f"not {dist}")
        for candidate in args:
            try:
                kind.resolve_params({**spec.params, key: candidate})
            except InvalidInput as exc:
                raise _fail(where, f"space.{key}", f"holds {candidate!r}, which the "
                            f"{kind.name} model refuses: {exc}") from exc
        space[key] = (dist, args)
    return space


def parse_tune(doc: dict[str, Any], spec: TrainSpec, where: str = "<spec>") -> TuneSpec:
    """Validate the spec document's `[tune]` table against the task and model kind of `spec`.

    Raises:
        InvalidInput: no [tune] table, an unknown key, a bad value or a param the model kind
            refuses; the message names the key (``tune.space.lr``).
    """
    from cluster.tune import KINDS  # deferred: torch and Ray only when tuning

    raw = doc.get("tune")
    if not isinstance(raw, dict) or not raw:
        raise InvalidInput(f"spec {where}: a [tune] table with a [tune.space] is required to "
                           f"tune")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidInput(f"spec {where}: unknown tune key(s) {unknown}; allowed: "
                           f"{sorted(_KEYS)}")
    metric = raw.get("metric", MAIN_METRIC[spec.task])
    if metric not in METRICS[spec.task]:
        raise _fail(where, "metric", f"must be one of {list(METRICS[spec.task])} for a "
                    f"{spec.task} task, got {metric!r}")
    mode = raw.get("mode", "min" if metric in LOWER_IS_BETTER else "max")
    if mode not in ("min", "max"):
        raise _fail(where, "mode", f"must be 'min' or 'max', got {mode!r}")
    kind = kind_of(spec)
    if kind in KINDS:
        # The fixed params first, so that a bad one is named as [params], not as the space.
        KINDS[kind].resolve_params(spec.params)
    space = _check_space(spec, kind, raw.get("space"), where)
    budget, unit = KINDS[kind].budget, KINDS[kind].unit
    # The budget's max is named in its unit: max_epochs, or max_rounds for boosted trees.
    max_key = f"max_{unit}s"
    for other in sorted({"max_epochs", "max_rounds"} - {max_key}):
        if other in raw:
            raise _fail(where, other, f"is not for the {kind} model, whose budget counts "
                        f"{unit}s: set 'tune.{max_key}'")
    default_epochs = spec.params.get(budget, KINDS[kind].defaults[budget])
    max_epochs = _int(raw, max_key, default_epochs, 1, 100_000 if unit == "round" else 10_000,
                      where)
    grace = _int(raw, "grace_period", 1, 1, max_epochs, where)
    factor = raw.get("reduction_factor", 2)
    if not _number(factor) or factor <= 1:
        raise _fail(where, "reduction_factor", f"must be a number > 1, got {factor!r}")
    valid = raw.get("valid_fraction", 0.2)
    if not _number(valid) or not 0.05 <= valid <= 0.5:
        raise _fail(where, "valid_fraction", f"must be between 0.05 and 0.5, got {valid!r}")
    return TuneSpec(
        kind=kind, metric=metric, mode=mode, space=space,
        num_samples=_int(raw, "num_samples", 8, 1, 10_000, where), max_epochs=max_epochs,
        grace_period=grace, reduction_factor=float(factor), valid_fraction=float(valid),
        max_concurrent_trials=doc.get("resources", {}).get("max_concurrent_trials", 1),
    )


def parse_tuning(doc: dict[str, Any], where: str = "<spec>") -> tuple[TrainSpec, TuneSpec]:
    """(the training spec, its [tune] table) of one spec document, both validated."""
    spec = parse_spec(doc, where)
    return spec, parse_tune(doc, spec, where)


def load_tuning(path) -> tuple[TrainSpec, TuneSpec]:
    """Read the spec file at `path` and validate it for tuning (see `parse_tuning`)."""
    doc, where = read_spec_doc(path)
    return parse_tuning(doc, where)
