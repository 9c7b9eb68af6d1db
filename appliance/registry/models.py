"""Registered models, runs and versions, and how a reference like ``credit@champion`` resolves."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from sqlmodel import Session, SQLModel, func, select

from appliance.errors import InvalidInput, NotFound
from appliance.governance import audit, reviews
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.names import check_model_name
from appliance.names import check_name as check_plain_name
from appliance.registry.provenance import code_version, environment_hash
from appliance.store.models import (
    Alias,
    Dataset,
    ModelVersion,
    RegisteredModel,
    RiskTier,
    Run,
    User,
    utcnow,
)


def check_name(name: str) -> str:
    """`name` when it is a valid model name (`appliance.names.check_model_name`)."""
    return check_model_name(name)


def ensure_model(
    session: Session, name: str, *, owner: str, team: str, risk_tier: str | None = None,
    review_interval_days: int | None = None,
) -> RegisteredModel:
    """Model `name`, created (audited) for `owner` of `team` when it does not exist yet.

    Args:
        risk_tier: the new model's tier (default None: "medium"); ignored for an existing
            model, whose tier only an approver changes (`update_model`).
        review_interval_days: days between its periodic reviews (default None: the tier's,
            `appliance.governance.reviews.DEFAULT_INTERVAL_DAYS`); ignored like `risk_tier`.
    """
    model = session.get(RegisteredModel, check_name(name))
    if model is None:
        tier = _check_tier(risk_tier) if risk_tier is not None else RiskTier.medium.value
        days = (reviews.check_interval(review_interval_days)
                if review_interval_days is not None else None)
        model = RegisteredModel(name=name, owner=owner, team=team, risk_tier=tier,
                                review_interval_days=days)
        session.add(model)
        session.flush()
        audit.record(session, owner, "model.created", "model", name,
                     {"team": team, "risk_tier": tier, "review_interval_days": days})
    return model


def _check_tier(risk_tier: str) -> str:
    if risk_tier not in {t.value for t in RiskTier}:
        raise InvalidInput(f"unknown risk tier {risk_tier!r}; use "
                           f"{', '.join(t.value for t in RiskTier)}")
    return risk_tier


class ModelSettingsPublic(SQLModel):
    """How a registered model is owned and governed, as `appliance models set` shows it."""

    model: str
    owner: str
    team: str
    runbook_url: str | None
    risk_tier: str
    review_interval_days: int | None
    description: str


def settings_public(model: RegisteredModel) -> ModelSettingsPublic:
    """The record faces show for a registered model's settings."""
    return ModelSettingsPublic(model=model.name, owner=model.owner, team=model.team,
                               runbook_url=model.runbook_url, risk_tier=model.risk_tier,
                               review_interval_days=model.review_interval_days,
                               description=model.description)


@operation("models.set")
def update_model(
    session: Session, user: User, name: str, *, owner: str | None = None,
    team: str | None = None, runbook_url: str | None = None, risk_tier: str | None = None,
    description: str | None = None, review_interval_days: int | None = None,
) -> RegisteredModel:
    """Change who owns model `name` and how it is governed (audited).

    Owner, team, runbook and description need "operate"; the risk tier and the review
    interval need "approve", because a "low" tier lets the model's policy promote challengers
    without a person, and the tier sets how many approvers a promotion needs.

    Raises:
        NotFound: no such model or owner; InvalidInput: a bad tier or URL, or no change.
    """
    model = get_model(session, name)
    changes: dict[str, Any] = {}
    if risk_tier is not None:
        require(user, "approve")
        changes["risk_tier"] = _check_tier(risk_tier)
    if review_interval_days is not None:
        require(user, "approve")
        changes["review_interval_days"] = reviews.check_interval(review_interval_days)
    if any(v is not None for v in (owner, team, runbook_url, description)):
        require(user, "operate")
    if owner is not None:
        if session.exec(select(User).where(User.name == owner)).first() is None:
            raise NotFound(f"no user named {owner!r} to own model {name!r}")
        changes["owner"] = owner
    if team is not None:
        changes["team"] = team
    if runbook_url is not None:
        if runbook_url and not re.match(r"^https?://\S+$", runbook_url):
            raise InvalidInput(f"runbook URL {runbook_url!r} must be an http(s) URL")
        changes["runbook_url"] = runbook_url or None
    if description is not None:
        changes["description"] = description
    if not changes:
        raise InvalidInput("nothing to change: give --owner, --team, --runbook, --risk-tier, "
                           "--review-interval-days or --description")
    for key, value in changes.items():
        setattr(model, key, value)
    session.add(model)
    audit.record(session, user.name, "model.updated", "model", name, changes)
    return model


def get_model(session: Session, name: str) -> RegisteredModel:
    """Model `name`; InvalidInput for a name that could not be one, NotFound for no such."""
    model = session.get(RegisteredModel, check_plain_name("model name", name))
    if model is None:
        raise NotFound(f"no model named {name!r}; list them with `appliance models list`")
    return model


def start_run(
    session: Session, *, model: str, dataset: Dataset, spec: dict[str, Any],
    params: dict[str, Any], seed: int, actor: str, runtime: dict[str, Any] | None = None,
) -> Run:
    """Record a run of `model` on `dataset` (status "running"), with the code version and the
    installed-package hash of this process; `runtime` is `provenance.runtime()` as a dict
    (default None: not recorded)."""
    run = Run(
        id=uuid.uuid4().hex[:16], model_name=model, dataset_id=dataset.id, spec=spec,
        params=params, seed=seed, code_version=code_version(), environment=environment_hash(),
        runtime=runtime, created_by=actor,
    )
    session.add(run)
    session.flush()
    audit.record(session, actor, "run.started", "run", run.id,
                 {"model": model, "dataset": f"{dataset.name}:{dataset.version}", "seed": seed})
    return run


