"""The canary's verdict: the challenger's live metrics against the champion's, on the same
windows.

Over the canary period (windows from the one in which the canary started), the challenger's
slices (its served rows in split mode, its shadow rows in shadow mode) and the champion's
served rows are pooled over the windows where the challenger appears, from the labels that
have arrived. With at least `canary_min_rows` labelled challenger rows, the challenger passes
when it is no worse than the champion by more than `canary_tolerance` on `canary_metric`,
and regresses otherwise; after `canary_max_windows` windows without enough labels the verdict
is "inconclusive" (and the orchestrator aborts, as it does on a regression).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from appliance.monitor.metrics import HIGHER_IS_BETTER
from appliance.monitor.policy import Policy
from appliance.registry import datasets
from appliance.registry.contract import ContractReport
from appliance.registry.models import get_model
from appliance.store.models import (
    Dataset,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    WindowVersion,
)


@dataclasses.dataclass
class Side:
    """One version's pooled figures over the canary windows."""

    version_id: int
    rows: int = 0
    labelled_rows: int = 0
    value: float | None = None


@dataclasses.dataclass
class CanaryVerdict:
    """"pending", "passed", "regressed" or "inconclusive", with the figures behind it."""

    status: str
    metric: str
    tolerance: float
    windows: list[int]
    challenger: Side
    champion: Side
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _pool(rows: list[WindowVersion], metric: str, version_id: int) -> Side:
    side = Side(version_id=version_id)
    weighted, weight = 0.0, 0
    for r in rows:
        side.rows += r.rows
        side.labelled_rows += r.labelled_rows
        value = (r.metrics or {}).get(metric)
        if metric == "accuracy" and "correct" in (r.metrics or {}):
            weighted += float(r.metrics["correct"])
            weight += r.labelled_rows
        elif isinstance(value, (int, float)) and r.labelled_rows:
            # Other metrics pool as a labelled-row-weighted mean of the windows' values.
            weighted += float(value) * r.labelled_rows
            weight += r.labelled_rows
    side.value = weighted / weight if weight else None
    return side


def verdict(
    session: Session, *, deployment: str, champion_version_id: int,
    challenger_version_id: int, mode: str, started_window: int, policy: Policy,
) -> CanaryVerdict:
    """Judge the canary of `challenger_version_id` (see the module docstring)."""
    shadow = mode == "shadow"
    stats = session.exec(
        select(WindowVersion, PredictionWindow.index)
        .join(PredictionWindow, PredictionWindow.id == WindowVersion.window_id)
        .where(PredictionWindow.deployment == deployment,
               PredictionWindow.index >= started_window,
               col(WindowVersion.version_id).in_([champion_version_id,
                                                  challenger_version_id]))
        .order_by(PredictionWindow.index)
    ).all()
    mine = [(s, i) for s, i in stats
            if s.version_id == challenger_version_id and s.shadow == shadow]
    windows = sorted({i for _, i in mine})
    theirs = [s for s, i in stats
              if s.version_id == champion_version_id and not s.shadow and i in windows]
    metric, tolerance = policy.canary_metric, policy.canary_tolerance
    challenger = _pool([s for s, _ in mine], metric, challenger_version_id)
    champion = _pool(theirs, metric, champion_version_id)

    def result(status: str, reason: str) -> CanaryVerdict:
        return CanaryVerdict(status, metric, tolerance, windows, challenger, champion, reason)

    enough = challenger.labelled_rows >= policy.canary_min_rows
    if enough and challenger.value is not None and champion.value is not None:
        higher = metric in HIGHER_IS_BETTER
        margin = (challenger.value - champion.value) if higher else (
            champion.value - challenger.value)
        words = (f"{metric} {challenger.value:.4f} vs champion {champion.value:.4f} on "
                 f"{len(windows)} window(s), {challenger.labelled_rows} labelled challenger rows")
        if margin >= -tolerance:
            return result("passed", words)
        return result("regressed", f"{words}: worse by more than {tolerance:g}")
    if len(windows) >= policy.canary_max_windows:
        return result("inconclusive", f"{challenger.labelled_rows} labelled challenger rows "
                      f"after {len(windows)} windows; {policy.canary_min_rows} needed")
    return result("pending", f"{challenger.labelled_rows} of {policy.canary_min_rows} "
                  f"labelled challenger rows so far, over {len(windows)} window(s)")


class ServingPublic(SQLModel):
    """One version behind a model's route."""

    version: int
    role: str
    mode: str | None
    share: float | None
    since: dt.datetime


class RetrainPublic(SQLModel):
    """A retrain request, from its trigger to its end."""

    id: int
    state: str
    trigger: str
    alert: int | None
    since_window: int
    champion_version: int | None
    challenger_version: int | None
    dataset: str | None
    # The retraining set's data contract: its status (a "failed" one holds the request in
    # waiting_for_data_accept) and its report, blocking findings and warnings alike.
    data_contract_status: str | None
    data_contract: ContractReport | None
    run: str | None
    gate: dict[str, Any] | None
    canary: dict[str, Any] | None
    approval: int | None
    outcome: str | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class CanaryStatusPublic(SQLModel):
    """What serves a model now, and where its latest retrain request stands."""

    model: str
    serving: list[ServingPublic]
    canary: ServingPublic | None
    retrain: RetrainPublic | None


def retrain_public(session: Session, request: RetrainRequest) -> RetrainPublic:
    def number(version_id: int | None) -> int | None:
        mv = session.get(ModelVersion, version_id) if version_id else None
        return mv.version if mv else None

    ds = session.get(Dataset, request.dataset_id) if request.dataset_id else None
    return RetrainPublic(
        id=request.id, state=request.state, trigger=request.trigger, alert=request.alert_id,
        since_window=request.since_window,
        champion_version=number(request.champion_version_id),
        challenger_version=number(request.version_id),
        dataset=f"{ds.name}:{ds.version}" if ds else None,
        data_contract_status=ds.contract_status if ds else None,
        data_contract=datasets.report(ds) if ds else None, run=request.run_id,
        gate=request.gate or None, canary=request.canary or None,
        approval=request.approval_id, outcome=request.outcome, error=request.error,
        created_at=request.created_at, finished_at=request.finished_at,
    )


def status(session: Session, model: str) -> CanaryStatusPublic:
    """The versions serving `model` (champion, canary) and its latest retrain request."""
    get_model(session, model)
    rows = session.exec(select(Deployment).where(
        Deployment.name == model, Deployment.status == "active").order_by(Deployment.id)).all()
    serving = [ServingPublic(version=session.get(ModelVersion, r.version_id).version,
                             role=r.role, mode=r.mode, share=r.share, since=r.started_at)
               for r in rows]
    request = session.exec(select(RetrainRequest).where(RetrainRequest.model_name == model)
                           .order_by(col(RetrainRequest.id).desc())).first()
    return CanaryStatusPublic(
        model=model, serving=serving,
        canary=next((s for s in serving if s.role == "canary"), None),
        retrain=retrain_public(session, request) if request else None,
    )
