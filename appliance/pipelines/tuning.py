"""Dataset version -> a sweep on Ray Tune -> the best configuration retrained and registered.

`tune` records a parent run of kind "tune", splits off the spec's holdout (kept for the final
evaluation only), keeps a seeded validation slice of the training part that every trial is
scored on, and runs the sweep (`cluster.tune.sweep`, ASHA). Each trial becomes a child run of
kind "trial" with its params, its last validation metrics and how it ended ("finished",
"stopped" by ASHA, or "failed"). The best trial's params are then trained on the whole
training part by `training.start`/`training.resume`, the same pipeline as `appliance train`
(bundle, holdout metrics, drift profile, calibration, registration), as a run whose parent is
the tuning run, so the registered version's lineage names the sweep it came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from sqlmodel import Session, SQLModel

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import TuningFailed
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor import integrity
from appliance.pipelines import training
from appliance.pipelines.spec import TrainSpec
from appliance.pipelines.split import holdout_split
from appliance.pipelines.tune_spec import TuneSpec, load_tuning
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import Run, User

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent


class TrialPublic(SQLModel):
    """One trial of a sweep, as recorded (its child run)."""

    run: str
    trial_id: str
    status: str  # "finished", "stopped" (ASHA stopped it early) or "failed"
    epochs: int  # its budget used: epochs, or boosting rounds for the xgboost kind
    params: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None


class RegisteredPublic(SQLModel):
    """The model version the best trial's params were retrained and registered as."""

    model: str
    version: int
    run: str
    metrics: dict[str, Any]
    digest: str


class TuningPublic(SQLModel):
    """What a sweep did: its run, every trial, the best one and the version it became."""

    run: str
    model: str
    dataset: str
    metric: str
    mode: str
    max_concurrent_trials: int
    trials: list[TrialPublic]
    stopped_early: int
    best: TrialPublic
    registered: RegisteredPublic
    seconds: float


def _valid_split(table: pa.Table, seed: int, fraction: float) -> tuple[pa.Table, pa.Table]:
    """(the rows trials train on, the seeded validation slice they are scored on)."""
    n = table.num_rows
    order = np.random.default_rng([int(seed), 0x7E57]).permutation(n)
    k = max(1, int(round(n * fraction)))
    return table.take(np.sort(order[k:])), table.take(np.sort(order[:k]))


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]


def _record_trials(session: Session, parent: Run, ds, trials, actor: str) -> list[TrialPublic]:
    """A child run per trial, with what it trained with, reported and how it ended."""
    out = []
    for t in trials:
        child = models.start_run(session, model=parent.model_name, dataset=ds,
                                 spec={"tuning_run": parent.id, "trial_id": t.trial_id},
                                 params=t.params, seed=parent.seed, actor=actor)
        child.kind, child.parent_run_id = "trial", parent.id
        metrics = {**t.metrics, "epochs": t.steps}
        models.finish_run(session, child, metrics=metrics, device="cpu", error=t.error)
        # When it really ran, not when it was recorded; "stopped" says ASHA ended it early.
        if t.ended_at is not None:
            child.finished_at = dt.datetime.fromtimestamp(t.ended_at, dt.timezone.utc)
            child.started_at = child.finished_at - dt.timedelta(seconds=t.seconds)
        child.status = t.status
        session.add(child)
        out.append(TrialPublic(run=child.id, trial_id=t.trial_id, status=t.status,
                               epochs=t.steps, params=t.params, metrics=metrics,
                               error=t.error))
    return out


def _best(trials: list[TrialPublic], metric: str, mode: str) -> TrialPublic | None:
    """The trial whose last report was best on `metric` (None when none reported it)."""
    scored = [t for t in trials if t.status != "failed" and t.metrics.get(metric) is not None]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda t: t.metrics[metric])


