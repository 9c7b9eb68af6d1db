"""The user's own PyTorch training function as a model kind ("custom"), on Ray Train.

The spec names it as ``function = "module:function"``. The contract (README, "Your own training
function"):

- It is called once in every Ray Train worker with one argument, a `CustomContext`: this
  worker's shard of the design matrix (``x``, float32, already preprocessed) and its targets
  (``y``: 0/1 floats for binary, class indices for multiclass, the standardised label for
  regression), the task, ``width`` (design columns) and ``outputs`` (raw outputs the model must
  give per row), the spec's ``[params]`` as given, the seed, the rank and world size, the
  device, the task's loss (``loss(raw, y)``), ``prepare_model`` (DDP across the workers), and
  ``report(metrics, state=None)`` / ``restore()`` to report progress and to checkpoint and
  resume (rank 0 keeps the state; a restarted worker gets the last one back).
- It returns an ``nn.Module`` mapping the (rows, width) design matrix to (rows, outputs) raw
  outputs: a logit for binary, one logit per class for multiclass, the standardised value for
  regression.

The returned module is traced (TorchScript) on rank 0 and saved with the same `Preprocessor`
as the other kinds, into one bundle that serving loads without the user's code.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from appliance.errors import InvalidInput, RunFailed
from appliance.names import check_name
from cluster.bundle import ModelBundle, output_width
from cluster.evaluate import evaluate
from cluster.fit_data import prepare
from cluster.train_epoch import TaskLoss, shard_rows
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

_STATE_FILE, _MODEL_FILE = "state.pt", "model.ts"


def resolve_function(ref: Any) -> Callable[..., Any]:
    """The callable `ref` ("module:function") names, imported here.

    Raises:
        InvalidInput: `ref` is not of that form, its module cannot be imported, or it names no
            callable.
    """
    if not isinstance(ref, str) or ref.count(":") != 1 or not all(ref.split(":")):
        raise InvalidInput(f"training function must be 'module:function', got {ref!r}")
    module_name, name = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the spec's problem, named as such
        raise InvalidInput(f"cannot import module {module_name!r} of training function "
                           f"{ref!r}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise InvalidInput(f"module {module_name!r} has no callable {name!r}")
    return fn


def load_function(ref: Any) -> Callable[..., Any]:
    """The callable `ref` names (`resolve_function`), made to travel by value to Ray's
    workers, so they need not have the user's module on their path.

    Raises:
        InvalidInput: as `resolve_function`.
    """
    from ray import cloudpickle

    fn = resolve_function(ref)
    cloudpickle.register_pickle_by_value(importlib.import_module(fn.__module__))
    return fn


@dataclasses.dataclass
class CustomContext:
    """What a custom training function receives (see the module docstring)."""

    x: torch.Tensor
    y: torch.Tensor
    task: str
    width: int
    outputs: int
    params: dict[str, Any]
    seed: int
    rank: int
    world_size: int
    device: torch.device
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` on this worker's device, wrapped in DDP when there are several workers."""
        import ray.train.torch

        return ray.train.torch.prepare_model(module)

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """Report `metrics` (plain numbers); with `state` (anything `torch.save` takes, e.g.
        state dicts and the epoch), rank 0 also checkpoints it for `restore`. Every worker must
        call it the same number of times."""
        import ray.train

        if state is None or self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, Path(folder) / _STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def restore(self) -> dict[str, Any] | None:
        """The last `state` reported, when this run is resuming; else None."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            path = Path(folder) / _STATE_FILE
            return torch.load(path, map_location="cpu", weights_only=True) if path.exists() \
                else None


def _train_loop(config: dict[str, Any]) -> None:
    """Per-worker function: calls the user's function, then rank 0 saves what it returned."""
    import ray
    import ray.train
    import ray.train.torch

    ctx_ = ray.train.get_context()
    rank, world = ctx_.get_world_rank(), ctx_.get_world_size()
    torch.manual_seed(config["seed"])
    x_all, y_all = ray.get(config["x_ref"]), ray.get(config["y_ref"])
    rows = shard_rows(len(y_all), rank, world)
    device = ray.train.torch.get_device()
    ctx = CustomContext(
        x=torch.from_numpy(np.array(x_all[rows])).to(device),
        y=torch.from_numpy(np.array(y_all[rows])).to(device),
        task=config["task"], width=config["width"], outputs=config["outputs"],
        params=dict(config["params"]), seed=config["seed"], rank=rank, world_size=world,
        device=device, loss=TaskLoss(config["task"]),
    )
    module = config["function"](ctx)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"the training function returned {type(module).__name__}, not an "
                        f"nn.Module")
    module = module.module if hasattr(module, "module") else module
    if rank != 0:
        ray.train.report({"done": 1})
        return
    module = module.to("cpu").eval()
    example = torch.from_numpy(np.array(x_all[: min(len(x_all), 8)]))
    with torch.no_grad():
        traced = torch.jit.trace(module, example)
    with tempfile.TemporaryDirectory() as folder:
        torch.jit.save(traced, str(Path(folder) / _MODEL_FILE))
        ray.train.report({"done": 1}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def fit_custom(
    table: pa.Table,
    *,
    label: str,
    categorical: list[str],
    params: dict[str, Any] | None,
    seed: int,
    function: str,
    storage_path: str | Path,
    num_workers: int = 1,
    use_gpu: bool | None = None,
    name: str = "train",
    holdout: pa.Table | None = None,
    task: str = "binary",
    max_failures: int = DEFAULT_MAX_FAILURES,
    checkpoints_to_keep: int = DEFAULT_CHECKPOINTS_TO_KEEP,
) -> FitResult:
    """Train the user's `function` ("module:function") on every row of `table` with Ray Train.

    The other arguments are `cluster.train.fit`'s; params are passed to the function as given.

    Raises:
        InvalidInput: bad arguments, columns, labels or function (the message names which),
            or more workers or GPUs than the Ray cluster has.
        RunFailed: Ray is not started, or the training run failed after its retries (the
            cause on one line, and chained), or it saved no model.
    """
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    resolved = resolve_params(params, kind="custom")
    fn = load_function(function)
    check_name("run name", name)
    # No early stopping slice of ours: the function sees every training row.
    data = prepare(table, label=label, categorical=categorical,
                   resolved={"early_stopping": 0, "valid_fraction": 0.0}, seed=seed,
                   num_workers=num_workers, task=task)
    use_gpu, storage = place_run(storage_path, num_workers, use_gpu)
    run_name = f"{name}-" + run_digest(data.x_train, data.y_train,
                                       {"kind": "custom", "function": function, **resolved},
                                       int(seed), num_workers, use_gpu)
    classes = data.kept.get("classes")
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "x_ref": ray.put(data.x_train), "y_ref": ray.put(data.y_train),
            "width": data.pre.width, "outputs": output_width(task, classes), "task": task,
            "params": resolved, "seed": int(seed), "function": fn,
        },
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=run_config(run_name, storage, max_failures, checkpoints_to_keep),
    )
    result = run_trainer(trainer, run_name)
    with result.checkpoint.as_directory() as folder:
        path = Path(folder) / _MODEL_FILE
        if not path.exists():
            raise RunFailed(f"training run {run_name} saved no model")
        module = torch.jit.load(io.BytesIO(path.read_bytes()), map_location="cpu")
    bundle = ModelBundle(data.pre, module, 0, 0, label, task=task, classes=classes,
                         target=data.kept.get("target"), kind="custom")
    return FitResult(
        bundle=bundle,
        metrics=evaluate(bundle, holdout, label) if holdout is not None else {},
        train_rows=len(data.train_idx), valid_rows=0,
        seconds=time.perf_counter() - started, device="cuda" if use_gpu else "cpu",
        params=resolved, run_path=str(storage / run_name),
    )
