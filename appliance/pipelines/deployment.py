"""Serving a model: its champion behind the OIP v2 endpoint, a challenger beside it as a
canary or a shadow, promotion, rollback; and the ledger of what served when.

Each function is one action: it checks the actor's permission, changes serving (Ray Serve,
through `cluster.serve`, by deferred imports so the control plane stays Ray-free), then records
the ledger rows and the audit events in one transaction.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlmodel import Session, SQLModel, col, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import ConflictError, NotFound
from appliance.governance import approvals, audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.monitor import integrity, retrain
from appliance.registry import models
from appliance.serving import ServingOptions, parse_serving
from appliance.store import session_scope
from appliance.store.models import (
    Approval,
    ApprovalStatus,
    Deployment,
    ModelVersion,
    User,
    utcnow,
)


def _active(session: Session, model: str, role: str) -> list[Deployment]:
    return list(session.exec(select(Deployment).where(
        Deployment.name == model, Deployment.status == "active", Deployment.role == role,
    )).all())


def _close(session: Session, rows: list[Deployment], status: str) -> None:
    for row in rows:
        row.status, row.stopped_at = status, utcnow()
        session.add(row)


def serving_options(cfg: Config, model: str) -> ServingOptions:
    """The options `model` is served with now: its primary's, else the config's defaults."""
    with session_scope(cfg.db_url) as session:
        rows = _active(session, model, "primary")
    if rows and rows[-1].serving:
        return parse_serving(rows[-1].serving, f"deployment {model!r} serving options")
    return cfg.serving


def _serve_primary(cfg: Config, model: str, mv: ModelVersion,
                   serving: ServingOptions) -> str:
    # Deferred: only deploying needs Ray Serve.
    from cluster import runtime, serve

    # Checked first: a missing or altered bundle is refused before a Ray head is started.
    bundle = _verified_bundle(cfg, mv)
    # A deployment must outlive the command that made it.
    runtime.ensure_ray(cfg, persistent=True)
    return serve.deploy(cfg, model=model, version=str(mv.version), bundle_path=bundle,
                        deployment=model, serving=serving)


def _verified_bundle(cfg: Config, mv: ModelVersion) -> Path:
    """The version's bundle in the store, re-hashed (a mismatch raises a critical alert); each
    serving replica checks the bytes it loads again."""
    with integrity.alerting(cfg):
        return ArtifactStore(cfg.artifacts).verify(
            mv.digest, what=f"model bundle {mv.model_name}:{mv.version}", model=mv.model_name)


def _record_primary(session: Session, user: User, model: str, mv: ModelVersion, url: str,
                    why: str, serving: ServingOptions, **details) -> Deployment:
    _close(session, _active(session, model, "primary"), "replaced")
    dep = Deployment(name=model, model_name=model, version_id=mv.id, url=url,
                     serving=serving.to_dict(), created_by=user.name)
    session.add(dep)
    session.flush()
    audit.record(session, user.name, "deployment.started", "deployment", model,
                 {"version": mv.version, "url": url, "why": why, "serving": serving.to_dict(),
                  **details})
    return dep


@operation("deploy")
def deploy(cfg: Config, user: User, model: str, alias: str = "champion",
           serving: ServingOptions | None = None) -> Deployment:
    """Serve the version `model@alias` names; a running deployment switches in place.

    Args:
        cfg: appliance configuration.
        user: the acting user (needs "operate").
        model: the registered model.
        alias: which alias to serve (default "champion").
        serving: batching, replicas, resources, environment (default: what the model is
            served with now, else the config's ``[serving]``).
    """
    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        mv = models.resolve(session, f"{model}@{alias}")
    serving = serving or serving_options(cfg, model)
    url = _serve_primary(cfg, model, mv, serving)
    with session_scope(cfg.db_url) as session:
        return _record_primary(session, user, model, mv, url, "deploy", serving, alias=alias)


@operation("canary.deploy")
def deploy_canary(
    cfg: Config, user: User, model: str, version: int, *, mode: str = "split",
    share: float = 0.1, retrain_id: int | None = None,
) -> Deployment:
    """Put `model:version` behind the model's route beside its champion.

    Args:
        cfg: appliance configuration.
        user: the acting user (needs "operate").
        model: the deployed model.
        version: the challenger's version number.
        mode: "split" (it answers `share` of requests, sticky by request id) or "shadow" (it
            scores every request; the champion answers).
        share: the split's share (default 0.1; ignored in shadow mode).
        retrain_id: the retrain request this canary belongs to, for the ledger (default none).

    Raises:
        NotFound: the model or version does not exist, or the model is not deployed.
    """
    # Deferred: only deploying needs Ray Serve.
    from cluster import runtime, serve

    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        mv = models.resolve(session, f"{model}:{version}")
        if not _active(session, model, "primary"):
            raise NotFound(f"model {model!r} is not deployed; a canary needs a champion "
                           f"serving (`appliance deploy {model}`)")
    # The challenger is served as its champion is, so the comparison is like for like.
    serving = serving_options(cfg, model)
    bundle = _verified_bundle(cfg, mv)
    runtime.ensure_ray(cfg, persistent=True)
    url = serve.deploy_canary(cfg, model=model, version=str(mv.version), bundle_path=bundle,
                              deployment=model, serving=serving, mode=mode, share=share)
    with session_scope(cfg.db_url) as session:
        _close(session, _active(session, model, "canary"), "replaced")
        dep = Deployment(name=model, model_name=model, version_id=mv.id, url=url,
                         role="canary", mode=mode, share=share if mode == "split" else None,
                         retrain_id=retrain_id, serving=serving.to_dict(),
                         created_by=user.name)
        session.add(dep)
        session.flush()
        audit.record(session, user.name, "deployment.canary_started", "deployment", model,
                     {"version": mv.version, "mode": mode, "share": dep.share,
                      "retrain_request": retrain_id})
    return dep


@operation("canary.remove")
def remove_canary(cfg: Config, user: User, model: str, *, outcome: str = "removed",
                  reason: str | None = None) -> bool:
    """Send all of `model`'s traffic back to its champion; False when it had no canary.

    Args:
        outcome: how the canary ended, kept in the ledger: "aborted", "promoted", "removed".
        reason: why, for the audit (default none).
    """
    require(user, "operate")
    return _remove_canary(cfg, user, model, outcome, reason)


def _remove_canary(cfg: Config, user: User, model: str, outcome: str,
                   reason: str | None) -> bool:
    # Deferred: only serving changes need Ray Serve.
    from cluster import runtime, serve

    runtime.ensure_ray(cfg, persistent=True)
    had = serve.remove_canary(cfg, model)
    with session_scope(cfg.db_url) as session:
        rows = _active(session, model, "canary")
        _close(session, rows, outcome)
        if rows or had:
            audit.record(session, user.name, "deployment.canary_stopped", "deployment", model,
                         {"outcome": outcome, "reason": reason,
                          "versions": [r.version_id for r in rows]})
    return bool(rows or had)


@operation("canary.promote")
def promote_canary(cfg: Config, user: User, model: str) -> Deployment:
    """Serve the champion alias's version (the approved challenger) as the only version.

    The primary is replaced in place first, while the canary still answers its share, and
    only then is the canary removed, so no request is dropped on the way.
    """
    dep = deploy(cfg, user, model, "champion")
    remove_canary(cfg, user, model, outcome="promoted",
                  reason="the challenger became the champion")
    return dep


@dataclasses.dataclass
class Rollback:
    """What `rollback` did."""

    model: str
    from_version: int
    to_version: int
    canary_removed: bool
    retrain_cancelled: int | None
    deployment: Deployment

    def public(self) -> RollbackPublic:
        """The record faces show."""
        return RollbackPublic(model=self.model, from_version=self.from_version,
                              to_version=self.to_version, canary_removed=self.canary_removed,
                              retrain_cancelled=self.retrain_cancelled)


class RollbackPublic(SQLModel):
    """What a rollback did: the versions it went from and to, and what it stopped."""

    model: str
    from_version: int
    to_version: int
    canary_removed: bool
    retrain_cancelled: int | None


class DeployedPublic(SQLModel):
    """Where a deployment serves: its name, model, base URL and inference endpoint."""

    deployment: str
    model: str
    url: str
    infer: str


def deployed_public(dep: Deployment) -> DeployedPublic:
    """The record faces show for the ledger row `deploy` returned."""
    return DeployedPublic(deployment=dep.name, model=dep.model_name, url=dep.url,
                          infer=f"{dep.url}/v2/models/{dep.name}/infer")


def _previous_champion(session: Session, model: str, current: int) -> ModelVersion:
    approved = session.exec(
        select(Approval).where(Approval.model_name == model,
                               Approval.target_alias == "champion",
                               Approval.status == ApprovalStatus.approved.value)
        .order_by(col(Approval.decided_at).desc())
    ).all()
    for approval in approved:
        if approval.version_id != current:
            return session.get(ModelVersion, approval.version_id)
    raise NotFound(f"model {model!r} has no earlier champion to roll back to")


@operation("rollback")
def rollback(cfg: Config, user: User, model: str, to_version: int | None = None) -> Rollback:
    """Put `model`'s previous champion (or `to_version`, which must have been champion) back
    behind its endpoint, in one step: any running retrain is cancelled and its canary
    removed, serving switches, and the champion alias follows (needs "approve")."""
    require(user, "approve")
    with session_scope(cfg.db_url) as session:
        current = models.resolve(session, f"{model}@champion")
        if to_version is None:
            target = _previous_champion(session, model, current.id)
        else:
            target = models.resolve(session, f"{model}:{to_version}")
            held = session.exec(select(Approval).where(
                Approval.version_id == target.id, Approval.target_alias == "champion",
                Approval.status == ApprovalStatus.approved.value)).first()
            if held is None:
                raise NotFound(f"{model}:{to_version} never held 'champion'; promote it "
                               "instead")
        if target.id == current.id:
            raise ConflictError(f"{model}:{target.version} is already the champion")
        deployed = bool(_active(session, model, "primary"))
    cancelled = None
    with session_scope(cfg.db_url) as session:
        for request in retrain.active(session, model):
            retrain.finish(session, request, "cancelled", user.name,
                           f"rolled back to version {target.version}")
            cancelled = request.id
    removed = _remove_canary(cfg, user, model, "aborted", "rollback") if deployed else False
    serving = serving_options(cfg, model)
    url = _serve_primary(cfg, model, target, serving) if deployed else None
    with session_scope(cfg.db_url) as session:
        held = session.exec(select(Approval).where(
            Approval.version_id == target.id, Approval.target_alias == "champion",
            Approval.status == ApprovalStatus.approved.value)
            .order_by(col(Approval.id).desc())).first()
        approvals.set_alias(session, user.name, target, "champion", held.id)
        audit.record(session, user.name, "model.rolled_back", "model", model,
                     {"from": current.version, "to": target.version,
                      "retrain_cancelled": cancelled, "canary_removed": removed})
        dep = (_record_primary(session, user, model, target, url, "rollback", serving)
               if url else None)
    return Rollback(model, current.version, target.version, removed, cancelled, dep)


@operation("undeploy")
def undeploy(cfg: Config, user: User, model: str) -> None:
    """Stop serving `model` (its canary too) and close its ledger rows."""
    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        if not _active(session, model, "primary"):
            raise NotFound(f"model {model!r} is not deployed")
    # Deferred, and only once there is something to stop: only undeploying needs Ray Serve.
    from cluster import runtime, serve

    runtime.ensure_ray(cfg, persistent=True)
    serve.undeploy(cfg, model)
    with session_scope(cfg.db_url) as session:
        _close(session, _active(session, model, "primary") + _active(session, model, "canary"),
               "stopped")
        for request in retrain.active(session, model):
            retrain.finish(session, request, "cancelled", user.name, "the model was undeployed")
        audit.record(session, user.name, "deployment.stopped", "deployment", model, {})
