"""Dataset version -> run on Ray Train -> registered model version with its drift profile."""

from __future__ import annotations

import dataclasses
import traceback

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import InvalidInput
from appliance.governance.users import require
from appliance.monitor.drift import fit_reference, to_columns
from appliance.pipelines.spec import TrainSpec
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import ModelVersion, User


@dataclasses.dataclass
class TrainOutcome:
    version: ModelVersion
    run_id: str
    metrics: dict
    device: str
    seconds: float


def _check_columns(spec: TrainSpec, columns: list[str]) -> None:
    missing = [c for c in [spec.label, *spec.categorical] if c not in columns]
    if missing:
        raise InvalidInput(
            f"dataset {spec.dataset!r} has no column(s) {missing}; it has {columns}"
        )


def train(cfg: Config, user: User, spec: TrainSpec) -> TrainOutcome:
    """Train `spec` on Ray, register the result as the model's next version, and return it.

    Args:
        cfg: appliance configuration (Ray address, store, artifacts).
        user: the acting user (needs the operator or admin role).
        spec: the validated training spec.
    """
    # Deferred: Ray and torch are only needed when a training actually runs.
    from cluster import runtime
    from cluster import train as ray_train

    require(user, "operate")
    # Bad params are bad input: refuse them before a run is recorded.
    ray_train.resolve_params(spec.params)
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as session:
        ds = datasets.resolve(session, spec.dataset)
        table = datasets.load(store, ds)
        _check_columns(spec, table.column_names)
        models.ensure_model(session, spec.model, owner=user.name, team=user.team)
        run = models.start_run(session, model=spec.model, dataset=ds, spec=spec.to_dict(),
                               params=spec.params, seed=spec.seed, actor=user.name)
    features = [c for c in table.column_names if c != spec.label]
    train_part, holdout = holdout_split(table, spec.seed, spec.holdout)
    runtime.ensure_ray(cfg)
    try:
        fit = ray_train.fit(
            train_part, label=spec.label, categorical=spec.categorical, params=spec.params,
            seed=spec.seed, num_workers=spec.num_workers, use_gpu=spec.use_gpu,
            storage_path=str(cfg.artifacts / "ray_results"), name=f"{spec.model}-{run.id}",
        )
    except Exception as exc:
        with session_scope(cfg.db_url) as session:
            models.finish_run(session, session.merge(run), metrics={}, device=None,
                              error="".join(traceback.format_exception_only(exc)).strip())
        raise
    metrics = ray_train.evaluate(fit.bundle, holdout, spec.label)
    metrics["train_rows"], metrics["holdout_rows"] = train_part.num_rows, holdout.num_rows
    digest = store.put_bytes(fit.bundle.to_bytes())
    cols = to_columns(train_part, features, spec.categorical)
    classes, scores = fit.bundle.predict(cols)
    profile = store.put_bytes(fit_reference(cols, spec.categorical, scores, classes))
    with session_scope(cfg.db_url) as session:
        run = session.merge(run)
        # Lineage must say what was used, not what was asked for: defaults filled in.
        run.params = dict(fit.params)
        models.finish_run(session, run, metrics=metrics, device=fit.device)
        mv = models.register_version(
            session, run=run, digest=digest, profile_digest=profile, metrics=metrics,
            features=features, categorical=spec.categorical, label=spec.label, actor=user.name,
        )
    return TrainOutcome(mv, run.id, metrics, fit.device, fit.seconds)
