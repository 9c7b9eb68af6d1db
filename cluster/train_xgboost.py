"""Fit gradient-boosted trees (XGBoost) on Ray Train, into the same bundle as the MLP.

`fit_xgboost` prepares the rows exactly as the MLP's fit does (`cluster.fit_data.prepare`: the
same validation slice, targets and `Preprocessor`), hands the design matrix to Ray Train's
`XGBoostTrainer` as Ray Data datasets (each worker reads its shard with
``ray.train.get_dataset_shard`` and trains with XGBoost's own collective, rabit), and checkpoints
the booster about three times per run through ``ray.train.xgboost.RayTrainReportCallback``; a
restarted worker continues from the last checkpoint's booster. Objectives: binary:logistic,
multi:softprob and reg:squarederror (on the standardised label, which the bundle undoes).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from appliance.names import check_name
from cluster.bundle import ModelBundle
from cluster.evaluate import evaluate
from cluster.fit_data import Prepared, prepare
from cluster.train_params import resolve_params
from cluster.train_run import (
    DEFAULT_CHECKPOINTS_TO_KEEP,
    DEFAULT_MAX_FAILURES,
    FitResult,
    place_run,
    run_config,
    run_digest,
    run_trainer,
)

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent

_OBJECTIVES = {
    "binary": ("binary:logistic", "logloss"),
    "multiclass": ("multi:softprob", "mlogloss"),
    "regression": ("reg:squarederror", "rmse"),
}
_Y = "__y__"
# A run sends about this many progress events (every ceil(rounds / PROGRESS_EVERY) rounds).
PROGRESS_EVERY = 50


def booster_params(resolved: dict[str, Any], task: str, classes: int, seed: int,
                   use_gpu: bool) -> dict[str, Any]:
    """XGBoost's own params for the resolved appliance params (`cluster.train_params`)."""
    objective, metric = _OBJECTIVES[task]
    out = {
        "objective": objective,
        "eval_metric": metric,
        "max_depth": resolved["max_depth"],
        "eta": resolved["eta"],
        "subsample": resolved["subsample"],
        "colsample_bytree": resolved["colsample_bytree"],
        "min_child_weight": resolved["min_child_weight"],
        "lambda": resolved["reg_lambda"],
        "tree_method": "hist",
        "seed": seed,
        "device": "cuda" if use_gpu else "cpu",
    }
    if task == "multiclass":
        out["num_class"] = classes
    return out


def _dataset(x: np.ndarray, y: np.ndarray) -> Any:
    """A Ray Data dataset of the design matrix (one column per design column) and targets."""
    import ray.data

    columns = {f"x{i}": x[:, i] for i in range(x.shape[1])}
    columns[_Y] = y
    return ray.data.from_arrow(pa.table(columns))


