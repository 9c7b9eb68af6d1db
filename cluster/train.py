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
from appliance.monitor.metrics import evaluation_metrics, roc_auc
from appliance.names import check_name
from cluster.bundle import TASKS, ModelBundle, Preprocessor, build_mlp, output_width

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent

DEFAULT_PARAMS: dict[str, Any] = {
    "hidden": 32,
    "layers": 2,
    "epochs": 10,
    "lr": 3e-3,
    "batch_size": 512,
    "weight_decay": 1e-4,
    "early_stopping": 0,
    "valid_fraction": 0.1,
}
# name -> (type, lowest, highest, whether the lowest bound is allowed)
_PARAM_RULES: dict[str, tuple[type, float, float, bool]] = {
    "hidden": (int, 1, 4096, True),
    "layers": (int, 0, 16, True),
    "epochs": (int, 1, 10_000, True),
    "lr": (float, 0.0, 1.0, False),
    "batch_size": (int, 1, 1 << 20, True),
    "weight_decay": (float, 0.0, 1.0, True),
    "early_stopping": (int, 0, 10_000, True),
    "valid_fraction": (float, 0.0, 0.5, False),
}
_MIN_ROWS = 10
DEFAULT_MAX_FAILURES = 2
DEFAULT_CHECKPOINTS_TO_KEEP = 2
_CHECKPOINT_FILE = "model.pt"
# A report waits for the controller's next poll of its workers (one report per poll), so with
# a checkpoint every epoch the poll interval bounds each epoch's report cost.
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


def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Return `params` with defaults filled in, after checking every key and value.

    Args:
        params: any subset of DEFAULT_PARAMS (None or {} means all defaults): hidden (units per
            layer, 32), layers (hidden layers, 2), epochs (10), lr (AdamW learning rate, 3e-3),
            batch_size (per worker, 512), weight_decay (1e-4), early_stopping (stop after this
            many epochs without a lower validation loss, keeping the best epoch's weights; 0,
            the default, trains every epoch on every row), valid_fraction (share of the rows
            kept back as the validation slice when early_stopping is on, 0.1).

    Raises:
        InvalidInput: an unknown key, or a value of the wrong type or out of range, or
            valid_fraction without early_stopping (it would hold rows back for nothing).
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput(f"params must be a mapping of name to value, got {params!r}")
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise InvalidInput(f"unknown training param(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    out = dict(DEFAULT_PARAMS)
    for key, value in params.items():
        kind, low, high, low_ok = _PARAM_RULES[key]
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if kind is int and not bad and value != int(value):
            bad = True
        if bad:
            raise InvalidInput(f"training param {key!r} must be {kind.__name__}, got {value!r}")
        value = kind(value)
        below = value < low if low_ok else value <= low
        if below or value > high or (kind is float and not math.isfinite(value)):
            lower = "[" if low_ok else "("
            raise InvalidInput(
                f"training param {key!r} must be in {lower}{low}, {high}], got {value!r}"
            )
        out[key] = value
    if "valid_fraction" in params and not out["early_stopping"]:
        raise InvalidInput(
            "training param 'valid_fraction' only applies with 'early_stopping' > 0; without "
            "it the model trains on every row"
        )
    return out


def table_columns(table: pa.Table, features: list[str], categorical: list[str]) -> dict:
    """Return `features` of `table` as the NumPy columns the bundle expects.

    Numerical features become float64 (nulls -> NaN, which the bundle imputes); categorical ones
    become object arrays of str.

    Raises:
        InvalidInput: a feature is absent, or a non-numeric one is not listed as categorical.
    """
    out: dict[str, np.ndarray] = {}
    for name in features:
        if name not in table.column_names:
            raise InvalidInput(f"missing feature {name!r}; the table has {table.column_names}")
        col = table.column(name)
        if name in categorical:
            # Nulls stay None, which the bundle encodes as str(None), as it does at serving.
            out[name] = np.array(col.cast(pa.string()).to_pylist(), dtype=object)
            continue
        t = col.type
        if not (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_boolean(t)
            or pa.types.is_null(t)
            or pa.types.is_decimal(t)
        ):
            raise InvalidInput(
                f"feature {name!r} has type {t}, not a number; list it in categorical if it is a "
                f"category"
            )
        out[name] = np.asarray(
            col.cast(pa.float64()).fill_null(float("nan")).to_numpy(), dtype=np.float64
        )
    return out


def _label_column(table: pa.Table, label: str) -> pa.ChunkedArray:
    if label not in table.column_names:
        raise InvalidInput(f"label column {label!r} not found; the table has {table.column_names}")
    col = table.column(label)
    if col.null_count:
        raise InvalidInput(f"label column {label!r} has {col.null_count} missing value(s)")
    return col


def _labels(table: pa.Table, label: str) -> np.ndarray:
    """A binary classifier's labels: int64 0/1."""
    col = _label_column(table, label)
    try:
        y = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(f"label column {label!r} must hold 0/1, got type {col.type}") from exc
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise InvalidInput(
            f"label column {label!r} must hold 0/1 (binary classifier), got {y[bad][0]!r}; "
            f"is the task multiclass or regression?"
        )
    return y.astype(np.int64)


def _class_values(table: pa.Table, label: str) -> list:
    """A multiclass label column as Python ints or strings (one kind for the whole column)."""
    col = _label_column(table, label)
    if pa.types.is_integer(col.type) or pa.types.is_boolean(col.type):
        return [int(v) for v in col.cast(pa.int64()).to_pylist()]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.to_pylist()
    raise InvalidInput(
        f"label column {label!r} must hold integer or string classes for a multiclass task, "
        f"got type {col.type}"
    )


def _class_index(values: list, classes: list) -> np.ndarray:
    """Index of each value in `classes`; -1 for a class not among them."""
    index = {c: i for i, c in enumerate(classes)}
    return np.fromiter((index.get(v, -1) for v in values), np.int64, len(values))


def _values(table: pa.Table, label: str) -> np.ndarray:
    """A regressor's targets: finite float64."""
    col = _label_column(table, label)
    try:
        y = np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"label column {label!r} must hold numbers for a regression task, got type "
            f"{col.type}"
        ) from exc
    if not np.isfinite(y).all():
        raise InvalidInput(f"label column {label!r} holds a non-finite value")
    return y


