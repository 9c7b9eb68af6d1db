"""A model's monitoring policy: how its deployment's windows close, when it is retrained, on
what data, and how its challenger is canaried and promoted.

Resolution, lowest first: the built-in defaults below, the ``[policy]`` table of
``appliance.toml``, then the keys an operator set for the model (`appliance policy set`,
stored in `MonitorPolicy.settings`; see `appliance.monitor.policy_store`). Only changed keys are
stored, so a changed config default reaches every model that did not override it. This module
is pure (the configuration validates its ``[policy]`` table with it).

Windows
    window_rows (2000), window_seconds (3600): a window closes at whichever limit comes first
    (either may be unset, not both); min_drift_rows (500): fewer rows of a version in a window
    give no drift verdict for it ("insufficient"), never a false alarm.
Retraining
    retrain (true); triggers: alert kinds that start a retrain ("drift", "accuracy",
    "estimated_accuracy") and/or "schedule" (every schedule_seconds); cooldown_seconds (6 h)
    between two retrain requests; min_labelled_rows (2000) labelled production rows since the
    trigger before training starts; max_rows (unset): keep only the newest labelled rows;
    previous_share (0): the share (0 to 1) of the champion's training rows added to them;
    holdout_share (0.2): the newest share, held out for the gate.
Canary
    canary_mode ("split" or "shadow"), canary_share (0.1) of requests in split mode;
    canary_min_rows (500) labelled challenger rows before a verdict; canary_max_windows (20)
    windows without one before it is called inconclusive and aborted; canary_metric
    ("accuracy") and canary_tolerance (0.02): the challenger regresses when it trails the
    champion on the same windows by more than this; auto_promote (false): the policy approves
    the promotion itself, allowed only for a model whose risk tier is "low".
Segments and fairness (`appliance.monitor.fairness`)
    segments (none): columns whose values split each window into segments with their own
    metrics; protected_attribute (unset): the column fairness gaps are measured across;
    fairness_min_rows (30): groups with fewer rows in a window are left out of the gaps.
    Either column may be a model feature or one serving only logs (``log_columns``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from appliance.errors import InvalidInput

TRIGGERS = ("drift", "accuracy", "estimated_accuracy", "schedule")
CANARY_MODES = ("split", "shadow")
CANARY_METRICS = ("accuracy", "precision", "recall", "auc", "log_loss", "mae", "rmse")


@dataclasses.dataclass(frozen=True)
class Policy:
    """The effective policy of one model (see the module docstring for each field)."""

    window_rows: int | None = 2000
    window_seconds: float | None = 3600.0
    min_drift_rows: int = 500
    retrain: bool = True
    triggers: tuple[str, ...] = ("drift", "accuracy")
    schedule_seconds: float | None = None
    cooldown_seconds: float = 6 * 3600.0
    min_labelled_rows: int = 2000
    max_rows: int | None = None
    previous_share: float = 0.0
    holdout_share: float = 0.2
    canary_mode: str = "split"
    canary_share: float = 0.1
    canary_min_rows: int = 500
    canary_max_windows: int = 20
    canary_metric: str = "accuracy"
    canary_tolerance: float = 0.02
    auto_promote: bool = False
    segments: tuple[str, ...] = ()
    protected_attribute: str | None = None
    fairness_min_rows: int = 30

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["triggers"] = list(self.triggers)
        doc["segments"] = list(self.segments)
        return doc


DEFAULTS = Policy()
KEYS = tuple(f.name for f in dataclasses.fields(Policy))


def _number(key: str, value: Any, *, integer: bool, low: float, high: float,
            low_open: bool = False) -> float | int:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad and integer and value != int(value):
        bad = True
    if bad or not math.isfinite(value) or value > high or value < low or (
        low_open and value == low
    ):
        lower = "(" if low_open else "["
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"policy {key!r} must be {kind} in {lower}{low}, {high}], "
                           f"got {value!r}")
    return int(value) if integer else float(value)


def _check(key: str, value: Any) -> Any:
    """The validated value of one policy key; None unsets an optional one."""
    if key not in KEYS:
        raise InvalidInput(f"unknown policy key {key!r}; known keys: {', '.join(KEYS)}")
    optional = {"window_rows", "window_seconds", "schedule_seconds", "max_rows",
                "protected_attribute"}
    if value is None:
        if key in optional:
            return None
        raise InvalidInput(f"policy {key!r} cannot be unset; give a value")
    if key in ("retrain", "auto_promote"):
        if not isinstance(value, bool):
            raise InvalidInput(f"policy {key!r} must be true or false, got {value!r}")
        return value
    if key == "triggers":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise InvalidInput(f"policy 'triggers' must be a list of names, got {value!r}")
        items = [t.strip() for t in items if t.strip()]
        unknown = sorted(set(items) - set(TRIGGERS))
        if unknown:
            raise InvalidInput(f"unknown retrain trigger(s) {unknown}; known: {list(TRIGGERS)}")
        return tuple(dict.fromkeys(items))
    if key == "segments":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise InvalidInput(f"policy 'segments' must be a list of column names, got {value!r}")
        return tuple(dict.fromkeys(t.strip() for t in items if t.strip()))
    if key == "protected_attribute":
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"policy 'protected_attribute' must be a column name, got "
                               f"{value!r}")
        return value.strip()
    if key == "canary_mode":
        if value not in CANARY_MODES:
            raise InvalidInput(f"policy 'canary_mode' must be one of {list(CANARY_MODES)}, "
                               f"got {value!r}")
        return value
    if key == "canary_metric":
        if value not in CANARY_METRICS:
            raise InvalidInput(f"policy 'canary_metric' must be one of {list(CANARY_METRICS)}, "
                               f"got {value!r}")
        return value
    ranges: dict[str, tuple[bool, float, float, bool]] = {
        "window_rows": (True, 1, 10**9, False),
        "window_seconds": (False, 0, 366 * 86400, True),
        "min_drift_rows": (True, 1, 10**9, False),
        "schedule_seconds": (False, 0, 10 * 366 * 86400, True),
        "cooldown_seconds": (False, 0, 366 * 86400, False),
        "min_labelled_rows": (True, 1, 10**9, False),
        "max_rows": (True, 1, 10**10, False),
        "previous_share": (False, 0, 1, False),
        "holdout_share": (False, 0.05, 0.5, False),
        "canary_share": (False, 0, 0.5, True),
        "canary_min_rows": (True, 1, 10**9, False),
        "canary_max_windows": (True, 1, 10**6, False),
        "canary_tolerance": (False, 0, 1, False),
        "fairness_min_rows": (True, 1, 10**9, False),
    }
    integer, low, high, low_open = ranges[key]
    return _number(key, value, integer=integer, low=low, high=high, low_open=low_open)


def parse_settings(doc: dict[str, Any], where: str = "policy") -> dict[str, Any]:
    """Validate a partial policy document (config ``[policy]`` or stored settings).

    Raises:
        InvalidInput: naming `where` and the bad key or value.
    """
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table of policy keys, got {doc!r}")
    out = {}
    for key, value in doc.items():
        try:
            out[key] = _check(key, value)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
    return out


def build(*layers: dict[str, Any]) -> Policy:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    policy = dataclasses.replace(DEFAULTS, **merged)
    if policy.window_rows is None and policy.window_seconds is None:
        raise InvalidInput("a window policy needs window_rows, window_seconds or both")
    if "schedule" in policy.triggers and policy.schedule_seconds is None:
        raise InvalidInput("the 'schedule' trigger needs schedule_seconds")
    return policy
