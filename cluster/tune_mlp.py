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

from typing import Any

import numpy as np
import torch

from cluster.bundle import build_mlp

# Reused from the single-fit trainer, so a trial learns exactly what `fit` would: the same
# loss, the same epoch of minibatch steps.
from cluster.train_epoch import TaskLoss, run_epoch
from cluster.train_params import resolve_params
from cluster.tune_trial import bundle_of, validation_report


def trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    """Train the MLP with the params in `config` for its "epochs", reporting after each epoch
    the validation slice's metrics (`cluster.tune_trial.validation_report`), the training loss
    and the epoch to Ray Tune, which may stop it after any of them.

    Args:
        config: the trial's params (the spec's, the sampled ones and "epochs").
        data: what `cluster.tune_trial.prepare` returned.
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
    loss_fn = TaskLoss(data["task"])
    bundle = bundle_of(data, model, "mlp", params["hidden"], params["layers"])
    n, batch = len(y), params["batch_size"]
    for epoch in range(params["epochs"]):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1009 + epoch))
        loss = run_epoch(model, opt, loss_fn, x, y, order, batch)
        tune.report({**validation_report(bundle, data), "loss": loss, "epoch": epoch + 1})
