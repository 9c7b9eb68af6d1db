"""The MLP's Ray Train worker loop, and its checkpoint: written by the loop, read back by the
driver (`load_module`).

Each worker trains its shard of the design matrix (DDP when there are several), rank 0
checkpoints the state dict every epoch and reports the epoch's loss to the driver
(`cluster.progress`), and a restarted worker resumes from the latest checkpoint. A loss that
is no longer finite fails the run at once, naming the epoch. Under early stopping every rank
scores the validation slice after each epoch and keeps the best epoch's weights in the
checkpoint, which `load_module` returns.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cluster.bundle import build_mlp
from cluster.train_epoch import TaskLoss, run_epoch, shard_rows

CHECKPOINT_FILE = "model.pt"


def train_loop(config: dict[str, Any]) -> None:
    """Per-worker training function (runs inside a Ray Train worker).

    Args:
        config: x_ref / y_ref (object refs of the float32 design matrix and the targets
            `cluster.fit_data.prepare` made), xv_ref / yv_ref (the validation slice's, None
            without early stopping), width, outputs (the network's raw outputs per row), task,
            params (resolved), seed, progress (a `cluster.progress.ProgressSink`, or None).
    """
    import ray
    import ray.train
    import ray.train.torch

    params, seed = config["params"], config["seed"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Not ray.train.torch.enable_reproducibility: its use_deterministic_algorithms call costs
    # seconds of imports per worker, and this MLP has no nondeterministic kernels on CPU.
    torch.manual_seed(seed)

    x_all, y_all = ray.get(config["x_ref"]), ray.get(config["y_ref"])
    rows = shard_rows(len(y_all), rank, world)
    per = len(rows)
    device = ray.train.torch.get_device()
    x = torch.from_numpy(np.array(x_all[rows])).to(device)
    y = torch.from_numpy(np.array(y_all[rows])).to(device)
    patience = params["early_stopping"]
    if patience:
        # Every rank scores the whole (small) slice: DDP keeps the replicas' weights equal, so
        # every rank reaches the same decision to stop, in the same epoch.
        xv = torch.from_numpy(np.array(ray.get(config["xv_ref"]))).to(device)
        yv = torch.from_numpy(np.array(ray.get(config["yv_ref"]))).to(device)

    model = build_mlp(config["width"], params["hidden"], params["layers"], config["outputs"])
    start_epoch, opt_state = 0, None
    best: dict[str, Any] = {"loss": math.inf, "state": None, "stale": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True
            )
        model.load_state_dict(state["model"])
        opt_state, start_epoch = state["optimizer"], state["epoch"] + 1
        best = state.get("best", best)
        if state.get("stopped"):
            start_epoch = params["epochs"]
    model = ray.train.torch.prepare_model(model)
    inner = model.module if hasattr(model, "module") else model
    # Built after prepare_model so its state lands on the parameters' device.
    opt = torch.optim.AdamW(
        model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"]
    )
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    loss_fn = TaskLoss(config["task"])
    batch = params["batch_size"]
    sink = config.get("progress")

    for epoch in range(start_epoch, params["epochs"]):
        # Seeded per epoch, so an epoch replayed after a restart sees the same batches.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + rank)
        order = torch.randperm(per, generator=gen).to(device)
        metrics: dict[str, Any] = {
            "epoch": epoch, "loss": run_epoch(model, opt, loss_fn, x, y, order, batch)}
        if not math.isfinite(metrics["loss"]):
            # Every later epoch would only carry the NaN on; no checkpoint of it is worth keeping.
            raise FloatingPointError(
                f"the training loss is {metrics['loss']} at epoch {epoch + 1}: the model "
                f"diverged; lower params.lr or use fewer layers"
            )
        stop = False
        if patience:
            inner.eval()
            with torch.no_grad():
                valid_loss = float(loss_fn(inner(xv), yv))
            metrics["valid_loss"] = valid_loss
            if valid_loss < best["loss"]:
                state_now = {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}
                best = {"loss": valid_loss, "state": state_now, "stale": 0, "epoch": epoch}
            else:
                best["stale"] += 1
            stop = best["stale"] >= patience
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                state = {
                    "model": {k: v.detach().cpu() for k, v in inner.state_dict().items()},
                    "optimizer": opt.state_dict(),
                    "epoch": epoch,
                    "best": best,
                    "stopped": stop,
                }
                torch.save(state, Path(folder) / CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            if sink is not None:
                sink.report(epoch + 1, params["epochs"], metrics)
        else:
            ray.train.report(metrics)
        if stop:
            break


def load_module(
    checkpoint: Any, width: int, params: dict, outputs: int
) -> tuple[torch.nn.Module, int]:
    """The trained network in a `train_loop` checkpoint (the best epoch's under early
    stopping), on the CPU in eval mode, and the number of epochs trained.

    Args:
        checkpoint: a `ray.train.Checkpoint` that `train_loop` wrote.
        width, params, outputs: the network's input width, resolved params and raw outputs,
            as the loop was given them.
    """
    module = build_mlp(width, params["hidden"], params["layers"], outputs)
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    best = state.get("best") or {}
    module.load_state_dict(best["state"] if best.get("state") is not None else state["model"])
    module.eval()
    return module, int(state["epoch"]) + 1