# tests/cluster/test_train.py still imports the AUC under its old private name here.
_auc = roc_auc


def evaluate(bundle: ModelBundle, table: pa.Table, label: str) -> dict[str, Any]:
    """Score `bundle` on the labelled `table` with its task's metrics.

    Args:
        bundle: the model to score.
        table: rows with the bundle's features (extra columns are ignored) and `label`.
        label: name of the target column.

    Returns:
        What `appliance.monitor.metrics.evaluation_metrics` returns for the bundle's task:
        binary {"accuracy", "auc", "log_loss", "rows"} (accuracy at the bundle's threshold,
        AUC None with one class only); multiclass {"accuracy", "macro_f1", "log_loss",
        "rows"} (a class the bundle never saw counts as wrong); regression {"rmse", "mae",
        "r2", "rows"}.

    Raises:
        InvalidInput: `table` is empty, or lacks a feature or the label, or a label the task
            cannot have.
    """
    if table.num_rows == 0:
        raise InvalidInput("cannot evaluate on an empty table (0 rows)")
    columns = table_columns(table, bundle.feature_names, bundle.categorical)
    out = bundle.score(columns)
    if bundle.task == "multiclass":
        y = _class_index(_class_values(table, label), bundle.classes or [])
        return evaluation_metrics("multiclass", y, out.probabilities)
    if bundle.task == "regression":
        return evaluation_metrics("regression", _values(table, label), out.scores)
    return evaluation_metrics("binary", _labels(table, label), out.scores,
                              threshold=bundle.threshold)


