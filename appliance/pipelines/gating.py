"""What the gate measures beyond the holdout metrics: per-segment metrics and user test functions.

A user test function is named ``module:function`` in the spec's ``[gate]`` table and imported
when the gate runs (the module must be importable there: installed, or on PYTHONPATH). It is
called as

    passed, detail = function(candidate, holdout, champion)

with `candidate` and `champion` as `GateModel`s (`champion` None when the alias is empty) and
`holdout` the labelled `pyarrow.Table` the gate scores on. It returns a bool, or a
``(bool, str)`` pair whose string says why. An import error, an exception or any other return
value is a failed check naming the function, never a failed gate run.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from appliance.governance.gate_checks import FunctionOutcome, GateChecks, SegmentMeasure
from appliance.tables import table_columns

_DETAIL_CHARS = 500


@dataclasses.dataclass
class GateModel:
    """A model version as a user test function sees it.

    Args:
        model: the model's name.
        version: the version number.
        bundle: the loaded model bundle (preprocessing plus model).
        label: the label column of the holdout.
        metrics: its metrics on the holdout, as the gate measured them.
    """

    model: str
    version: int
    bundle: Any
    label: str
    metrics: dict[str, Any]

    def predict(self, table: pa.Table) -> Any:
        """The bundle's prediction for the rows of `table` (classes and scores for a
        classifier), its features taken by name, extra columns ignored."""
        return self.bundle.predict(table_columns(table, self.bundle.feature_names,
                                                 self.bundle.categorical))


def measure_segments(
    checks: GateChecks, holdout: pa.Table, score: Callable[[pa.Table], dict[str, Any]],
) -> list[SegmentMeasure]:
    """The candidate's metrics on each value of each column a segment check splits on.

    Args:
        checks: the gate's checks; only their segment columns are measured.
        holdout: the labelled rows.
        score: the candidate's metrics on a table of rows.
    """
    out: list[SegmentMeasure] = []
    for column in dict.fromkeys(s.column for s in checks.segments):
        if column not in holdout.column_names:
            continue
        # Segments are named as serving sees a categorical value: its string, "None" for null.
        values = np.array([str(v) for v in holdout.column(column).cast(pa.string())
                           .to_pylist()], dtype=object)
        for value in sorted(set(values)):
            rows = holdout.filter(pa.array(values == value))
            out.append(SegmentMeasure(column=column, value=value, rows=rows.num_rows,
                                      metrics=score(rows)))
    return out


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS - 3] + "..."


def _load(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise TypeError(f"{name} is a {type(fn).__name__}, not a function")
    return fn


def _answer(name: str, got: Any) -> FunctionOutcome:
    """A function's return value as an outcome; anything but a bool or (bool, str) fails."""
    if isinstance(got, (bool, np.bool_)):
        return FunctionOutcome(name, bool(got), "")
    if (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], (bool, np.bool_))
            and isinstance(got[1], str)):
        return FunctionOutcome(name, bool(got[0]), _one_line(got[1]))
    return FunctionOutcome(name, False, _one_line(
        f"returned {type(got).__name__} {got!r}; a gate function returns a bool or a "
        f"(bool, str) pair"))


def run_functions(
    names: list[str], candidate: GateModel, holdout: pa.Table, champion: GateModel | None,
) -> list[FunctionOutcome]:
    """Import and call each user test function in `names`; see the module docstring."""
    out = []
    for name in names:
        try:
            got = _load(name)(candidate, holdout, champion)
        except Exception as exc:  # noqa: BLE001 - the user's code failing is a failed check
            detail = _one_line(f"{name} raised {type(exc).__name__}: {exc}")
            out.append(FunctionOutcome(name, False, detail))
            continue
        out.append(_answer(name, got))
    return out
