"""Small rows for each task, and one tuning trial run on a real Ray Tune with every report it
made read back: what tests/cluster/test_tune_{mlp,xgboost,custom}.py share.

A trial function calls `ray.tune.report`, which outside a Tune session only warns and drops the
report; so the trial runs as Ray Tune runs it, in a Tuner on the session's Ray (`ray_session`),
and its reports are read from the trial's own record (`Result.metrics_dataframe`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.tune import TUNE_KEYS

LABELS = {"binary": "flag", "multiclass": "kind", "regression": "amount"}


def rows(task: str, n: int, seed: int) -> pa.Table:
    """x1, x2 ~ N(0, 1), c in {u, v}, and the task's label (`LABELS`), a function of them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    c = rng.choice(["u", "v"], n)
    label = {
        "flag": (x1 + 0.5 * (c == "v") > 0.2).astype(np.int64),
        "kind": np.where(x1 > 0.3, "high", np.where(x2 > 0, "mid", "low")),
        "amount": 500 + 120 * x1 - 80 * x2 + 60 * (c == "v") + rng.normal(0, 5, n),
    }[LABELS[task]]
    return pa.table({"x1": x1, "x2": x2, "c": c, LABELS[task]: label})


def run_trials(trial, data: dict[str, Any], config: dict[str, Any], storage: Path, *,
               samples: int = 1) -> list[list[dict[str, Any]]]:
    """Run `samples` trials of `trial` with `config` and `data` on Ray Tune, one CPU each as
    `cluster.tune.sweep` runs them, but one after another in one actor (the next trial reuses
    the process the last one left), and without a scheduler: every trial runs to its end.

    Returns:
        Each trial's reports in order, each its own metrics only (Tune's keys and the config
        left out; a NaN, a key missing from that report, dropped) and the "pid" of the
        process that ran it.

    Raises:
        AssertionError: a trial failed (its error is the message).
    """
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(trial, data=data), {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space=config,
        tune_config=tune.TuneConfig(num_samples=samples, max_concurrent_trials=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name="trial", storage_path=str(storage), verbose=0),
    )
    out = []
    for result in tuner.fit():
        assert result.error is None, result.error
        out.append([
            {k: v for k, v in row.items()
             if (k not in TUNE_KEYS or k == "pid") and not k.startswith("config/")
             and not (isinstance(v, float) and math.isnan(v))}
            for row in result.metrics_dataframe.to_dict("records")
        ])
    return out
