"""Hyperparameter sweeps on Ray Tune with ASHA, for any model kind that has a trial.

A kind plugs in with a `TrialKind`: its default params and their check, the param that sets
how long it trains (`budget`: one Tune iteration is one of its steps: an epoch of the MLP, a
block of boosting rounds of a tree model), the data every trial shares (`prepare`, fitted on
the training slice only) and the trial itself, a function trainable that trains one
configuration and calls `ray.tune.report` after every step with the validation slice's
metrics. `sweep` samples `space`, runs the trials (one CPU each, at most `max_concurrent` at
once), lets ASHA stop the weak ones, and says how each ended.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from appliance.names import check_name
from cluster import train as mlp_train
from cluster import tune_mlp

DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")
# Keys Tune adds to every report (times, ids, host): not the trial's metrics.
_TUNE_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint",
})


@dataclasses.dataclass(frozen=True)
class TrialKind:
    """A model kind a sweep can try.

    Args:
        name: the kind's name in the spec.
        defaults: every param with its default.
        resolve_params: fills defaults in and raises InvalidInput for a bad key or value.
        budget: the param the sweep sets to its max steps (never sampled).
        fixed: params that make no sense to sample, with the reason (the sweep's message).
        prepare: (train, valid, label=, categorical=, task=, seed=) -> what trials share.
        trial: (config, data) -> None, reporting after each step.
    """

    name: str
    defaults: dict[str, Any]
    resolve_params: Callable[[dict[str, Any]], dict[str, Any]]
    budget: str
    fixed: dict[str, str]
    prepare: Callable[..., dict[str, Any]]
    trial: Callable[[dict[str, Any], dict[str, Any]], None]


KINDS: dict[str, TrialKind] = {
    "mlp": TrialKind(
        name="mlp",
        defaults=mlp_train.DEFAULT_PARAMS,
        resolve_params=mlp_train.resolve_params,
        budget="epochs",
        fixed={"epochs": "the sweep trains up to [tune] max_epochs and ASHA stops trials early",
               "early_stopping": "ASHA does the early stopping in a sweep",
               "valid_fraction": "the sweep's validation slice is [tune] valid_fraction"},
        prepare=tune_mlp.prepare,
        trial=tune_mlp.trial,
    ),
}


@dataclasses.dataclass
class TrialOutcome:
    """How one trial ended.

    Args:
        trial_id: Ray Tune's id of the trial.
        params: every param it trained with (defaults filled in).
        metrics: its last report: the validation slice's metrics, "loss" and "epoch".
        steps: steps (epochs) it reported.
        status: "finished" (ran every step), "stopped" (ASHA stopped it early) or "failed".
        error: why it failed, on one line (None unless failed).
        seconds: wall-clock seconds it ran.
        ended_at: when it last reported (Unix time; None when it never did).
    """

    trial_id: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    steps: int
    status: str
    error: str | None
    seconds: float
    ended_at: float | None


def search_space(space: dict[str, tuple[str, list]]) -> dict[str, Any]:
    """Ray Tune's distributions for `space` (param -> (distribution, arguments)); randint's
    upper bound is inclusive here, as the spec says, and exclusive in Ray."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, (dist, args) in space.items():
        if dist == "uniform":
            out[key] = tune.uniform(*args)
        elif dist == "loguniform":
            out[key] = tune.loguniform(*args)
        elif dist == "randint":
            out[key] = tune.randint(args[0], args[1] + 1)
        else:
            out[key] = tune.choice(list(args))
    return out


def _clean(value: Any) -> Any:
    """A report value for JSON: NaN (an undefined metric) back to None, NumPy to Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sweep(
    kind: TrialKind,
    train: pa.Table,
    valid: pa.Table,
    *,
    label: str,
    categorical: list[str],
    task: str,
    seed: int,
    fixed: dict[str, Any],
    space: dict[str, tuple[str, list]],
    metric: str,
    mode: str,
    num_samples: int,
    max_steps: int,
    grace_period: int,
    reduction_factor: float,
    max_concurrent: int,
    storage_path: str,
    name: str,
) -> list[TrialOutcome]:
    """Run `num_samples` trials of `kind` over `space` with ASHA, and say how each ended.

    Ray must be running (`cluster.runtime.ensure_ray`).

    Args:
        kind: the model kind to try.
        train: rows every trial trains on.
        valid: rows every trial is scored on after each step (never the holdout).
        label, categorical, task: as in `cluster.train.fit`.
        seed: seeds the sampling of the space and every trial.
        fixed: params every trial shares (the spec's [params]).
        space: param -> (distribution, arguments), validated by the caller.
        metric, mode: what ASHA and the best trial are judged by ("min" or "max").
        num_samples: trials to run.
        max_steps: steps (epochs) a trial that is never stopped trains.
        grace_period: steps every trial trains before ASHA may stop it.
        reduction_factor: ASHA keeps about 1 / reduction_factor of trials at each rung.
        max_concurrent: trials running at once (each holds one CPU).
        storage_path: folder for Ray Tune's experiment folders.
        name: the experiment's folder name (deterministic: the tuning run's id).

    Raises:
        RuntimeError: the sweep itself failed (the cause is chained); a failed trial is a
            `TrialOutcome` with status "failed", not an exception.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    check_name("tuning run name", name)
    data = kind.prepare(train, valid, label=label, categorical=categorical, task=task, seed=seed)
    param_space = {**fixed, **search_space(space), kind.budget: max_steps}
    trainable = tune.with_resources(tune.with_parameters(kind.trial, data=data), {"cpu": 1})
    Path(storage_path).mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max_steps,
                                    grace_period=grace_period,
                                    reduction_factor=reduction_factor),
            # Seeded sampling, so the same spec tries the same configurations; the limit
            # lives on the generator (Tune ignores max_concurrent_trials next to one).
            search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent),
            # One trial's actor serves the next: no second torch import per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0),
    )
    try:
        grid = tuner.fit()
    except Exception as exc:  # Tune wraps its failures in its own types; keep the chain
        raise RuntimeError(f"tuning run {name!r} failed: {exc}") from exc
    out = []
    for result in grid:
        m = result.metrics or {}
        steps = int(m.get("training_iteration") or 0)
        error = None
        if result.error is not None:
            error = "".join(traceback.format_exception_only(result.error)).strip()
            error = error.splitlines()[-1] if error else repr(result.error)
        status = "failed" if error else "finished" if steps >= max_steps else "stopped"
        reported = {k: _clean(v) for k, v in m.items() if k not in _TUNE_KEYS}
        out.append(TrialOutcome(
            trial_id=str(m.get("trial_id") or result.path.rsplit("/", 1)[-1]),
            params=kind.resolve_params({k: _clean(v) for k, v in result.config.items()}),
            metrics=reported, steps=steps, status=status, error=error,
            seconds=float(m.get("time_total_s") or 0.0),
            ended_at=float(m["timestamp"]) if m.get("timestamp") else None,
        ))
    return sorted(out, key=lambda t: t.trial_id)
