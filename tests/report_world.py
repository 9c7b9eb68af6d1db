"""A small store that has lived a little, for the report tests (`build_world`).

Everything a person or the product does goes through the library functions that do it in
production (users, datasets and their contracts, runs, versions, the gate and four-eyes
approvals, a refused self-approval, alerts acknowledged and resolved, a review). What a
served deployment and the monitor leave behind (the deployment ledger, closed windows with
their drift reports) is written as rows: producing them for real needs Ray Serve and logged
traffic, which the serving and monitor tests cover.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from appliance.artifacts import ArtifactStore
from appliance.errors import PermissionDenied
from appliance.governance import approvals, reviews
from appliance.governance.gate_checks import GateCheckResult, GateResult
from appliance.governance.users import create_user, issue_token
from appliance.monitor import alerts
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import (
    Deployment,
    DriftReport,
    PredictionWindow,
    User,
    WindowVersion,
    utcnow,
)

FEATURES = ["income", "debt", "region"]


@dataclasses.dataclass
class World:
    url: str
    month: str
    channels: alerts.Channels


def _table(rows: int, *, shift: float = 0.0, drop: str | None = None) -> pa.Table:
    cols = {"income": [float(i) + shift for i in range(rows)],
            "debt": [float(i % 7) for i in range(rows)],
            "region": [["north", "south"][i % 2] for i in range(rows)],
            "label": [i % 2 for i in range(rows)]}
    if drop:
        cols.pop(drop)
    return pa.table(cols)


# As the training pipeline stores it (`appliance.monitor.importance`).
IMPORTANCE = {"method": "permutation", "metric": "auc", "baseline": 0.86, "rows": 40,
              "repeats": 3, "association": {"income": 0.5, "debt": 0.2, "region": 0.1},
              "features": {"income": {"importance": 0.21, "std": 0.01},
                           "debt": {"importance": 0.04, "std": 0.01},
                           "region": {"importance": 0.0, "std": 0.0}}}


def _fairness(ratio: float) -> dict:
    """A window's fairness record on "region" (`appliance.monitor.fairness.fairness_gaps`)."""
    return {"attribute": "region", "groups": {}, "demographic_parity_difference": 0.5 - ratio / 2,
            "disparate_impact_ratio": ratio, "four_fifths": ratio >= 0.8,
            "equal_opportunity_difference": 0.1, "min_group_rows": 30}


def _version(s, store, user: str, table: pa.Table, accuracy: float,
             importance: dict | None = None):
    ds = datasets.add_table(s, store, table, "loans", actor=user, label="label")
    run = models.start_run(s, model="credit", dataset=ds, spec={"model": {"kind": "mlp"}},
                           params={"lr": 0.05, "epochs": 3}, seed=7, actor=user)
    models.finish_run(s, run, metrics={"accuracy": accuracy, "auc": accuracy + 0.05},
                      device="cpu")
    return models.register_version(
        s, run=run, digest=f"{len(table):064x}", profile_digest=None,
        metrics={"accuracy": accuracy, "auc": accuracy + 0.05}, features=FEATURES,
        categorical=["region"], label="label", actor=user, importance=importance)


def _gate(accuracy: float) -> GateResult:
    return GateResult(passed=True, checks=[
        GateCheckResult(name="accuracy >= 0.7", kind="threshold", measured=accuracy,
                        limit=0.7, passed=True),
        GateCheckResult(name="segment region=north: accuracy >= 0.6", kind="segment",
                        measured=accuracy - 0.02, limit=0.6, passed=True),
    ])


def _window(s, version, index: int, *, accuracy: float | None, estimated: float,
            psi: dict[str, float], closed_at: dt.datetime, fairness: dict | None = None,
            shift: float | None = None) -> None:
    window = PredictionWindow(deployment="credit", index=index, path=f"w{index}.parquet",
                              rows=200, requests=200, versions=[str(version.version)],
                              labelled_rows=200 if accuracy is not None else 0,
                              accuracy=accuracy, closed_at=closed_at)
    s.add(window)
    s.flush()
    drifted = [f for f, v in psi.items() if v >= 0.2]
    share = len(drifted) / len(psi)
    s.add(WindowVersion(window_id=window.id, version_id=version.id, version=version.version,
                        rows=200, labelled_rows=window.labelled_rows,
                        metrics={"accuracy": accuracy} if accuracy is not None else {},
                        estimated={"accuracy": estimated},
                        drift_status="drifted" if drifted else "ok", drifted_share=share,
                        fairness=fairness, segments={"region": {
                            "north": {"rows": 120, "labelled_rows": 100, "positive_rate": 0.3,
                                      "mean_score": 0.31, "accuracy": accuracy},
                            "south": {"rows": 80, "labelled_rows": 0, "positive_rate": 0.2,
                                      "mean_score": 0.22}}},
                        importance=None if shift is None else {"importance_shift": shift}))
    s.add(DriftReport(window_id=window.id, version_id=version.id, rows=200,
                      drifted_share=share, dataset_drifted=bool(drifted),
                      drifted_features=drifted,
                      report={"features": {f: {"kind": "numerical", "drifted": v >= 0.2,
                                               "psi": {"value": v}} for f, v in psi.items()},
                              "drifted_share": share, "dataset_drifted": bool(drifted)}))


