"""The built-in model kinds' training params: defaults, allowed ranges, and their check.

Checked before a run is recorded (`appliance.pipelines.training.start`), so a bad param is bad
input (exit 2), never a failed run.
"""

from __future__ import annotations

import math
from typing import Any

from appliance.errors import InvalidInput

DEFAULT_PARAMS: dict[str, Any] = {
    "hidden": 32,
    "layers": 2,
    "epochs": 10,
    "lr": 3e-3,
    "batch_size": 512,
    "weight_decay": 1e-4,
    "early_stopping": 0,
    "valid_fraction": 0.1,
}
# name -> (type, lowest, highest, whether the lowest bound is allowed)
_PARAM_RULES: dict[str, tuple[type, float, float, bool]] = {
    "hidden": (int, 1, 4096, True),
    "layers": (int, 0, 16, True),
    "epochs": (int, 1, 10_000, True),
    "lr": (float, 0.0, 1.0, False),
    "batch_size": (int, 1, 1 << 20, True),
    "weight_decay": (float, 0.0, 1.0, True),
    "early_stopping": (int, 0, 10_000, True),
    "valid_fraction": (float, 0.0, 0.5, False),
}
# The xgboost kind's params (`cluster.train_xgboost`); early_stopping counts boosting rounds.
XGBOOST_PARAMS: dict[str, Any] = {
    "num_boost_round": 100,
    "max_depth": 6,
    "eta": 0.3,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "min_child_weight": 1.0,
    "reg_lambda": 1.0,
    "early_stopping": 0,
    "valid_fraction": 0.1,
}
_XGBOOST_RULES: dict[str, tuple[type, float, float, bool]] = {
    "num_boost_round": (int, 1, 100_000, True),
    "max_depth": (int, 0, 64, True),
    "eta": (float, 0.0, 1.0, False),
    "subsample": (float, 0.0, 1.0, False),
    "colsample_bytree": (float, 0.0, 1.0, False),
    "min_child_weight": (float, 0.0, 1e6, True),
    "reg_lambda": (float, 0.0, 1e6, True),
    "early_stopping": (int, 0, 100_000, True),
    "valid_fraction": (float, 0.0, 0.5, False),
}
# Built-in model kinds: name -> (default params, their rules).
KINDS: dict[str, tuple[dict[str, Any], dict[str, tuple[type, float, float, bool]]]] = {
    "mlp": (DEFAULT_PARAMS, _PARAM_RULES),
    "xgboost": (XGBOOST_PARAMS, _XGBOOST_RULES),
}

def resolve_params(params: dict[str, Any] | None, kind: str = "mlp") -> dict[str, Any]:
    """Return `params` with defaults filled in, after checking every key and value.

    Args:
        kind: the model kind whose params these are: "mlp" (default) or "xgboost".
            xgboost's (XGBOOST_PARAMS): num_boost_round (100), max_depth (6), eta (0.3),
            subsample (1.0), colsample_bytree (1.0), min_child_weight (1.0), reg_lambda (1.0),
            early_stopping (rounds without a lower validation loss; 0, off), valid_fraction
            (0.1, with early_stopping only).
        params: any subset of DEFAULT_PARAMS (None or {} means all defaults): hidden (units per
            layer, 32), layers (hidden layers, 2), epochs (10), lr (AdamW learning rate, 3e-3),
            batch_size (per worker, 512), weight_decay (1e-4), early_stopping (stop after this
            many epochs without a lower validation loss, keeping the best epoch's weights; 0,
            the default, trains every epoch on every row), valid_fraction (share of the rows
            kept back as the validation slice when early_stopping is on, 0.1).

    Raises:
        InvalidInput: an unknown kind or key, or a value of the wrong type or out of range.
    """
    if kind == "custom":
        return _custom_params(params)
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown model kind {kind!r}; built in: {sorted(KINDS)}, or 'custom'"
        )
    defaults, rules = KINDS[kind]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(f"params must be a mapping of name to value, got {params!r}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise InvalidInput(
            f"unknown training param(s) {unknown} for kind {kind!r}; known: {sorted(defaults)}"
        )
    out = dict(defaults)
    for key, value in params.items():
        typ, low, high, low_ok = rules[key]
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if typ is int and not bad and value != int(value):
            bad = True
        if bad:
            raise InvalidInput(f"training param {key!r} must be {typ.__name__}, got {value!r}")
        value = typ(value)
        below = value < low if low_ok else value <= low
        if below or value > high or (typ is float and not math.isfinite(value)):
            lower = "[" if low_ok else "("
            raise InvalidInput(
                f"training param {key!r} must be in {lower}{low}, {high}], got {value!r}"
            )
        out[key] = value
    # valid_fraction without early_stopping is accepted and unused: a run records its params
    # with every default filled in, and a retraining or a rerun passes them back as given.
    return out


def _custom_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """A custom function's params: passed as given, so only their shape is checked (names to
    numbers, strings or booleans, which lineage records and the workers receive)."""
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise InvalidInput(f"params must be a mapping of name to value, got {params!r}")
    for key, value in params.items():
        if not isinstance(value, (bool, int, float, str)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidInput(
                f"training param {key!r} must be a finite number, a string or a boolean, "
                f"got {value!r}"
            )
    return dict(params)
