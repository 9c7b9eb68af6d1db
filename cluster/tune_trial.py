"""What every kind of tuning trial shares: the rows it trains on and how a report scores it.

`prepare` turns the sweep's training rows into the design matrix and targets exactly as a fit
does (`cluster.fit_data.prepare`, with no early-stopping slice: the sweep's validation slice is
its own), once for the whole sweep, since nothing in it depends on a tuned param.
`validation_report` scores a trial's model as it stands on that validation slice with the
task's metrics (`cluster.evaluate`), in the form Ray Tune's scheduler can compare.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from cluster.bundle import ModelBundle, output_width
from cluster.evaluate import evaluate
from cluster.fit_data import prepare as prepare_fit


def prepare(
    train: pa.Table, valid: pa.Table, *, label: str, categorical: list[str], task: str,
    seed: int, function: str | None = None,
) -> dict[str, Any]:
    """What every trial of a built-in kind shares: the design matrix of `train` with its
    targets and fitted `Preprocessor`, and the validation rows.

    Args:
        train: the rows every trial trains on.
        valid: the rows every trial is scored on.
        label, categorical, task, seed: as in `cluster.train.fit`.
        function: the custom kind's training function; unused here (default None).

    Raises:
        InvalidInput: bad columns or labels (the message names which).
    """
    del function  # the built-in kinds have their model in the trial
    data = prepare_fit(train, label=label, categorical=categorical,
                       resolved={"early_stopping": 0, "valid_fraction": 0.0}, seed=seed,
                       num_workers=1, task=task)
    classes = data.kept.get("classes")
    return {"x": data.x_train, "y": data.y_train, "pre": data.pre, "valid": valid,
            "label": label, "task": task, "seed": int(seed), "classes": classes,
            "target": data.kept.get("target"), "outputs": output_width(task, classes)}


def bundle_of(data: dict[str, Any], module: Any, kind: str, hidden: int = 0,
              layers: int = 0) -> ModelBundle:
    """A trial's model (`module`, of `kind`) with the sweep's preprocessing, as a bundle."""
    return ModelBundle(data["pre"], module, hidden, layers, data["label"], task=data["task"],
                       classes=data["classes"], target=data["target"], kind=kind)


def validation_report(bundle: ModelBundle, data: dict[str, Any]) -> dict[str, float]:
    """`bundle`'s metrics on the sweep's validation slice, for `ray.tune.report`.

    An undefined metric (AUC with one class in the slice) is NaN, which the scheduler ranks
    below every number, rather than None, which it cannot compare.
    """
    scored = evaluate(bundle, data["valid"], data["label"])
    scored.pop("rows", None)
    return {k: (math.nan if v is None else float(v)) for k, v in scored.items()}
