"""Hyperparameter sweeps on Ray Tune with ASHA, for any model kind that has a trial.

A kind plugs in with a `TrialKind`: its default params and their check, the param that sets
how long it trains (`budget`: epochs of the MLP or of the user's function, boosting rounds of
the trees), the data every trial shares (`prepare`, fitted on the training slice only) and the
trial itself, a function trainable that trains one configuration and calls `ray.tune.report`
after every step (an epoch, a block of rounds) with the validation slice's metrics and how
much of its budget it has used (`progress`). `sweep` samples `space`, runs the trials (one
CPU each, at most `max_concurrent` at once), lets ASHA stop the weak ones, tells `on_progress`
how each trial goes (`cluster.tune_progress`), and says how each ended.

Kinds: "mlp" (`cluster.tune_mlp`), "xgboost" (`cluster.tune_xgboost`) and "custom", the
user's `module:function` (`cluster.tune_custom`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from appliance.names import check_name
from cluster import tune_custom, tune_mlp, tune_trial, tune_xgboost
from cluster.train_params import DEFAULT_PARAMS, XGBOOST_PARAMS, resolve_params

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent

DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")
# Keys Tune adds to every report (times, ids, host): not the trial's metrics.
TUNE_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "experiment_tag", "should_checkpoint",
})


@dataclasses.dataclass(frozen=True)
class TrialKind:
    """A model kind a sweep can try.

    Args:
        name: the kind's name in the spec.
        defaults: every param with its default (the custom kind: only its budget).
        resolve_params: fills defaults in and raises InvalidInput for a bad key or value.
        budget: the param the sweep sets to its max steps (never sampled).
        fixed: params that make no sense to sample, with the reason (the sweep's message).
        prepare: (train, valid, label=, categorical=, task=, seed=, function=) -> what trials
            share.
        trial: (config, data) -> None, reporting after each step.
        progress: the reported metric that counts the budget used (ASHA's time attribute):
            "epoch" (default) or "rounds".
        unit: what the budget counts, "epoch" (default) or "round"; the spec's [tune] key for
            its max is ``max_{unit}s``.
        open_params: any param name is the kind's (the user's function takes what it likes),
            checked for shape only (default False).
    """

    name: str
    defaults: dict[str, Any]
    resolve_params: Callable[[dict[str, Any]], dict[str, Any]]
    budget: str
    fixed: dict[str, str]
    prepare: Callable[..., dict[str, Any]]
    trial: Callable[[dict[str, Any], dict[str, Any]], None]
    progress: str = "epoch"
    unit: str = "epoch"
    open_params: bool = False


_ASHA = "ASHA does the early stopping in a sweep"
_VALID = "the sweep's validation slice is [tune] valid_fraction"
KINDS: dict[str, TrialKind] = {
    "mlp": TrialKind(
        name="mlp",
        defaults=DEFAULT_PARAMS,
        resolve_params=resolve_params,
        budget="epochs",
        fixed={"epochs": "the sweep trains up to [tune] max_epochs and ASHA stops trials early",
               "early_stopping": _ASHA, "valid_fraction": _VALID},
        prepare=tune_trial.prepare,
        trial=tune_mlp.trial,
    ),
    "xgboost": TrialKind(
        name="xgboost",
        defaults=XGBOOST_PARAMS,
        resolve_params=functools.partial(resolve_params, kind="xgboost"),
        budget="num_boost_round",
        fixed={"num_boost_round": "the sweep boosts up to [tune] max_rounds and ASHA stops "
                                  "trials early",
               "early_stopping": _ASHA, "valid_fraction": _VALID},
        prepare=tune_trial.prepare,
        trial=tune_xgboost.trial,
        progress="rounds",
        unit="round",
    ),
    "custom": TrialKind(
        name="custom",
        defaults={"epochs": DEFAULT_PARAMS["epochs"]},
        resolve_params=functools.partial(resolve_params, kind="custom"),
        budget="epochs",
        fixed={"epochs": "the sweep passes [tune] max_epochs as params.epochs and ASHA stops "
                         "trials early"},
        prepare=tune_custom.prepare,
        trial=tune_custom.trial,
        open_params=True,
    ),
}


@dataclasses.dataclass
class TrialOutcome:
    """How one trial ended.

    Args:
        trial_id: Ray Tune's id of the trial.
        params: every param it trained with (defaults filled in).
        metrics: its last report: the validation slice's metrics and its progress ("epoch"
            or "rounds"), with the kind's own numbers ("loss").
        steps: its budget used: epochs, or boosting rounds (`TrialKind.unit`).
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


def steps_of(kind: TrialKind, report: dict[str, Any]) -> int:
    """The budget a trial had used at `report` (its progress metric; Tune's iteration count
    when it reported none)."""
    return int(report.get(kind.progress) or report.get("training_iteration") or 0)


def status_of(steps: int, max_steps: int, failed: bool) -> str:
    """How a trial ended: "failed", "finished" (its whole budget) or "stopped" (early)."""
    return "failed" if failed else "finished" if steps >= max_steps else "stopped"


def clean(value: Any) -> Any:
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
    function: str | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
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
        max_steps: budget (epochs, rounds) a trial that is never stopped trains.
        grace_period: budget every trial trains before ASHA may stop it.
        reduction_factor: ASHA keeps about 1 / reduction_factor of trials at each rung.
        max_concurrent: trials running at once (each holds one CPU).
        storage_path: folder for Ray Tune's experiment folders.
        name: the experiment's folder name (deterministic: the tuning run's id).
        function: the custom kind's "module:function" (default None).
        on_progress: called in the driver with a `ProgressEvent` as each trial starts,
            reports and ends (default None).

    Raises:
        RuntimeError: the sweep itself failed (the cause is chained); a failed trial is a
            `TrialOutcome` with status "failed", not an exception.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from cluster.tune_progress import TrialProgress

    check_name("tuning run name", name)
    data = kind.prepare(train, valid, label=label, categorical=categorical, task=task, seed=seed,
                        function=function)
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
            scheduler=ASHAScheduler(time_attr=kind.progress, max_t=max_steps,
                                    grace_period=grace_period,
                                    reduction_factor=reduction_factor),
            # Seeded sampling, so the same spec tries the same configurations; the limit
            # lives on the generator (Tune ignores max_concurrent_trials next to one).
            search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent),
            # One trial's actor serves the next: no second torch import per trial.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=0,
            callbacks=[TrialProgress(on_progress, kind=kind, max_steps=max_steps,
                                     shown=list(space))] if on_progress else None),
    )
    try:
        grid = tuner.fit()
    except Exception as exc:  # Tune wraps its failures in its own types; keep the chain
        raise RuntimeError(f"tuning run {name!r} failed: {exc}") from exc
    out = []
    for result in grid:
        m = result.metrics or {}
        steps = steps_of(kind, m)
        error = None
        if result.error is not None:
            error = "".join(traceback.format_exception_only(result.error)).strip()
            error = error.splitlines()[-1] if error else repr(result.error)
        status = status_of(steps, max_steps, error is not None)
        reported = {k: clean(v) for k, v in m.items() if k not in TUNE_KEYS}
        out.append(TrialOutcome(
            trial_id=str(m.get("trial_id") or result.path.rsplit("/", 1)[-1]),
            params=kind.resolve_params({k: clean(v) for k, v in result.config.items()}),
            metrics=reported, steps=steps, status=status, error=error,
            seconds=float(m.get("time_total_s") or 0.0),
            ended_at=float(m["timestamp"]) if m.get("timestamp") else None,
        ))
    return sorted(out, key=lambda t: t.trial_id)