def _targets(table: pa.Table, label: str, task: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(what the network learns for each row, what the bundle must keep to undo it).

    binary: 0/1 as float32; multiclass: the class index as int64 (and the sorted classes);
    regression: the label standardised, as float32 (and its mean and std).
    """
    if task == "multiclass":
        values = _class_values(table, label)
        classes = sorted(set(values))
        if len(classes) < 2:
            raise InvalidInput(
                f"label {label!r} has only class {classes[0]!r} in the training rows; "
                f"a classifier needs two or more"
            )
        return _class_index(values, classes), {"classes": classes}
    if task == "regression":
        y = _values(table, label)
        mean, std = float(y.mean()), float(y.std()) or 1.0
        return ((y - mean) / std).astype(np.float32), {"target": (mean, std)}
    y = _labels(table, label)
    if y.min() == y.max():
        raise InvalidInput(
            f"label {label!r} has only class {int(y[0])} in the training rows; "
            f"a classifier needs both 0 and 1"
        )
    return y.astype(np.float32), {}


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
        model.train()
        # Seeded per epoch, so an epoch replayed after a restart sees the same batches.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + rank)
        order = torch.randperm(per, generator=gen).to(device)
        total = 0.0
        for start in range(0, per, batch):
            idx = order[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        metrics: dict[str, Any] = {"epoch": epoch, "loss": total / max(per, 1)}
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


def _digest(x: np.ndarray, y: np.ndarray, params: dict, seed: int, workers: int, gpu: bool) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(json.dumps([params, seed, workers, gpu], sort_keys=True).encode())
    return h.hexdigest()[:12]


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
    max_failures: int = DEFAULT_MAX_FAILURES,
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP,
    on_progress: Callable[[ProgressEvent], None] | None = None,
) -> FitResult:
    """Train the MLP on every row of `table` with Ray Train, and score it on `holdout`.

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
        max_failures: times Ray Train may restart the workers from the last checkpoint after
            one dies or raises (default 2).
        checkpoints_to_keep: epoch checkpoints kept in the run folder (default 2).
        on_progress: called in a driver thread with each epoch's `ProgressEvent` (default
            None).

    Raises:
        InvalidInput: bad params, arguments, columns or labels (the message names which).
        InsufficientResources: the Ray cluster cannot hold the workers (`cluster.capacity`).
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

    started = time.perf_counter()
    resolved = resolve_params(params)
    check_name("run name", name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise InvalidInput(f"num_workers must be a positive integer, got {num_workers!r}")
    if not isinstance(table, pa.Table):
        raise InvalidInput(f"table must be a pyarrow.Table, got {type(table).__name__}")
    unknown = sorted(set(categorical) - set(table.column_names))
    if unknown:
        raise InvalidInput(f"categorical feature(s) {unknown} not in the table's columns")
    if label in categorical:
        raise InvalidInput(f"label {label!r} cannot also be a categorical feature")
    if task not in TASKS:
        raise InvalidInput(f"task must be one of {list(TASKS)}, got {task!r}")
    check_fault_tolerance(max_failures, checkpoints_to_keep)

    _label_column(table, label)
    features = [c for c in table.column_names if c != label]
    if not features:
        raise InvalidInput(f"the table has no feature columns besides the label {label!r}")
    n = table.num_rows
    n_valid = max(1, round(n * resolved["valid_fraction"])) if resolved["early_stopping"] else 0
    if n - n_valid < max(_MIN_ROWS, num_workers):
        raise InvalidInput(
            f"too few rows to train: {n} rows leave {n - n_valid} after the validation slice "
            f"(need >= {max(_MIN_ROWS, num_workers)})"
        )
    # The validation slice is a seeded sample of the given rows, never of the holdout.
    order = np.random.default_rng([int(seed), 0xE5]).permutation(n)
    train_idx, valid_idx = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    train_table = table.take(pa.array(train_idx))
    y_train, kept = _targets(train_table, label, task)
    # Preprocessor fitted on the rows the model trains on only, so no other row is seen.
    pre = Preprocessor.fit(table_columns(train_table, features, categorical), categorical)
    x_train = pre.transform(table_columns(train_table, pre.feature_names, categorical))
    x_valid = y_valid = None
    if n_valid:
        valid_table = table.take(pa.array(valid_idx))
        x_valid = pre.transform(table_columns(valid_table, pre.feature_names, categorical))
        if task == "multiclass":
            # A class only the slice holds is -1, which the loss ignores.
            y_valid = _class_index(_class_values(valid_table, label), kept["classes"])
        elif task == "regression":
            mean, std = kept["target"]
            y_valid = ((_values(valid_table, label) - mean) / std).astype(np.float32)
        else:
            y_valid = _labels(valid_table, label).astype(np.float32)
    outputs = output_width(task, kept.get("classes"))

    if not ray.is_initialized():
        ensure_ray(load_config())
    use_gpu = resolve_gpu(num_workers, use_gpu)
    check_capacity(num_workers, use_gpu)
    storage = Path(storage_path) if storage_path else load_config().home / "ray_results"
    storage.mkdir(parents=True, exist_ok=True)
    run_name = f"{name}-{_digest(x_train, y_train, resolved, int(seed), num_workers, use_gpu)}"

    listener = ProgressListener(on_progress)
    config = {
            "x_ref": ray.put(x_train),
            "y_ref": ray.put(y_train),
            "xv_ref": ray.put(x_valid) if n_valid else None,
            "yv_ref": ray.put(y_valid) if n_valid else None,
            "width": pre.width,
            "outputs": outputs,
            "task": task,
            "params": resolved,
            "seed": int(seed),
    }
    # Ray Train's controller polls its workers every 2 s and takes in one report per poll, which
    # dominates a fit of a few seconds; a faster poll is cheap with this few workers. Ray reads
    # the variable from the driver's environment when the run starts; an operator's own setting
    # wins.
    previous = os.environ.get(_POLL_ENV)
    os.environ.setdefault(_POLL_ENV, _POLL_S)
    try:
        with listener:
            trainer = TorchTrainer(
                _train_loop,
                train_loop_config={**config, "progress": listener.sink},
                scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=bool(use_gpu)),
                run_config=RunConfig(
                    name=run_name,
                    storage_path=str(storage),
                    failure_config=FailureConfig(max_failures=max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
                ),
            )
            result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors in its own types; keep the chain
        raise RunFailed(f"training run {run_name} failed: {_cause(exc)}") from exc
    finally:
        if previous is None:
            os.environ.pop(_POLL_ENV, None)
    if result.checkpoint is None:
        raise RunFailed(f"training run {run_name} finished without a checkpoint")

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
