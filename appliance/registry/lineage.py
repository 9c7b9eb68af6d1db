"""Answer "where did this model come from, and who let it out?"."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel, select

from appliance.registry.models import aliases_of, resolve
from appliance.store.models import Approval, Dataset, Run


class LineageArtifactPublic(SQLModel):
    """The version's bundle and the drift profile registered with it."""

    digest: str
    profile_digest: str | None


class LineageDatasetPublic(SQLModel):
    """The dataset version the run trained on, and where it came from."""

    name: str
    version: int
    digest: str
    rows: int
    source: str | None
    lineage: dict[str, Any] | None


class LineageRunPublic(SQLModel):
    """The training run that produced the version."""

    id: str
    params: dict[str, Any]
    seed: int | None
    status: str
    device: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    requested_by: str | None
    rerun_of: str | None
    kind: str | None
    tuning_run: str | None  # a version retrained from a sweep's best trial names the sweep


class LineageApprovalPublic(SQLModel):
    """One promotion request for the version, whatever became of it."""

    id: int
    alias: str
    status: str
    requested_by: str
    requested_at: dt.datetime
    approved_by: str | None
    decided_by: str | None
    decided_at: dt.datetime | None
    gate: dict[str, Any] | None


class LineagePublic(SQLModel):
    """`appliance lineage --json`: dataset, run, params, code, environment and approvals."""

    model: str
    version: int
    ref: str
    aliases: list[str]
    artifact: LineageArtifactPublic
    metrics: dict[str, Any]
    registered_by: str | None
    registered_at: dt.datetime
    dataset: LineageDatasetPublic
    run: LineageRunPublic
    code_version: str | None
    environment: str | None  # the environment's hash (`appliance runs show` has it whole)
    approvals: list[LineageApprovalPublic]


def lineage(session: Session, ref: str) -> LineagePublic:
    """Dataset, run, params, code, environment and approvals behind the version `ref` names."""
    mv = resolve(session, ref)
    run = session.get(Run, mv.run_id)
    ds = session.get(Dataset, run.dataset_id)
    approvals = session.exec(
        select(Approval).where(Approval.version_id == mv.id).order_by(Approval.id)
    ).all()
    return LineagePublic.model_validate({
        "model": mv.model_name,
        "version": mv.version,
        "ref": ref,
        "aliases": aliases_of(session, mv),
        "artifact": {"digest": mv.digest, "profile_digest": mv.profile_digest},
        "metrics": mv.metrics,
        "registered_by": mv.created_by,
        "registered_at": mv.created_at,
        "dataset": {"name": ds.name, "version": ds.version, "digest": ds.digest,
                    "rows": ds.rows, "source": ds.source, "lineage": ds.lineage or None},
        "run": {"id": run.id, "params": run.params, "seed": run.seed, "status": run.status,
                "device": run.device, "started_at": run.started_at,
                "finished_at": run.finished_at, "requested_by": run.created_by,
                "rerun_of": run.rerun_of,
                # A version retrained from a sweep's best trial names the tuning run.
                "kind": run.kind, "tuning_run": run.parent_run_id},
        "code_version": run.code_version,
        "environment": run.environment,
        "approvals": [
            {"id": a.id, "alias": a.target_alias, "status": a.status,
             "requested_by": a.requested_by, "requested_at": a.requested_at,
             "approved_by": a.decided_by if a.status == "approved" else None,
             "decided_by": a.decided_by, "decided_at": a.decided_at, "gate": a.gate}
            for a in approvals
        ],
    })
