"""Dataset version -> run on Ray Train -> registered model version with its drift profile."""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlmodel import Session, SQLModel, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import InvalidInput, RunFailed
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor import integrity
from appliance.monitor.drift import fit_reference
from appliance.monitor.estimate import check_calibration
from appliance.pipelines.spec import TrainSpec, load_spec
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets, models, provenance, runs
from appliance.store import session_scope
from appliance.store.models import Dataset, ModelVersion, Run, User
from appliance.tables import table_columns

if TYPE_CHECKING:
    from cluster.progress import ProgressEvent

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainOutcome:
    version: ModelVersion
    run_id: str
    metrics: dict
    device: str
    seconds: float

    def public(self) -> TrainedPublic:
        """The record faces show."""
        return TrainedPublic(model=self.version.model_name, version=self.version.version,
                             run=self.run_id, metrics=self.metrics, device=self.device,
                             seconds=round(self.seconds, 2), digest=self.version.digest)


class TrainedPublic(SQLModel):
    """A finished training: the version it registered, its run, metrics, device and time."""

    model: str
    version: int
    run: str
    metrics: dict
    device: str
    seconds: float
    digest: str


def _check_capacity(cfg: Config, spec: TrainSpec) -> None:
    """Refuse, in seconds, a spec whose workers the Ray cluster cannot hold (exit 2), instead
    of a run that waits for them forever (`cluster.capacity`)."""
    # Deferred: Ray is only needed when a training actually runs.
    from cluster import capacity, runtime

    runtime.ensure_ray(cfg)
    capacity.check_capacity(spec.num_workers,
                            capacity.resolve_gpu(spec.num_workers, spec.use_gpu))


def _check_columns(spec: TrainSpec, columns: list[str]) -> None:
    missing = [c for c in [spec.label, *spec.categorical] if c not in columns]
    if missing:
        raise InvalidInput(
            f"dataset {spec.dataset!r} has no column(s) {missing}; it has {columns}"
        )


def start(
    cfg: Config, user: User, spec: TrainSpec,
    on_started: Callable[[Session, Run], None] | None = None,
) -> Run:
    """Validate `spec` and record its run (status "running"), before any training.

    Args:
        cfg: appliance configuration.
        user: the acting user (needs the "operate" permission).
        spec: the validated training spec.
        on_started: called inside the transaction that records the run, so that a caller can
            record the run's id in the same commit (the retrain loop does, to resume it).

    Raises:
        CheckFailed: the dataset version failed its data contract and nobody accepted it.
    """
    # Deferred: the trainer's modules are only needed when a training actually runs.
    from cluster.train_params import resolve_params
    from cluster.train_run import check_fault_tolerance

    require(user, "operate")
    # Bad params are bad input: refuse them before a run is recorded.
    resolve_params(spec.params, kind=spec.kind)
    check_fault_tolerance(spec.max_failures, spec.checkpoints_to_keep)
    if spec.kind == "custom":
        # Deferred as above; an unimportable function is bad input, refused here too.
        from cluster.train_custom import resolve_function

        resolve_function(spec.function)
    # So is a spec the cluster cannot run: checked before the transaction that records the
    # run, because starting Ray and waiting for held resources take seconds, and on SQLite the
    # transaction holds the store's write lock.
    _check_capacity(cfg, spec)
    store = ArtifactStore(cfg.artifacts)
    with integrity.alerting(cfg), session_scope(cfg.db_url) as session:
        ds = datasets.resolve(session, spec.dataset)
        # A version that broke its data contract trains only once someone accepted it.
        datasets.check_trainable(ds)
        table = datasets.load(store, ds)
        _check_columns(spec, table.column_names)
        models.ensure_model(session, spec.model, owner=user.name, team=user.team)
        # The spec as run: its dataset pinned to the version resolved, so a rerun of the
        # record trains on these rows even after newer versions arrive.
        run = models.start_run(session, model=spec.model, dataset=ds,
                               spec={**spec.to_dict(), "dataset": f"{ds.name}:{ds.version}"},
                               params=spec.params, seed=spec.seed, actor=user.name,
                               runtime=provenance.runtime().model_dump(mode="json"))
        if on_started is not None:
            on_started(session, run)
    return run