def _matrix(name: str, width: int) -> Any:
    """This worker's shard of dataset `name` as an `xgboost.DMatrix`."""
    import ray.train
    import xgboost

    shard = ray.train.get_dataset_shard(name)
    xs, ys = [], []
    # Whole blocks (batch_size None): no re-batching copies before the one below.
    for batch in shard.iter_batches(batch_format="numpy", batch_size=None):
        xs.append(np.column_stack([batch[f"x{i}"] for i in range(width)]))
        ys.append(batch[_Y])
    x = np.concatenate(xs) if xs else np.zeros((0, width), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
    return xgboost.DMatrix(x, label=y)


def _train_loop(config: dict[str, Any]) -> None:
    """Per-worker training function (runs inside a Ray Train worker).

    Args:
        config: params (XGBoost's), rounds, early_stopping (rounds; 0: off), every (rounds
            between checkpoints), width (design columns), valid (whether a "valid" dataset is
            there), progress (a `cluster.progress.ProgressSink`, or None) and progress_every
            (rounds between its reports).
    """
    import ray.train
    import xgboost
    from ray.train.xgboost import RayTrainReportCallback

    class _CheckpointReports(RayTrainReportCallback):
        """Reports with each checkpoint only: the controller takes in one report per poll, so
        a report per boosting round would cost a poll per round."""

        def _report_metrics(self, report_dict: dict) -> None:
            pass

    class _Progress(xgboost.callback.TrainingCallback):
        """Rank 0 sends the driver the last round's losses every `every` rounds (and at the
        last), as the MLP sends each epoch's (`cluster.progress`)."""

        def __init__(self, sink: Any, every: int, rounds: int) -> None:
            self.sink, self.every, self.rounds = sink, every, rounds

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            done = model.num_boosted_rounds()
            if done % self.every == 0 or done >= self.rounds:
                metrics = {name: float(log[next(iter(log))][-1]) for name, log in
                           (("loss", evals_log.get("train")), ("valid_loss",
                                                                evals_log.get("valid"))) if log}
                self.sink.report(done, self.rounds, metrics, unit="round")
            return False

    callbacks = [_CheckpointReports(frequency=config["every"], checkpoint_at_end=True)]
    if config.get("progress") is not None and ray.train.get_context().get_world_rank() == 0:
        callbacks.append(_Progress(config["progress"], config["progress_every"],
                                   config["rounds"]))
    dtrain = _matrix("train", config["width"])
    evals = [(dtrain, "train")]
    if config["valid"]:
        evals.append((_matrix("valid", config["width"]), "valid"))
    start = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        start = RayTrainReportCallback.get_model(checkpoint)
    done = start.num_boosted_rounds() if start is not None else 0
    xgboost.train(
        config["params"],
        dtrain,
        num_boost_round=max(config["rounds"] - done, 0),
        evals=evals,
        xgb_model=start,
        early_stopping_rounds=config["early_stopping"] or None,
        verbose_eval=False,
        callbacks=callbacks,
    )


def fit_xgboost(
    table: pa.Table,
    *,
    label: str,
    categorical: list[str],
    params: dict[str, Any] | None,
    seed: int,
    storage_path: str | Path,
    num_workers: int = 1,
    use_gpu: bool | None = None,
    name: str = "train",
    holdout: pa.Table | None = None,
    task: str = "binary",
    max_failures: int = DEFAULT_MAX_FAILURES,
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> FitResult:
    """Train gradient-boosted trees on every row of `table` with Ray Train's XGBoostTrainer.

    The arguments are `cluster.train.fit`'s; params are the xgboost kind's (see
    `cluster.train_params.resolve_params`). `FitResult.epochs` is the number of boosting rounds kept
    (up to the best round under early stopping). `on_progress` gets an event (unit "round")
    every `PROGRESS_EVERY`-th of the rounds, with the last round's training and validation
    loss.

    Raises:
        InvalidInput: bad params, arguments, columns or labels (the message names which), or
            more workers or GPUs than the Ray cluster has.
        RunFailed: Ray is not started, or the training run failed after its retries (the
            cause on one line, and chained).
    """
    import xgboost
    from ray.train import ScalingConfig
    from ray.train.xgboost import RayTrainReportCallback, XGBoostTrainer

    from cluster.progress import ProgressListener

    started = time.perf_counter()
    resolved = resolve_params(params, kind="xgboost")
    check_name("run name", name)
    data: Prepared = prepare(table, label=label, categorical=categorical, resolved=resolved,
                             seed=seed, num_workers=num_workers, task=task)
    use_gpu, storage = place_run(storage_path, num_workers, use_gpu)
    run_name = f"{name}-" + run_digest(data.x_train, data.y_train,
                                       {"kind": "xgboost", **resolved}, int(seed), num_workers,
                                       use_gpu)
    classes = data.kept.get("classes")
    datasets = {"train": _dataset(data.x_train, data.y_train)}
    if data.x_valid is not None:
        # A class only the validation slice holds (index -1) is no label XGBoost can score.
        seen = data.y_valid >= 0
        datasets["valid"] = _dataset(data.x_valid[seen], data.y_valid[seen])
    rounds = resolved["num_boost_round"]
    # A listener (its queue is an actor) only when someone watches the rounds.
    watching = contextlib.ExitStack()
    sink = watching.enter_context(ProgressListener(on_progress)).sink if on_progress else None
    trainer = XGBoostTrainer(
        _train_loop,
        train_loop_config={
            "params": booster_params(resolved, task, len(classes or ()), int(seed),
                                     use_gpu),
            "rounds": rounds,
            "early_stopping": resolved["early_stopping"],
            "every": max(1, math.ceil(rounds / 3)),
            "width": data.x_train.shape[1],
            "valid": data.x_valid is not None,
            "progress": sink,
            "progress_every": max(1, math.ceil(rounds / PROGRESS_EVERY)),
        },
        datasets=datasets,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=run_config(run_name, storage, max_failures, checkpoints_to_keep),
    )
    with watching:
        result = run_trainer(trainer, run_name)
    booster: xgboost.Booster = RayTrainReportCallback.get_model(result.checkpoint)
    best = booster.attr("best_iteration")
    if resolved["early_stopping"] and best is not None:
        # Keep the trees up to the best round on the validation slice, as the MLP keeps its
        # best epoch's weights.
        booster = booster[: int(best) + 1]
    booster.set_param({"device": "cpu"})
    bundle = ModelBundle(data.pre, booster, 0, 0, label, task=task, classes=classes,
                         target=data.kept.get("target"), kind="xgboost")
    return FitResult(
        bundle=bundle,
        metrics=evaluate(bundle, holdout, label) if holdout is not None else {},
        train_rows=len(data.train_idx),
        valid_rows=len(data.valid_idx),
        seconds=time.perf_counter() - started,
        device="cuda" if use_gpu else "cpu",
        params=resolved,
        run_path=str(storage / run_name),
        epochs=booster.num_boosted_rounds(),
    )
