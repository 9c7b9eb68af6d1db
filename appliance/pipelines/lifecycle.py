"""The local Ray head `appliance deploy` starts: stopping it and all that runs on it.

`down` stops it and closes the ledger (its state is read by `appliance.pipelines.status`). It
leaves alone any Ray cluster the appliance is configured to join (``ray_address``): that one
is not ours to stop. Ray is imported only when a head is recorded and must be joined.
"""

from __future__ import annotations

from sqlmodel import Session, SQLModel, select

from appliance.config import Config
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.store import session_scope
from appliance.store.models import Deployment, ModelVersion, User, utcnow
from cluster import head


class ClosedDeploymentPublic(SQLModel):
    """A ledger row `down` closed."""

    name: str
    version: int
    role: str


class DownPublic(SQLModel):
    """What `down` stopped.

    `address` is None when no local head was recorded; `pids` were sent SIGTERM, and `killed`
    (a subset) SIGKILL after the grace period; `serve_shutdown` says whether Serve's replicas
    were shut down gracefully first, and `serve_error` why not when the head answered.
    """

    address: str | None
    serve_shutdown: bool
    serve_error: str | None
    pids: list[int]
    killed: list[int]
    deployments_closed: list[ClosedDeploymentPublic]


def _close_active(session: Session) -> list[ClosedDeploymentPublic]:
    rows = session.exec(select(Deployment).where(Deployment.status == "active")
                        .order_by(Deployment.id)).all()
    closed = []
    for row in rows:
        row.status, row.stopped_at = "stopped", utcnow()
        session.add(row)
        closed.append(ClosedDeploymentPublic(
            name=row.name, version=session.get(ModelVersion, row.version_id).version,
            role=row.role))
    return closed


@operation("down")
def down(cfg: Config, user: User, *, grace_s: float = 15.0) -> DownPublic:
    """Stop the local Ray head and everything on it; close the ledger's active deployments.

    Serve is shut down first, so replicas end gracefully; then the head's processes get
    SIGTERM, and SIGKILL after `grace_s`. Every deployment still "active" in the ledger
    becomes "stopped", and one ``appliance.down`` audit event says what was stopped, both in
    one transaction. Idempotent: with no head recorded nothing is signalled, and with
    nothing stopped or closed nothing is recorded.

    Args:
        cfg: appliance configuration; ``cfg.ray_address`` must be unset.
        user: the acting user (needs "operate").
        grace_s: seconds between SIGTERM and SIGKILL (default 15).

    Raises:
        PermissionDenied: `user` may not operate.
        ConflictError: the appliance is configured to use another Ray cluster, which
            `down` never stops.
        CheckFailed: some of the head's processes survived SIGKILL.
    """
    require(user, "operate")
    head.check_local(cfg.ray_address)
    stopped = None
    if head.recorded_address(cfg.home) is not None:
        # Deferred: Ray is imported only when there is a head to join and stop.
        from cluster import runtime

        stopped = runtime.stop_head(cfg, grace_s=grace_s)
    with session_scope(cfg.db_url) as session:
        closed = _close_active(session)
        if stopped is not None or closed:
            audit.record(session, user.name, "appliance.down", "cluster",
                         stopped.address if stopped else "local", {
                             "pids": len(stopped.pids) if stopped else 0,
                             "killed": stopped.killed if stopped else [],
                             "serve_shutdown": bool(stopped and stopped.serve_shutdown),
                             "deployments": [f"{c.name}:{c.version} ({c.role})"
                                             for c in closed],
                         })
    return DownPublic(
        address=stopped.address if stopped else None,
        serve_shutdown=bool(stopped and stopped.serve_shutdown),
        serve_error=stopped.serve_error if stopped else None,
        pids=stopped.pids if stopped else [], killed=stopped.killed if stopped else [],
        deployments_closed=closed,
    )