def resume(cfg: Config, user: User, spec: TrainSpec, run: Run,
           on_progress: Callable[[ProgressEvent], None] | None = None) -> TrainOutcome:
    """Fit `run` on Ray and register its version; a run registers at most one version.

    Running it again after a crash continues the same Ray Train run from its last checkpoint
    (its folder is deterministic), and returns the version already registered if the crash
    came after the registration. A run that fails is recorded as failed with its cause.

    Args:
        cfg, user, spec, run: as `start` took and returned them.
        on_progress: called with each epoch's `cluster.progress.ProgressEvent`, in a thread
            of the driver (default None).

    Raises:
        InsufficientResources: the Ray cluster cannot hold the spec's workers (exit 2).
        RunFailed: the training failed on Ray after its retries (exit 1).
    """
    # Deferred: Ray and torch are only needed when a training actually runs.
    from cluster import runtime
    from cluster.train import fit as ray_fit

    require(user, "operate")
    store = ArtifactStore(cfg.artifacts)
    with integrity.alerting(cfg), session_scope(cfg.db_url) as session:
        done = session.exec(select(ModelVersion).where(ModelVersion.run_id == run.id)).first()
        if done is not None:
            return TrainOutcome(done, run.id, dict(done.metrics), run.device or "cpu", 0.0)
        ds = datasets.resolve(session, spec.dataset)
        table = datasets.load(store, ds)
    features = [c for c in table.column_names if c != spec.label]
    train_part, holdout = holdout_split(table, spec.seed, spec.holdout, spec.split)
    runtime.ensure_ray(cfg)
    try:
        fit = ray_fit(
            train_part, label=spec.label, categorical=spec.categorical, params=spec.params,
            seed=spec.seed, num_workers=spec.num_workers, use_gpu=spec.use_gpu,
            storage_path=str(cfg.artifacts / "ray_results"), name=f"{spec.model}-{run.id}",
            holdout=holdout, task=spec.task, kind=spec.kind, function=spec.function,
            max_failures=spec.max_failures, checkpoints_to_keep=spec.checkpoints_to_keep,
            on_progress=on_progress,
        )
    except Exception as exc:
        with session_scope(cfg.db_url) as session:
            # A RunFailed already says what failed, on one line; anything else by its type.
            error = (str(exc) if isinstance(exc, RunFailed)
                     else "".join(traceback.format_exception_only(exc)).strip())
            models.finish_run(session, session.merge(run), metrics={}, device=None, error=error)
        raise
    metrics = dict(fit.metrics)
    # The true size of each part: train + valid (early stopping's slice of the training part,
    # 0 without it) + holdout = the dataset's rows.
    metrics.update(train_rows=fit.train_rows, valid_rows=fit.valid_rows,
                   holdout_rows=holdout.num_rows, epochs=fit.epochs)
    # Lineage says whether the run was restarted from a checkpoint, and after which epoch.
    metrics.update(restarts=fit.restarts, resumed_from_epochs=list(fit.resumed_from))
    # The monitor reads a version's task from its metrics (window_stats.task_of).
    metrics["task"] = spec.task
    digest = store.put_bytes(fit.bundle.to_bytes())
    # The whole reference profile, features and predictions alike, is fitted on the holdout:
    # predictions on rows the model trained on are in-sample (more confident than anything it
    # will serve), so their reference would flag drift on day one. The features follow the
    # predictions because a profile is fitted on one set of rows (its missing shares and its
    # PCA, which includes the score, span them together), and the holdout is drawn from the
    # same data as the training part (with split = "latest" it is the newest rows, the ones
    # most like what the model will serve). The prediction part, per task (`ModelBundle`):
    # binary the score and class, multiclass the top class's probability and the class,
    # regression the predicted value (its class column is a constant 0).
    cols = table_columns(holdout, features, spec.categorical)
    classes, scores = fit.bundle.predict(cols)
    profile = store.put_bytes(fit_reference(cols, spec.categorical, scores, classes))
    calibration = _calibration(fit.bundle, holdout, spec)
    importance = _importance(fit.bundle, holdout, spec)
    with session_scope(cfg.db_url) as session:
        run = session.merge(run)
        # Lineage must say what was used, not what was asked for: defaults filled in.
        run.params = dict(fit.params)
        models.finish_run(session, run, metrics=metrics, device=fit.device)
        mv = models.register_version(
            session, run=run, digest=digest, profile_digest=profile, metrics=metrics,
            features=features, categorical=spec.categorical, label=spec.label, actor=user.name,
            calibration=calibration, gate_checks=spec.gate, importance=importance,
        )
    return TrainOutcome(mv, run.id, metrics, fit.device, fit.seconds)


