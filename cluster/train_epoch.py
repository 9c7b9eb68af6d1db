"""The torch pieces every torch-trained kind shares: the task's loss, a worker's shard of the
rows, and one epoch of minibatch steps.

The MLP's Ray Train worker (`cluster.train_loop`), the custom kind's (`cluster.train_custom`)
and the tuning trials (`cluster.tune_mlp`, `cluster.tune_custom`) all use these, so that a trial
learns exactly what a fit would.
"""

from __future__ import annotations

import numpy as np
import torch


class TaskLoss(torch.nn.Module):
    """The task's training loss on the network's raw outputs: binary cross-entropy on the
    logit, cross-entropy on the class logits (a target of -1, a class the training rows never
    held, is ignored), or squared error on the standardised value.

    Args:
        task: "binary", "multiclass" or "regression".
    """

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = task
        self.fn = (torch.nn.CrossEntropyLoss(ignore_index=-1) if task == "multiclass"
                   else torch.nn.MSELoss() if task == "regression"
                   else torch.nn.BCEWithLogitsLoss())

    def forward(self, raw: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(raw if self.task == "multiclass" else raw.squeeze(-1), y)


def run_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: torch.nn.Module,
              x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch: int) -> float:
    """One epoch of minibatch steps over the rows in `order`; the mean training loss.

    Shared by the Ray Train worker loop and a tuning trial, which differ only in where the
    rows come from and how the order is seeded.

    Args:
        model, opt, loss_fn: the network, its optimiser and the loss (`TaskLoss`).
        x, y: the design matrix and targets, on the model's device.
        order: the row indices, in this epoch's order.
        batch: rows per step.
    """
    model.train()
    total = 0.0
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / max(len(order), 1)


def shard_rows(n: int, rank: int, world: int) -> np.ndarray:
    """Row indices of `rank`'s shard of `n` rows among `world` workers: every world-th row,
    padded by wrapping around so that all ranks hold ceil(n / world) rows (DDP all-reduces
    every step, so every rank must take the same number), and no row is left out."""
    own = np.arange(rank, n, world)
    per = -(-n // world)
    return np.resize(own, per) if len(own) < per else own
