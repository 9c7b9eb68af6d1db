"""The training driver: fit a model of any kind on Ray Train for a binary, multiclass or
regression task, and score it on the caller's holdout.

`fit` runs every row it is given: the caller's holdout (the spec's, `appliance.pipelines.split`)
is the only one, and `fit` splits nothing off silently. Only when early stopping is asked for
(param ``early_stopping`` > 0) does it keep a seeded validation slice (``valid_fraction``) of
those rows back, to decide when to stop; `FitResult` says how many rows each part had.

The driver is a function of its arguments: it reads no configuration. The caller starts or
joins Ray (`cluster.runtime.ensure_ray`) and names the folder the run goes in; the pipelines
(`appliance.pipelines.training`) do both from their `Config`.

For the MLP, the driver fits the `Preprocessor` on the rows the model trains on
(`cluster.fit_data.prepare`) and ships the design matrix to the workers through the object
store; the workers run `cluster.train_loop.train_loop` on a `TorchTrainer` (Ray Train retries
up to ``max_failures`` times, from the latest checkpoint); the driver loads the final
checkpoint into a `ModelBundle` and, when given a holdout, scores it there
(`cluster.evaluate`). The other kinds are `cluster.train_xgboost` and `cluster.train_custom`;
every kind shares `cluster.train_run` (run folder, retries, failures, `FitResult`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from appliance.names import check_name
from cluster.bundle import ModelBundle, output_width
from cluster.evaluate import evaluate
from cluster.fit_data import prepare
from cluster.train_params import resolve_params
from cluster.train_run import (
    DEFAULT_CHECKPOINTS_TO_KEEP,
    DEFAULT_MAX_FAILURES,
    FitResult,
    check_fault_tolerance,
    place_run,
    run_config,
    run_digest,
    run_trainer,
)

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent


def fit(
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
    kind: str = "mlp",
    function: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> FitResult:
    """Train a model on every row of `table` with Ray Train, and score it on `holdout`.

    Ray must be started or joined already (`cluster.runtime.ensure_ray`); bad input is refused
    before Ray is touched.

    Args:
        table: training rows: every column but `label` is a feature. All of them train the
            model, except the validation slice early stopping keeps back when it is on.
        label: name of the target column: 0/1 for binary, int or string classes for
            multiclass, numbers for regression.
        categorical: names of the categorical features (one-hot encoded); others are numerical.
        params: training params, see `cluster.train_params.resolve_params` (None: all
            defaults).
        seed: seeds the validation slice, weight init and batch order.
        storage_path: folder for Ray Train runs; the run folder is ``{name}-{digest}`` in it
            (`cluster.train_run`).
        num_workers: Ray Train workers (data-parallel; default 1).
        use_gpu: train on GPUs; None (default) means when the Ray cluster has one per worker.
        name: run name prefix (default "train").
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
        RunFailed: Ray is not started, or the training run failed after its retries (the
            cause on one line, and chained).
    """
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
    return _fit_mlp(table, label=label, categorical=categorical, params=params, seed=seed,
                    storage_path=storage_path, num_workers=num_workers, use_gpu=use_gpu,
                    name=name, holdout=holdout, task=task, max_failures=max_failures,
                    checkpoints_to_keep=checkpoints_to_keep, on_progress=on_progress)


def _fit_mlp(
    table: pa.Table, *, label: str, categorical: list[str], params: dict[str, Any] | None,
    seed: int, storage_path: str | Path, num_workers: int, use_gpu: bool | None, name: str,
    holdout: pa.Table | None, task: str, max_failures: int, checkpoints_to_keep: int,
    on_progress: Callable[[ProgressEvent], None] | None,
) -> FitResult:
    """`fit` for the MLP kind (the arguments are `fit`'s)."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from cluster.progress import ProgressListener
    from cluster.train_loop import load_module, train_loop

    started = time.perf_counter()
    resolved = resolve_params(params, kind="mlp")
    check_name("run name", name)
    data = prepare(table, label=label, categorical=categorical, resolved=resolved, seed=seed,
                   num_workers=num_workers, task=task)
    n_valid = len(data.valid_idx)
    outputs = output_width(task, data.kept.get("classes"))
    use_gpu, storage = place_run(storage_path, num_workers, use_gpu)
    digest = run_digest(data.x_train, data.y_train, resolved, int(seed), num_workers, use_gpu)
    run_name = f"{name}-{digest}"

    with ProgressListener(on_progress) as listener:
        trainer = TorchTrainer(
            train_loop,
            train_loop_config={
                "progress": listener.sink,
                "x_ref": ray.put(data.x_train),
                "y_ref": ray.put(data.y_train),
                "xv_ref": ray.put(data.x_valid) if n_valid else None,
                "yv_ref": ray.put(data.y_valid) if n_valid else None,
                "width": data.pre.width,
                "outputs": outputs,
                "task": task,
                "params": resolved,
                "seed": int(seed),
            },
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=run_config(run_name, storage, max_failures, checkpoints_to_keep),
        )
        result = run_trainer(trainer, run_name)

    module, epochs = load_module(result.checkpoint, data.pre.width, resolved, outputs)
    bundle = ModelBundle(data.pre, module, resolved["hidden"], resolved["layers"], label,
                         task=task, classes=data.kept.get("classes"),
                         target=data.kept.get("target"))
    return FitResult(
        bundle=bundle,
        metrics=evaluate(bundle, holdout, label) if holdout is not None else {},
        train_rows=len(data.train_idx),
        valid_rows=n_valid,
        seconds=time.perf_counter() - started,
        device="cuda" if use_gpu else "cpu",
        params=resolved,
        run_path=str(storage / run_name),
        epochs=epochs,
        restarts=listener.restarts.count,
        resumed_from=list(listener.restarts.resumed_from),
    )