def _importance(bundle, holdout, spec: TrainSpec) -> dict | None:
    """Permutation importance of each feature on the holdout, with each one's score
    association (`cluster.explain.holdout_importance`); None when the holdout cannot measure
    it (e.g. one class only, where AUC is undefined): the version registers all the same."""
    # Deferred: torch is only needed when a training actually runs.
    from cluster.explain import holdout_importance

    try:
        return holdout_importance(bundle, holdout, spec.label, seed=spec.seed)
    except InvalidInput as exc:
        _log.warning("no feature importance for %s: %s", spec.model, exc)
        return None


def _calibration(bundle, holdout, spec: TrainSpec) -> dict:
    """How far the holdout scores are from probabilities, and the map that fixes them.

    Binary classifiers only: the label-free estimate (CBPE) that uses the map is defined for
    one probability of class 1; other tasks get none ({}), and the monitor skips their
    estimate (`window_stats._estimate`)."""
    if bundle.task != "binary":
        return {}
    cols = table_columns(holdout, bundle.feature_names, spec.categorical)
    _, scores = bundle.predict(cols)
    y = holdout.column(spec.label).to_numpy(zero_copy_only=False).astype(np.int64)
    checked = check_calibration(scores.astype(np.float64), y, seed=spec.seed)
    return {**checked.to_dict(), "threshold": float(bundle.threshold)}


@operation("train")
def train(cfg: Config, user: User, spec: TrainSpec | Path,
          on_progress: Callable[[ProgressEvent], None] | None = None, *,
          on_spec: Callable[[TrainSpec], None] | None = None) -> TrainOutcome:
    """Train `spec` on Ray, register the result as the model's next version, and return it.

    Args:
        cfg: appliance configuration (Ray address, store, artifacts).
        user: the acting user (needs the operator or admin role).
        spec: the validated training spec, or the path of a spec file, read only once the
            permission is settled (so someone who may not train learns nothing from its
            errors).
        on_progress: called with each epoch's progress event (see `resume`; default None).
        on_spec: called with the spec read from a file, before anything runs (default None).

    Raises:
        PermissionDenied: `user` may not operate.
        InvalidInput: the spec file is missing or invalid.
        InsufficientResources: more workers or GPUs than the Ray cluster has (exit 2), before
            any run is recorded.
        RunFailed: the training failed on Ray (exit 1); the run is recorded as failed.
    """
    require(user, "operate")
    if not isinstance(spec, TrainSpec):
        spec = load_spec(Path(spec))
        if on_spec is not None:
            on_spec(spec)
    return resume(cfg, user, spec, start(cfg, user, spec), on_progress)


@operation("runs.rerun")
def rerun(cfg: Config, user: User, run_id: str) -> TrainOutcome:
    """Train again from run `run_id`'s record, as a new run whose `rerun_of` names it.

    Same spec, the same dataset version (pinned by name and version, whatever came since),
    the same seed and the params the run used (defaults filled in then, so a changed default
    does not change the rerun); the new run records the runtime it got, so `appliance runs
    compare` shows what else changed.

    Args:
        cfg: appliance configuration.
        user: the acting user (needs the "operate" permission, as for `train`).
        run_id: the run to train again.

    Raises:
        NotFound: no such run.
        InvalidInput: its recorded spec holds keys this version does not know, or lacks
            ones it needs.
    """
    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        source = runs.get_run(session, run_id)
        spec = _recorded_spec(source, session.get(Dataset, source.dataset_id))
        session.expunge(source)

    def link(session: Session, run: Run) -> None:
        runs.mark_rerun(session, run, source, actor=user.name)

    return resume(cfg, user, spec, start(cfg, user, spec, on_started=link))


def _recorded_spec(run: Run, ds: Dataset) -> TrainSpec:
    """The spec `run` recorded, with its dataset version, seed and params as used."""
    fields = dataclasses.fields(TrainSpec)
    unknown = sorted(set(run.spec) - {f.name for f in fields})
    lacking = sorted(f.name for f in fields if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name not in run.spec)
    if unknown or lacking:
        raise InvalidInput(
            f"run {run.id!r} recorded a spec this version cannot train again (unknown key(s) "
            f"{unknown}, missing {lacking}); train a spec file with `appliance train`")
    return TrainSpec(**{**run.spec, "dataset": f"{ds.name}:{ds.version}", "seed": run.seed,
                        "params": dict(run.params)})
