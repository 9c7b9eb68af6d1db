"""Training runs as people read them: the record, a listing, and two runs side by side.

A run's record is what it takes to train it again and to explain a difference: the spec, the
params used, the seed, the dataset version pinned by name and version (and its digest), the
code version, a hash of the installed packages, and the runtime it started with (Python,
torch, CUDA, GPU driver, OS, hardware; `provenance.Runtime`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel, select

from appliance.errors import InvalidInput, NotFound
from appliance.governance import audit
from appliance.registry.models import get_model
from appliance.registry.provenance import Runtime
from appliance.store.models import Dataset, ModelVersion, Run

# What `compare` puts side by side, in this order.
SECTIONS = ("run", "spec", "params", "metrics", "environment")


class RunDatasetPublic(SQLModel):
    """The dataset version a run trained on: pinned by name and version, checked by digest."""

    name: str
    version: int
    digest: str
    rows: int


class RunEnvironmentPublic(Runtime):
    """The code and environment a run started with; runtime parts are None where unknown
    (not recorded before runs kept them, or not readable on that host)."""

    code_version: str
    # sha256 over the sorted name==version of every installed distribution.
    packages: str


class RunPublic(SQLModel):
    """A training run as `appliance runs` shows it."""

    id: str
    model: str
    # The model version it registered (None: failed, running, or crashed before registering).
    version: int | None
    status: str
    dataset: RunDatasetPublic
    seed: int
    spec: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]
    device: str | None
    error: str | None
    rerun_of: str | None
    environment: RunEnvironmentPublic
    created_by: str
    started_at: dt.datetime
    finished_at: dt.datetime | None


class RunFieldPublic(SQLModel):
    """One key of two runs' records, side by side."""

    section: str
    # Dotted path inside the section, e.g. "hardware.cpu" in "environment".
    key: str
    a: Any
    b: Any
    same: bool


class RunComparisonPublic(SQLModel):
    """Runs `a` and `b` compared key by key (`fields`: the differing ones, or all of them)."""

    a: str
    b: str
    differing: int
    fields: list[RunFieldPublic]


def get_run(session: Session, run_id: str) -> Run:
    """Run `run_id`; InvalidInput for an id that could not be one, NotFound for no such run."""
    if not isinstance(run_id, str) or not run_id.isalnum() or len(run_id) > 64:
        raise InvalidInput(f"run id {run_id!r} must be letters and digits (see "
                           "`appliance runs list`)")
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}; list them with `appliance runs list`")
    return run


def _public(run: Run, ds: Dataset, version: int | None) -> RunPublic:
    runtime = Runtime.model_validate(run.runtime) if run.runtime else Runtime()
    return RunPublic(
        id=run.id, model=run.model_name, version=version, status=run.status,
        dataset=RunDatasetPublic(name=ds.name, version=ds.version, digest=ds.digest,
                                 rows=ds.rows),
        seed=run.seed, spec=run.spec, params=run.params, metrics=run.metrics,
        device=run.device, error=run.error, rerun_of=run.rerun_of,
        environment=RunEnvironmentPublic(**runtime.model_dump(), code_version=run.code_version,
                                         packages=run.environment),
        created_by=run.created_by, started_at=run.started_at, finished_at=run.finished_at,
    )


def _versions(session: Session, run_ids: list[str]) -> dict[str, int]:
    if not run_ids:
        return {}
    rows = session.exec(
        select(ModelVersion.run_id, ModelVersion.version).where(ModelVersion.run_id.in_(run_ids))
    ).all()
    return dict(rows)


def show(session: Session, run_id: str) -> RunPublic:
    """The record of run `run_id` (NotFound when there is none)."""
    run = get_run(session, run_id)
    return _public(run, session.get(Dataset, run.dataset_id), _versions(session, [run.id]).get(
        run.id))


def list_runs(session: Session, *, model: str | None = None, limit: int = 50) -> list[RunPublic]:
    """The latest `limit` runs (default 50), newest first; only `model`'s when given."""
    if limit < 1:
        raise InvalidInput(f"--limit must be at least 1, got {limit}")
    query = select(Run, Dataset).join(Dataset, Dataset.id == Run.dataset_id)
    if model is not None:
        get_model(session, model)
        query = query.where(Run.model_name == model)
    rows = session.exec(query.order_by(Run.started_at.desc(), Run.id).limit(limit)).all()
    versions = _versions(session, [run.id for run, _ in rows])
    return [_public(run, ds, versions.get(run.id)) for run, ds in rows]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    # Nested tables become dotted keys, so a difference names the leaf that differs; lists
    # (categorical columns, GPU names) compare as one value.
    if isinstance(value, dict) and (value or not prefix):
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _sections(doc: RunPublic) -> dict[str, dict[str, Any]]:
    data = doc.model_dump(mode="json")
    # Who and when always differ between two runs; they are in `show`, not worth a diff.
    facts = {k: data[k] for k in ("model", "status", "seed", "device", "error", "rerun_of")}
    facts["dataset"] = f"{doc.dataset.name}:{doc.dataset.version}"
    facts["dataset_digest"] = doc.dataset.digest
    # Params compare as used (defaults filled in), in their own section: a spec that asked
    # for the defaults by name and one that left them out trained alike.
    spec = {k: v for k, v in data["spec"].items() if k != "params"}
    return {"run": facts, "spec": spec, "params": data["params"],
            "metrics": data["metrics"], "environment": data["environment"]}


def compare(session: Session, a: str, b: str, *, all_keys: bool = False) -> RunComparisonPublic:
    """Runs `a` and `b` side by side: run facts, spec, params, metrics and environment.

    Args:
        session: an open session.
        a, b: run ids.
        all_keys: list every key (default False: only those whose values differ).
    """
    left, right = _sections(show(session, a)), _sections(show(session, b))
    fields: list[RunFieldPublic] = []
    for section in SECTIONS:
        one, two = _flatten(left[section]), _flatten(right[section])
        for key in sorted(set(one) | set(two)):
            va, vb = one.get(key), two.get(key)
            # 1 and 1.0 are the same value; True and 1 are not.
            same = va == vb and isinstance(va, bool) == isinstance(vb, bool)
            fields.append(RunFieldPublic(section=section, key=key, a=va, b=vb, same=same))
    differing = sum(not f.same for f in fields)
    return RunComparisonPublic(a=a, b=b, differing=differing,
                               fields=[f for f in fields if all_keys or not f.same])


def mark_rerun(session: Session, run: Run, source: Run, *, actor: str) -> None:
    """Record that `run` trains again from `source`'s record (audited, in the caller's
    transaction: the one that records `run`)."""
    run.rerun_of = source.id
    session.add(run)
    audit.record(session, actor, "run.rerun", "run", run.id,
                 {"rerun_of": source.id, "seed": source.seed})
