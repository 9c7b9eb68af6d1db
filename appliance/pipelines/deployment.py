"""Put a model's alias holder behind the OIP v2 endpoint and keep the deployment ledger."""

from __future__ import annotations

from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import NotFound
from appliance.governance import audit
from appliance.governance.users import active_token_hashes, require
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.models import Deployment, User, utcnow


def deploy(cfg: Config, user: User, model: str, alias: str = "champion") -> Deployment:
    """Serve the version `model@alias` names; a running deployment switches in place."""
    # Deferred: only deploying needs Ray Serve.
    from cluster import runtime, serve

    require(user, "operate")
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as session:
        mv = models.resolve(session, f"{model}@{alias}")
        tokens = active_token_hashes(session)
    bundle = store.path(mv.digest)
    # A deployment must outlive the command that made it.
    runtime.ensure_ray(cfg, persistent=True)
    url = serve.deploy(cfg, model=model, version=str(mv.version), bundle_path=bundle,
                       deployment=model, token_hashes=tokens)
    with session_scope(cfg.db_url) as session:
        current = session.exec(select(Deployment).where(
            Deployment.name == model, Deployment.status == "active")).all()
        for row in current:
            row.status, row.stopped_at = "replaced", utcnow()
            session.add(row)
        dep = Deployment(name=model, model_name=model, version_id=mv.id, url=url,
                         created_by=user.name)
        session.add(dep)
        session.flush()
        audit.record(session, user.name, "deployment.started", "deployment", model,
                     {"version": mv.version, "alias": alias, "url": url})
    return dep


def undeploy(cfg: Config, user: User, model: str) -> None:
    """Stop serving `model` and close its ledger row."""
    # Deferred: only undeploying needs Ray Serve.
    from cluster import runtime, serve

    require(user, "operate")
    with session_scope(cfg.db_url) as session:
        current = session.exec(select(Deployment).where(
            Deployment.name == model, Deployment.status == "active")).all()
        if not current:
            raise NotFound(f"model {model!r} is not deployed")
    runtime.ensure_ray(cfg, persistent=True)
    serve.undeploy(cfg, model)
    with session_scope(cfg.db_url) as session:
        for row in session.exec(select(Deployment).where(
                Deployment.name == model, Deployment.status == "active")).all():
            row.status, row.stopped_at = "stopped", utcnow()
            session.add(row)
        audit.record(session, user.name, "deployment.stopped", "deployment", model, {})
