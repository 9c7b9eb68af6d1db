"""The MLP as a Ray Tune trial: one configuration trained in the trial's own process, scored
on the validation slice after every epoch.

Why not a `TorchTrainer` inside each trial (Ray's Train-inside-Tune pattern): that starts a
Train controller actor and one worker actor per trial, each importing torch, and the
controller takes in reports on its poll interval; on a small box (2 CPUs) that would double
the CPUs a trial holds and cost seconds per trial before its first epoch. A trial here is one
actor with one CPU and one torch thread, so `max_concurrent_trials` trials run side by side,
and ASHA can stop one after any epoch. The retrained best goes through `cluster.train.fit`
(Ray Train, DDP, checkpoints) like any training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cluster.bundle import ModelBundle, Preprocessor, build_mlp, output_width

# Reused from the single-fit trainer, so a trial learns exactly what `fit` would: the same
# targets per task, the same loss and the same columns.
from cluster.fit_data import _targets
from cluster.train import _Loss, evaluate, resolve_params, run_epoch, table_columns


def prepare(
    train: pa.Table, valid: pa.Table, *, label: str, categorical: list[str], task: str,
    seed: int,
) -> dict[str, Any]:
    """What every trial shares: the design matrix of `train` and the validation rows.

    The preprocessing is fitted on `train` only (it does not depend on any tuned param), so
    it is fitted once for the sweep rather than once per trial.
    """
    features = [c for c in train.column_names if c != label]
    y, kept = _targets(train, label, task)
    pre = Preprocessor.fit(table_columns(train, features, categorical), categorical)
    x = pre.transform(table_columns(train, pre.feature_names, categorical))
    return {"x": x, "y": y, "pre": pre, "valid": valid, "label": label, "task": task,
            "seed": int(seed), "classes": kept.get("classes"), "target": kept.get("target"),
            "outputs": output_width(task, kept.get("classes"))}


def trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    """Train the MLP with the params in `config` for its "epochs", reporting after each epoch
    the validation slice's metrics (`cluster.train.evaluate`, per task), the training loss and
    the epoch to Ray Tune, which may stop it after any of them.

    Args:
        config: the trial's params (the spec's, the sampled ones and "epochs").
        data: what `prepare` returned.
    """
    from ray import tune

    params = resolve_params(config)
    # One CPU per trial: torch's own thread pool would fight the other trials for the cores.
    torch.set_num_threads(1)
    seed = data["seed"]
    torch.manual_seed(seed)
    x, y = torch.from_numpy(np.asarray(data["x"])), torch.from_numpy(np.asarray(data["y"]))
    model = build_mlp(data["pre"].width, params["hidden"], params["layers"], data["outputs"])
    opt = torch.optim.AdamW(model.parameters(), lr=params["lr"],
                            weight_decay=params["weight_decay"])
    loss_fn = _Loss(data["task"])
    bundle = ModelBundle(data["pre"], model, params["hidden"], params["layers"], data["label"],
                         task=data["task"], classes=data["classes"], target=data["target"])
    n, batch = len(y), params["batch_size"]
    for epoch in range(params["epochs"]):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1009 + epoch))
        loss = run_epoch(model, opt, loss_fn, x, y, order, batch)
        scored = evaluate(bundle, data["valid"], data["label"])
        scored.pop("rows", None)
        # An undefined metric (AUC with one class in the slice) is NaN to the scheduler, which
        # ranks it below every number, rather than None, which it cannot compare.
        report = {k: (math.nan if v is None else float(v)) for k, v in scored.items()}
        tune.report({**report, "loss": loss, "epoch": epoch + 1})
