"""Gate a candidate against the alias holder on the same holdout, then request approval.

The gate is the one the candidate's version stored from its training spec
(`appliance.governance.gate_checks`); `gating` measures its segments and runs its user
functions."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import ConflictError
from appliance.governance import approvals, gate_checks
from appliance.governance.approvals import GateResult
from appliance.governance.gate_checks import GateChecks
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor import integrity
from appliance.monitor.window_stats import task_of
from appliance.pipelines import gating
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import Alias, Approval, Dataset, ModelVersion, Run, User


def _holdout_and_bundles(cfg: Config, candidate: ModelVersion, others: list[ModelVersion]):
    """The candidate's own holdout, and the bundles of `candidate` and each of `others`."""
    # Deferred: bundles need torch, not the control plane.
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
    return holdout, bundles


def _score(bundle, table: pa.Table, label: str) -> dict:
    """`bundle`'s metrics on the labelled `table`: the one scoring the gate does."""
    # Deferred: evaluation needs torch, not the control plane.
    from cluster.evaluate import evaluate

    return evaluate(bundle, table, label)


def evaluate_on_holdout(cfg: Config, candidate: ModelVersion, others: list[ModelVersion]):
    """Metrics of `candidate` and each of `others` on the candidate's own holdout."""
    holdout, bundles = _holdout_and_bundles(cfg, candidate, others)
    return [_score(bundle, holdout, candidate.label) for bundle in bundles]


@dataclasses.dataclass
class GateRun:
    """The gate's verdict on a candidate, and the holdout metrics it judged."""

    result: GateResult
    candidate: dict
    incumbent: dict | None


def run_gate(
    cfg: Config, candidate: ModelVersion, incumbent: ModelVersion | None, *,
    checks: GateChecks | None = None,
) -> GateRun:
    """Measure `candidate` (and `incumbent`) on the candidate's holdout and judge it.

    Args:
        cfg: the configuration.
        candidate: the version to judge.
        incumbent: the alias holder to compare with, or None for an empty alias.
        checks: the checks (default: those `candidate` stored at registration, which are
            today's defaults for a version registered before checks were stored).
    """
    checks = checks or gate_checks.from_stored(candidate.gate_checks, task_of(candidate))
    holdout, bundles = _holdout_and_bundles(cfg, candidate, [incumbent] if incumbent else [])
    metrics = [_score(bundle, holdout, candidate.label) for bundle in bundles]
    segments = gating.measure_segments(
        checks, holdout, lambda rows: _score(bundles[0], rows, candidate.label))
    mine = gating.GateModel(candidate.model_name, candidate.version, bundles[0],
                            candidate.label, metrics[0])
    theirs = (gating.GateModel(incumbent.model_name, incumbent.version, bundles[1],
                               candidate.label, metrics[1]) if incumbent else None)
    functions = gating.run_functions(checks.functions, mine, holdout, theirs)
    result = approvals.gate(metrics[0], metrics[1] if incumbent else None, checks=checks,
                            segments=segments, functions=functions)
    return GateRun(result, metrics[0], metrics[1] if incumbent else None)


@operation("promote")
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

    Returns:
        The approval request and the gate's verdict.

    Raises:
        PermissionDenied: `user` may not operate (checked before anything is read).
        GateFailed: the candidate failed a check of the gate it stored (audited).
    """
    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        candidate = models.resolve(session, ref)
        holder = session.exec(select(Alias).where(
            Alias.model_name == candidate.model_name, Alias.alias == alias)).first()
        incumbent = session.get(ModelVersion, holder.version_id) if holder else None
    if incumbent is not None and incumbent.id == candidate.id:
        raise ConflictError(f"{ref} already holds the {alias!r} alias")
    result = run_gate(cfg, candidate, incumbent).result
    with session_scope(cfg.db_url) as session:
        approval = approvals.request_promotion(session, user, candidate, alias, result,
                                               incumbent=incumbent, expires_at=expires_at)
    return approval, result
