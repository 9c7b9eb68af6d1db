"""Fit the tabular MLP on Ray Train for a binary, multiclass or regression task, and score a
model on labelled data with its task's metrics.

`fit` runs a `ray.train.torch.TorchTrainer` on every row it is given: the caller's holdout (the
spec's, `appliance.pipelines.split`) is the only one, and `fit` splits nothing off silently. Only
when early stopping is asked for (param ``early_stopping`` > 0) does it keep a seeded validation
slice (``valid_fraction``) of those rows back, to decide when to stop; `FitResult` says how many
rows each part had. The driver fits the `Preprocessor` on the rows the model trains on and ships
the design matrix to the workers through the object store; each worker trains its shard (DDP
when there are several), rank 0 checkpoints the state dict every epoch and reports the epoch's
loss to the driver (`cluster.progress`), and a restarted worker resumes from the latest
checkpoint (Ray Train retries up to ``max_failures`` times). A loss that is no longer finite
fails the run at once, naming the epoch. The driver then loads the final checkpoint into a
`ModelBundle` and, when given a holdout, scores it there.

The run directory is ``{storage_path}/{name}-{digest}``, where the digest covers the training
data, params, seed and scaling. It is deterministic (no timestamps) on purpose: Ray Train V2
resumes a run whose directory already holds a checkpoint, so re-running the same fit after a
driver crash continues it, while a fit on different data or params can never pick up another
run's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from appliance.errors import InvalidInput, RunFailed
from appliance.monitor.metrics import roc_auc
from appliance.names import check_name
from cluster.bundle import ModelBundle, build_mlp, output_width

# Re-exported: callers (the pipelines, the gate, bench, tests) import these from here.
from cluster.fit_data import Prepared, evaluate, prepare, table_columns  # noqa: F401
from cluster.train_params import (  # noqa: F401
    DEFAULT_PARAMS,
    KINDS,
    XGBOOST_PARAMS,
    resolve_params,
)

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent

# tests/cluster/test_train.py still imports the AUC under its old private name here.
_auc = roc_auc
DEFAULT_MAX_FAILURES = 2
DEFAULT_CHECKPOINTS_TO_KEEP = 2


_CHECKPOINT_FILE = "model.pt"
_POLL_ENV, _POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1"


@dataclasses.dataclass
class FitResult:
    """What `fit` produced.

    Args:
        bundle: the fitted model with its preprocessing, on the CPU.
        metrics: the model's metrics on the holdout `fit` was given (see `evaluate`); empty
            when it was given none.
        train_rows: rows the model was trained on.
        valid_rows: rows of the validation slice early stopping watched (0 without it).
        seconds: wall-clock seconds of the whole fit, Ray Train start-up included.
        device: "cuda" when the workers trained on GPUs, else "cpu".
        params: the params used, defaults filled in.
        run_path: the Ray Train run directory (checkpoints, worker logs).
        epochs: epochs trained (fewer than params["epochs"] when early stopping stopped it).
        restarts: times Ray Train replaced the workers (a worker died or raised) and the run
            went on from its last checkpoint.
        resumed_from: for each restart, the epochs already done that it resumed after.
    """

    bundle: ModelBundle
    metrics: dict[str, Any]
    train_rows: int
    valid_rows: int
    seconds: float
    device: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_path: str = ""
    epochs: int = 0
    restarts: int = 0
    resumed_from: list[int] = dataclasses.field(default_factory=list)


class _Loss(torch.nn.Module):
    """The task's training loss on the network's raw outputs: binary cross-entropy on the
    logit, cross-entropy on the class logits, or squared error on the standardised value."""

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


def _shard(n: int, rank: int, world: int) -> np.ndarray:
    """Row indices of `rank`'s shard: every world-th row, padded by wrapping around so that all
    ranks hold ceil(n / world) rows (DDP all-reduces every step, so every rank must take the
    same number), and no row is left out."""
    own = np.arange(rank, n, world)
    per = -(-n // world)
    return np.resize(own, per) if len(own) < per else own


def _train_loop(config: dict[str, Any]) -> None:
    """Per-worker training function (runs inside a Ray Train worker).

    Args:
        config: x_ref / y_ref (object refs of the float32 design matrix and the targets
            `_targets` made), xv_ref / yv_ref (the validation slice's, None without early
            stopping), width, outputs (the network's raw outputs per row), task, params
            (resolved), seed, progress (a `cluster.progress.ProgressSink`, or None).
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
    rows = _shard(len(y_all), rank, world)
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
                Path(folder) / _CHECKPOINT_FILE, map_location="cpu", weights_only=True
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
    loss_fn = _Loss(config["task"])
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
                torch.save(state, Path(folder) / _CHECKPOINT_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
            if sink is not None:
                sink.report(epoch + 1, params["epochs"], metrics)
        else:
            ray.train.report(metrics)
        if stop:
            break


def check_fault_tolerance(max_failures: int, checkpoints_to_keep: int) -> None:
    """Refuse fault-tolerance settings Ray Train would misread.

    Raises:
        InvalidInput: max_failures not an integer in [0, 100], or checkpoints_to_keep not an
            integer in [1, 100].
    """
    for key, value, low in (("max_failures", max_failures, 0),
                            ("checkpoints_to_keep", checkpoints_to_keep, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100:
            raise InvalidInput(f"{key} must be an integer in [{low}, 100], got {value!r}")


def _cause(exc: BaseException) -> str:
    """Why a Ray Train run failed, on one line: the first worker's own exception when Ray
    carries one (its type and message), else Ray's own error."""
    failures = getattr(exc, "worker_failures", None) or {}
    cause: BaseException = exc
    if failures:
        cause = failures[min(failures)]
    # Ray wraps a worker's exception (UserExceptionWithTraceback, RayTaskError): unwrap it.
    for attr in ("_base_exc", "cause"):
        inner = getattr(cause, attr, None)
        if isinstance(inner, BaseException):
            cause = inner
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0].strip() if lines else 'no message'}"


def run_digest(
    x: np.ndarray, y: np.ndarray, params: dict, seed: int, workers: int, gpu: bool
) -> str:
    """The run folder's digest: of the training rows, params, seed and scaling."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(json.dumps([params, seed, workers, gpu], sort_keys=True).encode())
    return h.hexdigest()[:12]


def run_trainer(trainer: Any, run_name: str) -> Any:
    """Run a Ray Train `trainer` and return its result, which holds a checkpoint.

    Raises:
        RunFailed: the run failed after its retries (the first worker's exception on one
            line, the whole cause chained), or ended without a checkpoint.
    """
    # Ray Train's controller polls its workers every 2 s and takes in one report per poll, which
    # dominates a fit of a few seconds; a faster poll is cheap with this few workers. Ray reads
    # the variable from the driver's environment when the run starts; an operator's own setting
    # wins.
    previous = os.environ.get(_POLL_ENV)
    os.environ.setdefault(_POLL_ENV, _POLL_S)
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors in its own types; keep the chain
        raise RunFailed(f"training run {run_name} failed: {_cause(exc)}") from exc
    finally:
        if previous is None:
            os.environ.pop(_POLL_ENV, None)
    if result.checkpoint is None:
        raise RunFailed(f"training run {run_name} finished without a checkpoint")
    return result


def _load_module(
    checkpoint: Any, width: int, params: dict, outputs: int
) -> tuple[torch.nn.Module, int]:
    """The trained network in `checkpoint` (the best epoch's under early stopping), and the
    number of epochs trained."""
    module = build_mlp(width, params["hidden"], params["layers"], outputs)
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / _CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    best = state.get("best") or {}
    module.load_state_dict(best["state"] if best.get("state") is not None else state["model"])
    module.eval()
    return module, int(state["epoch"]) + 1


def fit(
    table: pa.Table,
    *,
    label: str,
    categorical: list[str],
    params: dict[str, Any] | None,
    seed: int,
    num_workers: int = 1,
    use_gpu: bool | None = None,
    storage_path: str | None = None,
    name: str = "train",
    holdout: pa.Table | None = None,
    task: str = "binary",
    kind: str = "mlp",
    function: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> FitResult:
    """Train a model on every row of `table` with Ray Train, and score it on `holdout`.

    Starts or joins Ray (`cluster.runtime.ensure_ray`) when the caller has not.

    Args:
        table: training rows: every column but `label` is a feature. All of them train the
            model, except the validation slice early stopping keeps back when it is on.
        label: name of the target column: 0/1 for binary, int or string classes for
            multiclass, numbers for regression.
        categorical: names of the categorical features (one-hot encoded); others are numerical.
        params: training params, see `resolve_params` (None: all defaults).
        seed: seeds the validation slice, weight init and batch order.
        num_workers: Ray Train workers (data-parallel; default 1).
        use_gpu: train on GPUs; None (default) means when the Ray cluster has one per worker.
        storage_path: folder for Ray Train runs (default ``$APPLIANCE_HOME/ray_results``).
        name: run name prefix; the run folder is ``{name}-{digest}`` (default "train").
        holdout: labelled rows the model never saw, to compute `FitResult.metrics` on
            (default None: no metrics).
        task: "binary" (default: sigmoid and binary cross-entropy), "multiclass" (softmax and
            cross-entropy) or "regression" (squared error on the standardised label).
        kind: "mlp" (default: the MLP on `TorchTrainer`, DDP across workers), "xgboost"
            (gradient-boosted trees on `XGBoostTrainer`: `cluster.train_xgboost`) or
            "custom" (the user's `function` on `TorchTrainer`: `cluster.train_custom`).
        function: "module:function", the custom kind's training function (default None).
        max_failures: times Ray Train may restart the workers from the last checkpoint after
            one dies or raises (default 2).
        checkpoints_to_keep: checkpoints kept in the run folder (default 2).
        on_progress: called in a driver thread with each step's `ProgressEvent` (default
            None; the MLP reports every epoch, xgboost every few boosting rounds).

    Raises:
        InvalidInput: bad params, arguments, columns or labels (the message names which), or
            more workers or GPUs than the Ray cluster has (`cluster.capacity`).
        RunFailed: the training run failed after its retries (the cause on one line, and
            chained).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from appliance.config import load_config
    from cluster.capacity import check_capacity, resolve_gpu
    from cluster.progress import ProgressListener
    from cluster.runtime import ensure_ray

    check_fault_tolerance(max_failures, checkpoints_to_keep)
    if kind == "xgboost":
        # Deferred: xgboost is only imported by runs of its kind.
        from cluster.train_xgboost import fit_xgboost

        return fit_xgboost(table, label=label, categorical=categorical, params=params,
                           seed=seed, num_workers=num_workers, use_gpu=use_gpu,
                           storage_path=storage_path, name=name, holdout=holdout, task=task,
                           max_failures=max_failures, checkpoints_to_keep=checkpoints_to_keep,
                           on_progress=on_progress)
    if kind == "custom":
        # Deferred, as above.
        from cluster.train_custom import fit_custom

        return fit_custom(table, label=label, categorical=categorical, params=params,
                          seed=seed, function=function, num_workers=num_workers,
                          use_gpu=use_gpu, storage_path=storage_path, name=name,
                          holdout=holdout, task=task, max_failures=max_failures,
                          checkpoints_to_keep=checkpoints_to_keep)
    started = time.perf_counter()
    resolved = resolve_params(params, kind=kind)
    check_name("run name", name)
    data = prepare(table, label=label, categorical=categorical, resolved=resolved, seed=seed,
                   num_workers=num_workers, task=task)
    pre, x_train, y_train, x_valid, y_valid, kept = (
        data.pre, data.x_train, data.y_train, data.x_valid, data.y_valid, data.kept)
    train_idx, valid_idx, n_valid = data.train_idx, data.valid_idx, len(data.valid_idx)
    outputs = output_width(task, kept.get("classes"))

    if not ray.is_initialized():
        ensure_ray(load_config())
    use_gpu = resolve_gpu(num_workers, use_gpu)
    check_capacity(num_workers, use_gpu)
    storage = Path(storage_path) if storage_path else load_config().home / "ray_results"
    storage.mkdir(parents=True, exist_ok=True)
    run_name = f"{name}-{run_digest(x_train, y_train, resolved, int(seed), num_workers, use_gpu)}"

    with ProgressListener(on_progress) as listener:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "progress": listener.sink,
                "x_ref": ray.put(x_train),
                "y_ref": ray.put(y_train),
                "xv_ref": ray.put(x_valid) if n_valid else None,
                "yv_ref": ray.put(y_valid) if n_valid else None,
                "width": pre.width,
                "outputs": outputs,
                "task": task,
                "params": resolved,
                "seed": int(seed),
            },
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=bool(use_gpu)),
            run_config=RunConfig(
                name=run_name,
                storage_path=str(storage),
                failure_config=FailureConfig(max_failures=max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
            ),
        )
        result = run_trainer(trainer, run_name)

    module, epochs = _load_module(result.checkpoint, pre.width, resolved, outputs)
    bundle = ModelBundle(pre, module, resolved["hidden"], resolved["layers"], label, task=task,
                         classes=kept.get("classes"), target=kept.get("target"))
    return FitResult(
        bundle=bundle,
        metrics=evaluate(bundle, holdout, label) if holdout is not None else {},
        train_rows=len(train_idx),
        valid_rows=len(valid_idx),
        seconds=time.perf_counter() - started,
        device="cuda" if use_gpu else "cpu",
        params=resolved,
        run_path=str(storage / run_name),
        epochs=epochs,
        restarts=listener.restarts.count,
        resumed_from=list(listener.restarts.resumed_from),
    )
