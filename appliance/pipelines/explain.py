"""Explain one logged prediction: the row as logged, scored again by the version that answered,
with the attribution method that fits its kind (`cluster.explain`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlmodel import Session, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.errors import InvalidInput, NotFound
from appliance.monitor.trace import LoggedRow, locate
from appliance.store.models import ModelVersion


class Attribution(BaseModel):
    """One feature's share of the explained output (positive: pushed it up)."""

    feature: str
    value: Any
    attribution: float


class ExplanationPublic(BaseModel):
    """`appliance predictions explain --json`: why version `version` answered row `row` of a
    request as it did."""

    request_id: str
    row: int
    model: str
    version: int
    kind: str
    task: str
    method: str
    output: str
    value: float
    baseline_value: float
    completeness_gap: float
    prediction: int | None
    score: float | None
    attributions: list[Attribution]


def _pick(rows: list[LoggedRow], row: int | None) -> LoggedRow:
    served = [r for r in rows if not r.shadow] or rows
    if row is None:
        return served[0]
    for r in served:
        if r.row == row:
            return r
    raise InvalidInput(f"--row {row} is not a row of this request; it has rows "
                       f"{sorted({r.row for r in served})}")


def explain(cfg: Config, session: Session, request_id: str, *, row: int | None = None,
            deployment: str | None = None) -> ExplanationPublic:
    """Attributions for row `row` (default the first) of logged request `request_id`.

    Args:
        cfg: configuration (artifact store).
        session: open session.
        request_id: the logged request.
        row: which of its rows (default the first).
        deployment: only look in this deployment (default any).

    Raises:
        NotFound: no such request, or its version is no longer registered.
        InvalidInput: no such row, or the logged row lacks a feature the model needs.
    """
    # Deferred: torch (and xgboost for trees) load only when something is explained.
    from cluster.bundle import ModelBundle
    from cluster.explain import attribute, check_row

    found = locate(session, cfg.predictions_dir, cfg.artifacts, request_id, deployment)
    chosen = _pick(found.rows, row)
    version = session.exec(select(ModelVersion).where(
        ModelVersion.model_name == found.model,
        ModelVersion.version == int(chosen.version))).first()
    if version is None:
        raise NotFound(f"{found.model} v{chosen.version} answered {request_id!r} but is not "
                       "registered here")
    store = ArtifactStore(cfg.artifacts)
    bundle = ModelBundle.from_bytes(store.get_bytes(
        version.digest, what=f"model bundle {version.model_name}:{version.version}",
        model=version.model_name))
    columns: dict[str, np.ndarray] = {}
    for name in bundle.feature_names:
        if name not in chosen.inputs:
            continue
        value = chosen.inputs[name]
        if name in bundle.categorical:
            columns[name] = np.array([None if value is None else str(value)], dtype=object)
        else:
            columns[name] = np.array([np.nan if value is None else value], dtype=np.float64)
    check_row(bundle, columns)
    doc = attribute(bundle, columns)
    ranked = sorted(doc["attributions"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return ExplanationPublic(
        request_id=request_id, row=chosen.row, model=version.model_name,
        version=version.version, kind=bundle.kind, task=bundle.task, method=doc["method"],
        output=doc["output"], value=doc["value"], baseline_value=doc["baseline_value"],
        completeness_gap=doc["completeness_gap"], prediction=chosen.prediction,
        score=chosen.score,
        attributions=[Attribution(feature=f, value=chosen.inputs.get(f), attribution=a)
                      for f, a in ranked],
    )
