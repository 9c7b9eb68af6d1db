"""Gate a candidate against the alias holder on the same holdout, then request approval."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import ConflictError
from appliance.governance import approvals
from appliance.monitor import integrity
from appliance.monitor.window_stats import task_of
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import Alias, Approval, Dataset, ModelVersion, Run, User


def evaluate_on_holdout(cfg: Config, candidate: ModelVersion, others: list[ModelVersion]):
    """Metrics of `candidate` and each of `others` on the candidate's own holdout."""
    # Deferred: evaluation needs torch and the trainer's metrics, not the control plane.
    from cluster import train as ray_train
    from cluster.bundle import ModelBundle

    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as session:
        run = session.get(Run, candidate.run_id)
        ds = session.get(Dataset, run.dataset_id)
    with integrity.alerting(cfg):
        table = datasets.load(store, ds)
        bundles = [ModelBundle.from_bytes(store.get_bytes(
            mv.digest, what=f"model bundle {mv.model_name}:{mv.version}", model=mv.model_name))
            for mv in [candidate, *others]]
    _, holdout = holdout_split(table, run.seed, float(run.spec.get("holdout", 0.2)),
                               run.spec.get("split", "random"))
    return [ray_train.evaluate(bundle, holdout, candidate.label) for bundle in bundles]


def request(
    cfg: Config, user: User, ref: str, alias: str, *, expires_at: dt.datetime | None = None,
) -> tuple[Approval, dict]:
    """Run the gate for the version `ref` names and open an approval to move `alias`.

    The request is bound to the alias holder the gate measured against: if the alias moves
    while the gate runs, ConflictError asks for a new gate.

    Args:
        cfg: the configuration.
        user: the requester (needs "operate").
        ref: the candidate, e.g. "credit:3".
        alias: the alias to move.
        expires_at: when the request lapses (default: `approvals.DEFAULT_TTL` from now).
    """
    with session_scope(cfg.db_url) as session:
        candidate = models.resolve(session, ref)
        holder = session.exec(select(Alias).where(
            Alias.model_name == candidate.model_name, Alias.alias == alias)).first()
        incumbent = session.get(ModelVersion, holder.version_id) if holder else None
    if incumbent is not None and incumbent.id == candidate.id:
        raise ConflictError(f"{ref} already holds the {alias!r} alias")
    metrics = evaluate_on_holdout(cfg, candidate, [incumbent] if incumbent else [])
    result = approvals.gate(metrics[0], metrics[1] if incumbent else None,
                            task=task_of(candidate))
    with session_scope(cfg.db_url) as session:
        approval = approvals.request_promotion(session, user, candidate, alias, result,
                                               incumbent=incumbent, expires_at=expires_at)
    return approval, result.to_dict()