def finish_run(
    session: Session, run: Run, *, metrics: dict[str, Any], device: str | None,
    error: str | None = None,
) -> Run:
    run.status = "failed" if error else "finished"
    run.metrics = metrics
    run.device = device
    run.error = error
    run.finished_at = utcnow()
    session.add(run)
    audit.record(session, run.created_by, f"run.{run.status}", "run", run.id,
                 {"metrics": metrics, "error": error})
    return run


def register_version(
    session: Session, *, run: Run, digest: str, profile_digest: str | None,
    metrics: dict[str, Any], features: list[str], categorical: list[str], label: str,
    actor: str, calibration: dict[str, Any] | None = None,
    gate_checks: dict[str, Any] | None = None, importance: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register the next version of the run's model, pointing at artifact `digest`.

    `gate_checks` is the promotion gate the version will be judged by (a `GateChecks` as a
    dict, from the run's spec); None (default) leaves the default gate. `importance` is its
    global feature importance on the holdout (`appliance.monitor.importance`; default None).
    """
    latest = session.exec(
        select(func.max(ModelVersion.version)).where(ModelVersion.model_name == run.model_name)
    ).one()
    mv = ModelVersion(
        model_name=run.model_name, version=(latest or 0) + 1, digest=digest,
        profile_digest=profile_digest, run_id=run.id, metrics=metrics, features=features,
        categorical=categorical, label=label, calibration=calibration or {},
        gate_checks=gate_checks, importance=importance, created_by=actor,
    )
    session.add(mv)
    session.flush()
    audit.record(session, actor, "model.version.registered", "model",
                 f"{mv.model_name}:{mv.version}", {"digest": digest, "run": run.id})
    return mv


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``name``, ``name@alias`` or ``name:N`` -> (name, alias, version).

    Raises:
        InvalidInput: a malformed reference, or a name or alias `appliance.names` refuses.
    """
    if not isinstance(ref, str):
        raise InvalidInput(f"model reference {ref!r} is not a string")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if not alias:
            raise InvalidInput(f"model reference {ref!r} has an empty alias")
        return _ref_name(name, ref), check_plain_name("alias", alias), None
    if ":" in ref:
        name, ver = ref.split(":", 1)
        if not ver.isdigit():
            raise InvalidInput(f"version in model reference {ref!r} must be a number")
        return _ref_name(name, ref), None, int(ver)
    return _ref_name(ref, ref), None, None


def _ref_name(name: str, ref: str) -> str:
    # A name the plain rule accepts is only looked up (an unknown one is NotFound); a name
    # that could be a path or hold a control character is refused outright.
    return check_plain_name("model name", name)


def resolve(session: Session, ref: str) -> ModelVersion:
    """The version `ref` names (a bare name means its latest version)."""
    name, alias, version = parse_ref(ref)
    get_model(session, name)
    if alias:
        row = session.exec(
            select(Alias).where(Alias.model_name == name, Alias.alias == alias)
        ).first()
        if row is None:
            raise NotFound(f"model {name!r} has no {alias!r} alias")
        return session.get(ModelVersion, row.version_id)
    query = select(ModelVersion).where(ModelVersion.model_name == name)
    if version is not None:
        query = query.where(ModelVersion.version == version)
    mv = session.exec(query.order_by(ModelVersion.version.desc())).first()
    if mv is None:
        raise NotFound(f"model {name!r} has no version {version if version else '(none yet)'}")
    return mv


def list_versions(session: Session, model: str | None = None) -> list[ModelVersion]:
    """Every model version by model name then version, or only `model`'s.

    Raises:
        NotFound: `model` is given and no such model is registered.
    """
    query = select(ModelVersion).order_by(ModelVersion.model_name, ModelVersion.version)
    if model:
        get_model(session, model)
        query = query.where(ModelVersion.model_name == model)
    return list(session.exec(query).all())


def aliases_of(session: Session, version: ModelVersion) -> list[str]:
    return sorted(session.exec(
        select(Alias.alias).where(Alias.version_id == version.id)
    ).all())


class ModelVersionPublic(SQLModel):
    """`appliance models list|show --json`: one model version and the aliases it holds."""

    model: str
    version: int
    aliases: list[str]
    digest: str
    run: str
    metrics: dict[str, Any]
    created_by: str
    created_at: dt.datetime


def _version_public(mv: ModelVersion, aliases: list[str]) -> ModelVersionPublic:
    return ModelVersionPublic(model=mv.model_name, version=mv.version, aliases=aliases,
                              digest=mv.digest, run=mv.run_id, metrics=mv.metrics,
                              created_by=mv.created_by, created_at=mv.created_at)


def version_public(session: Session, ref: str) -> ModelVersionPublic:
    """The version `ref` names (`resolve`), as `appliance models show` prints it."""
    mv = resolve(session, ref)
    return _version_public(mv, aliases_of(session, mv))


def list_public(session: Session, model: str | None = None) -> list[ModelVersionPublic]:
    """`list_versions` as `appliance models list` prints it; every alias in one query."""
    versions = list_versions(session, model)
    held: dict[int, list[str]] = {}
    for version_id, alias in session.exec(
            select(Alias.version_id, Alias.alias).order_by(Alias.alias)).all():
        held.setdefault(version_id, []).append(alias)
    return [_version_public(mv, held.get(mv.id, [])) for mv in versions]
