"""What a Ray Train run of every model kind shares: its fault-tolerance settings, where it runs
(`place_run`), its folder's name (`run_digest`), its `RunConfig`, running the trainer with a
failure on one line (`run_trainer`), and the `FitResult` it returns.

The run folder is ``{storage_path}/{name}-{digest}``, where the digest covers the training
data, params, seed and scaling. It is deterministic (no timestamps) on purpose: Ray Train V2
resumes a run whose folder already holds a checkpoint, so re-running the same fit after a
driver crash continues it, while a fit on different data or params can never pick up another
run's weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.errors import InvalidInput, RunFailed

if TYPE_CHECKING:
    from cluster.bundle import ModelBundle

DEFAULT_MAX_FAILURES = 2
DEFAULT_CHECKPOINTS_TO_KEEP = 2

# Ray Train's controller polls its workers every 2 s and takes in one report per poll, which
# dominates a fit of a few seconds; a faster poll is cheap with this few workers.
POLL_ENV, POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1"


@dataclasses.dataclass
class FitResult:
    """What a fit of any kind produced (`cluster.train.fit`).

    Args:
        bundle: the fitted model with its preprocessing, on the CPU.
        metrics: the model's metrics on the holdout the fit was given
            (`cluster.evaluate.evaluate`); empty when it was given none.
        train_rows: rows the model was trained on.
        valid_rows: rows of the validation slice early stopping watched (0 without it).
        seconds: wall-clock seconds of the whole fit, Ray Train start-up included.
        device: "cuda" when the workers trained on GPUs, else "cpu".
        params: the params used, defaults filled in.
        run_path: the Ray Train run folder (checkpoints, worker logs).
        epochs: epochs trained (fewer than params["epochs"] when early stopping stopped it;
            boosting rounds kept for xgboost).
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


def place_run(storage_path: str | Path, num_workers: int, use_gpu: bool | None) -> tuple[
        bool, Path]:
    """Where a run goes: whether its workers take GPUs, and its storage folder (created).

    Args:
        storage_path: the folder for Ray Train runs, from the caller (the pipelines pass
            ``{artifacts}/ray_results``).
        num_workers: Ray Train workers.
        use_gpu: train on GPUs; None means when the Ray cluster has one per worker.

    Raises:
        RunFailed: Ray is not started (the caller starts it: `cluster.runtime.ensure_ray`).
        InvalidInput: more workers or GPUs than the Ray cluster has (`cluster.capacity`).
    """
    import ray

    from cluster.capacity import check_capacity, resolve_gpu

    if not ray.is_initialized():
        # Ray would start a bare local instance of its own on the first ray.put otherwise.
        raise RunFailed("Ray is not started: start or join it first "
                        "(cluster.runtime.ensure_ray) before a fit")
    gpu = resolve_gpu(num_workers, use_gpu)
    check_capacity(num_workers, gpu)
    storage = Path(storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    return gpu, storage


def run_digest(
    x: np.ndarray, y: np.ndarray, params: dict, seed: int, workers: int, gpu: bool
) -> str:
    """The run folder's digest: of the training rows, params, seed and scaling."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(json.dumps([params, seed, workers, gpu], sort_keys=True).encode())
    return h.hexdigest()[:12]


def run_config(run_name: str, storage: Path, max_failures: int,
               checkpoints_to_keep: int) -> Any:
    """The `ray.train.RunConfig` of run `run_name` in `storage`, with its retries and kept
    checkpoints."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig(
        name=run_name,
        storage_path=str(storage),
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
    )


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


def run_trainer(trainer: Any, run_name: str) -> Any:
    """Run a Ray Train `trainer` and return its result, which holds a checkpoint.

    Raises:
        RunFailed: the run failed after its retries (the first worker's exception on one
            line, the whole cause chained), or ended without a checkpoint.
    """
    # Ray reads the poll interval from the driver's environment when the run starts; an
    # operator's own setting wins.
    previous = os.environ.get(POLL_ENV)
    os.environ.setdefault(POLL_ENV, POLL_S)
    try:
        result = trainer.fit()
    except Exception as exc:  # Ray wraps worker errors in its own types; keep the chain
        raise RunFailed(f"training run {run_name} failed: {_cause(exc)}") from exc
    finally:
        if previous is None:
            os.environ.pop(POLL_ENV, None)
    if result.checkpoint is None:
        raise RunFailed(f"training run {run_name} finished without a checkpoint")
    return result