def build_world(url: str, tmp_path) -> World:
    """Two versions of "credit": v1 promoted, served and drifting, v2 promoted after a
    refused self-approval; its dataset's failed contract accepted; two alerts handled."""
    store = ArtifactStore(tmp_path / "artifacts")
    channels = alerts.Channels(tmp_path / "alerts.log")
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root", team="credit")
        create_user(s, "risk", "approver", actor="root")
        create_user(s, "risk2", "approver", actor="root")
        issue_token(s, "ops", "laptop", actor="root")
        models.ensure_model(s, "credit", owner="ops", team="credit", risk_tier="high",
                            review_interval_days=30)
        v1 = _version(s, store, "ops", _table(40), 0.81, importance=IMPORTANCE)
    with session_scope(url) as s:
        ops, risk, risk2, root = (s.get(User, i) for i in (2, 3, 4, 1))
        models.update_model(s, ops, "credit", runbook_url="https://runbooks.example/credit",
                            description="Scores loan applications for default risk.")
        request = approvals.request_promotion(s, ops, s.merge(v1), "champion", _gate(0.81))
        approvals.approve(s, risk, request.id, "looks fine")
        approvals.approve(s, risk2, request.id, "agreed")
    started = utcnow() - dt.timedelta(hours=3)
    with session_scope(url) as s:
        v1 = models.resolve(s, "credit:1")
        s.add(Deployment(name="credit", model_name="credit", version_id=v1.id,
                         url="http://127.0.0.1:8000/v2/models/credit", created_by="ops",
                         started_at=started))
        for i, (acc, est, income, ratio) in enumerate([
                (0.82, 0.80, 0.02, 0.9), (0.79, 0.78, 0.08, 0.85),
                (None, 0.71, 0.31, 0.7), (0.66, 0.69, 0.45, 0.6)]):
            _window(s, v1, i, accuracy=acc, estimated=est,
                    psi={"income": income, "debt": 0.01, "region": 0.03 * i},
                    closed_at=started + dt.timedelta(minutes=30 * (i + 1)),
                    fairness=_fairness(ratio), shift=0.05 * i)
    with session_scope(url) as s:
        drift = alerts.notice(s, model="credit", deployment="credit", rule="income_drift",
                              severity="warning", message="credit v1: income drifted",
                              channels=channels, kind="drift")
        alerts.notice(s, model="credit", deployment="credit", rule="gate_failed",
                      severity="warning", message="challenger failed", channels=channels)
    with session_scope(url) as s:
        ops = s.get(User, 2)
        alerts.acknowledge(s, ops, drift.id)
        alerts.resolve(s, ops, drift.id, "retrained on fresh data", channels)
    with session_scope(url) as s:
        failed = datasets.add_table(s, store, _table(60, shift=50.0, drop="debt"), "loans",
                                    actor="ops", label="label")
        assert failed.contract_status == "failed", failed.contract_status
        datasets.accept_contract(s, s.get(User, 2), f"loans:{failed.version}",
                                 "debt was retired upstream; approved by credit risk")
    with session_scope(url) as s:
        ops, risk, risk2, root = (s.get(User, i) for i in (2, 3, 4, 1))
        v2 = _version(s, store, "ops", _table(80, shift=5.0), 0.84)
        # An admin may operate and approve, but not approve what they requested.
        request = approvals.request_promotion(s, root, v2, "champion", _gate(0.84))
        request_id = request.id
    with session_scope(url) as s, pytest.raises(PermissionDenied, match="four-eyes"):
        approvals.approve(s, s.get(User, 1), request_id, "my own")
    with session_scope(url) as s:
        approvals.approve(s, s.get(User, 3), request_id)
        approvals.approve(s, s.get(User, 4), request_id)
        reviews.record_review(s, s.get(User, 3), "credit", "Annual validation: holdout and "
                              "segments re-checked; drift on income noted.")
        models.ensure_model(s, "legacy", owner="ops", team="credit")
    with session_scope(url) as s:
        # A model nobody reviewed in a year: overdue.
        legacy = models.get_model(s, "legacy")
        legacy.created_at = utcnow() - dt.timedelta(days=400)
        s.add(legacy)
    return World(url=url, month=f"{utcnow():%Y-%m}", channels=channels)