@operation("tune")
def tune(cfg: Config, user: User, spec: TrainSpec | Path, tuning: TuneSpec | None = None,
         on_progress: Callable[[ProgressEvent], None] | None = None, *,
         on_spec: Callable[[TrainSpec, TuneSpec], None] | None = None) -> TuningPublic:
    """Run the sweep `tuning` describes over `spec`'s data, and register the best as the
    model's next version (a candidate: promotion is a separate, gated step).

    Args:
        cfg: appliance configuration (Ray address, store, artifacts).
        user: the acting user (needs the "operate" permission).
        spec: the validated training spec (data, label, task, kind, fixed params, seed,
            holdout), or the path of a spec file with a [tune] table, read only once the
            permission is settled (so someone who may not tune learns nothing from its errors).
        tuning: its validated [tune] table (`appliance.pipelines.tune_spec`); None (the
            default) when `spec` is a path.
        on_progress: called with a `cluster.progress.ProgressEvent` as each trial starts,
            reports and ends (its `trial` set), then with the retraining's steps (`trial`
            None); default None.
        on_spec: called with the specs read from a file, before anything runs (default None).

    Raises:
        PermissionDenied: `user` may not operate.
        InvalidInput: a missing or invalid spec file, bad params, a missing dataset or column.
        TuningFailed: the sweep failed, or no trial reported the metric (exit 1).
    """
    require(user, "operate")
    if not isinstance(spec, TrainSpec):
        spec, tuning = load_tuning(Path(spec))
        if on_spec is not None:
            on_spec(spec, tuning)
    # Deferred: Ray and torch are only needed when a sweep actually runs.
    import ray

    from cluster import runtime
    from cluster import tune as ray_tune

    started = time.perf_counter()
    kind = ray_tune.KINDS[tuning.kind]
    kind.resolve_params(spec.params)
    if spec.kind == "custom":
        # An unimportable function is bad input, refused before a run is recorded.
        from cluster.train_custom import resolve_function

        resolve_function(spec.function)
    store = ArtifactStore(cfg.artifacts)
    with integrity.alerting(cfg), session_scope(cfg.db_url) as session:
        ds = datasets.resolve(session, spec.dataset)
        table = datasets.load(store, ds)
        training._check_columns(spec, table.column_names)
        models.ensure_model(session, spec.model, owner=user.name, team=user.team)
        parent = models.start_run(
            session, model=spec.model, dataset=ds,
            spec={**spec.to_dict(), "tune": tuning.to_dict()}, params=spec.params,
            seed=spec.seed, actor=user.name,
        )
        parent.kind = "tune"
        session.add(parent)
        dataset_ref = f"{ds.name}:{ds.version}"
    # The holdout is only for the final evaluation of the retrained best: trials never see it.
    train_part, _ = holdout_split(table, spec.seed, spec.holdout, spec.split)
    fit_rows, valid_rows = _valid_split(train_part, spec.seed, tuning.valid_fraction)
    runtime.ensure_ray(cfg)
    # One CPU per trial: never more at once than the cluster has CPUs for.
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    concurrent = min(tuning.max_concurrent_trials, cpus)
    try:
        trials = ray_tune.sweep(
            kind, fit_rows, valid_rows, label=spec.label, categorical=spec.categorical,
            task=spec.task, seed=spec.seed, fixed=spec.params, space=tuning.space,
            metric=tuning.metric, mode=tuning.mode, num_samples=tuning.num_samples,
            max_steps=tuning.max_epochs, grace_period=tuning.grace_period,
            reduction_factor=tuning.reduction_factor, max_concurrent=concurrent,
            storage_path=str(cfg.artifacts / "ray_results"), name=f"tune-{parent.id}",
            function=spec.function, on_progress=on_progress,
        )
    except Exception as exc:
        with session_scope(cfg.db_url) as session:
            models.finish_run(session, session.merge(parent), metrics={}, device=None,
                              error=_one_line(exc))
        raise TuningFailed(f"tuning run {parent.id} failed: {_one_line(exc)}") from exc

    with session_scope(cfg.db_url) as session:
        parent = session.merge(parent)
        ds = datasets.resolve(session, dataset_ref)
        recorded = _record_trials(session, parent, ds, trials, user.name)
        best = _best(recorded, tuning.metric, tuning.mode)
        stopped = sum(t.status == "stopped" for t in recorded)
        summary = {"metric": tuning.metric, "mode": tuning.mode, "trials": len(recorded),
                   "stopped_early": stopped,
                   "failed": sum(t.status == "failed" for t in recorded),
                   "max_concurrent_trials": concurrent,
                   "train_rows": fit_rows.num_rows, "valid_rows": valid_rows.num_rows}
        if best is None:
            error = f"no trial reported {tuning.metric!r}"
            models.finish_run(session, parent, metrics=summary, device="cpu", error=error)
        else:
            summary.update(best_run=best.run, best_trial=best.trial_id,
                           best_value=best.metrics[tuning.metric])
            models.finish_run(session, parent, metrics=summary, device="cpu")
    if best is None:
        raise TuningFailed(f"tuning run {parent.id}: no trial reported {tuning.metric!r} "
                           f"({summary['failed']} of {len(recorded)} failed)")

    # The best configuration, trained for as many epochs (rounds) as it was judged on, on the
    # whole training part, through the same pipeline as `appliance train`, for its kind.
    params = {**spec.params, **{k: best.params[k] for k in tuning.space},
              kind.budget: best.epochs}
    # Pinned to the version the trials saw, even if a newer one was added meanwhile.
    final = dataclasses.replace(spec, dataset=dataset_ref, params=params)

    def _child_of_tuning(session: Session, run: Run) -> None:
        run.parent_run_id = parent.id
        session.add(run)

    outcome = training.resume(cfg, user, final,
                              training.start(cfg, user, final, on_started=_child_of_tuning),
                              on_progress)
    mv = outcome.version
    return TuningPublic(
        run=parent.id, model=spec.model, dataset=dataset_ref, metric=tuning.metric,
        mode=tuning.mode, max_concurrent_trials=concurrent, trials=recorded,
        stopped_early=stopped, best=best,
        registered=RegisteredPublic(model=mv.model_name, version=mv.version,
                                    run=outcome.run_id, metrics=outcome.metrics,
                                    digest=mv.digest),
        seconds=round(time.perf_counter() - started, 2),
    )
