"""The whole loop on embedded defaults, end to end, with real Ray, a real store and real HTTP.

train v1 -> gate -> promotion requested by an operator -> approved by an approver -> deploy ->
serve traffic from the synthetic stream (labels arrive as feedback) -> the stream drifts -> the
monitor flags the first drifted window and alerts the owner -> retrain v2 on fresh labelled data
-> gate against the champion -> approval -> promote -> v2 serving -> accuracy recovered.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import func, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.data import synthetic
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, issue_token
from appliance.monitor import service
from appliance.pipelines import deployment, promotion, training
from appliance.pipelines.spec import TrainSpec
from appliance.registry import datasets, models
from appliance.store import migrate, session_scope
from appliance.store.models import PredictionWindow, User

MODEL = "credit"


@dataclasses.dataclass
class DemoPlan:
    """Sizes of the demo run.

    Args:
        train_rows: rows of each training dataset (default 20,000).
        clean_windows: windows served before the stream drifts (default 3).
        recovery_windows: windows served by the retrained champion (default 2).
        requests_per_window: inference requests per window (default 10).
        rows_per_request: rows in each request (default 200).
        seed: seed of the synthetic stream (default 7).
    """

    train_rows: int = 20_000
    clean_windows: int = 3
    recovery_windows: int = 2
    requests_per_window: int = 10
    rows_per_request: int = 200
    seed: int = 7


def step_count(plan: DemoPlan) -> int:
    """How many times `run_demo` calls its `step` callback for `plan` (for a progress bar)."""
    windows = plan.clean_windows + 1 + plan.recovery_windows
    return 5 + 2 * windows + 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(home: Path, port: int | None = None) -> Config:
    """An embedded configuration rooted at `home` (SQLite and artifacts inside it)."""
    home = Path(home)
    return Config(home=home, db_url=f"sqlite:///{home / 'appliance.db'}",
                  artifacts=home / "artifacts", serve_port=port or _free_port())


def _tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    if values.dtype.kind in "OUS":
        return {"name": name, "shape": [len(values)], "datatype": "BYTES",
                "data": [str(v) for v in values]}
    return {"name": name, "shape": [len(values)], "datatype": "FP64",
            "data": values.astype(np.float64).tolist()}


class _Traffic:
    """Plays the internal app: sends inference requests, then the labels that arrive later."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60.0,
                                   headers={"Authorization": f"Bearer {token}"})
        self.served = 0
        self.versions: dict[str, int] = {}

    def window(self, plan: DemoPlan, index: int, *, covariate: float, concept: float) -> None:
        batch = synthetic.generate(plan.requests_per_window * plan.rows_per_request,
                                   seed=plan.seed * 1000 + index, covariate=covariate,
                                   concept=concept)
        for r in range(plan.requests_per_window):
            part = batch.slice(r * plan.rows_per_request, plan.rows_per_request)
            request_id = f"w{index:03d}-r{r:03d}"
            body = {"id": request_id, "inputs": [
                _tensor(f, part.column(f).to_numpy(zero_copy_only=False))
                for f in synthetic.FEATURES
            ]}
            resp = self.client.post(f"/v2/models/{MODEL}/infer", json=body)
            resp.raise_for_status()
            doc = resp.json()
            preds = next(o for o in doc["outputs"] if o["name"] == "predictions")["data"]
            self.served += len(preds)
            self.versions[doc["model_version"]] = self.versions.get(doc["model_version"], 0) + 1
            labels = part.column(synthetic.LABEL).to_pylist()
            self.client.post(f"/v2/models/{MODEL}/feedback",
                             json={"request_id": request_id, "labels": labels}).raise_for_status()

    def close(self) -> None:
        self.client.close()


def _train(cfg: Config, ops: User, name: str, table: pa.Table, seed: int):
    path = cfg.home / "incoming" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    with session_scope(cfg.db_url) as session:
        ds = datasets.add_file(session, ArtifactStore(cfg.artifacts), path, name, actor=ops.name)
    spec = TrainSpec(model=MODEL, dataset=f"{ds.name}:{ds.version}", label=synthetic.LABEL,
                     categorical=list(synthetic.CATEGORICAL), seed=seed)
    return training.train(cfg, ops, spec)


def _promote(cfg: Config, ops: User, risk: User, version: int) -> dict[str, Any]:
    approval, gate = promotion.request(cfg, ops, f"{MODEL}:{version}", "champion")
    with session_scope(cfg.db_url) as session:
        approvals.approve(session, risk, approval.id, comment="demo: reviewed gate results")
    return {"approval": approval.id, "gate": gate, "requested_by": ops.name,
            "approved_by": risk.name}


def run_demo(
    cfg: Config, plan: DemoPlan | None = None,
    step: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run the loop against `cfg` (a fresh home) and return the summary document.

    Args:
        cfg: an embedded configuration, normally from `demo_config`.
        plan: sizes (default `DemoPlan()`).
        step: called with a short description as each step starts (progress display).
    """
    # Deferred: importing the control plane must not import Ray.
    from cluster import runtime

    plan = plan or DemoPlan()
    started = time.monotonic()
    migrate(cfg.db_url)
    step("creating users: admin, operator 'ops', approver 'risk', service account 'app'")
    with session_scope(cfg.db_url) as session:
        create_user(session, "admin", "admin", actor="admin", team="platform")
        ops = create_user(session, "ops", "operator", actor="admin", team="credit-risk")
        risk = create_user(session, "risk", "approver", actor="admin", team="model-risk")
        create_user(session, "app", "viewer", actor="admin", team="lending-app")
        app_token = issue_token(session, "app", "lending-app", actor="admin")
    step("starting Ray")
    runtime.ensure_ray(cfg)

    step("training v1 on Ray Train")
    v1 = _train(cfg, ops, "credit-applications",
                synthetic.generate(plan.train_rows, seed=plan.seed), plan.seed)
    step("gating v1; ops requests promotion, risk approves")
    promotions = [_promote(cfg, ops, risk, v1.version.version)]
    step("deploying credit@champion on Ray Serve")
    dep = deployment.deploy(cfg, ops, MODEL)
    traffic = _Traffic(dep.url, app_token)

    windows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    drift_window: int | None = None
    retrained = None
    phases = (["clean"] * plan.clean_windows + ["drifted"]
              + ["recovered"] * plan.recovery_windows)
    try:
        for index, phase in enumerate(phases, start=1):
            strength = 0.0 if phase == "clean" else 1.0
            step(f"window {index}: serving {phase} traffic")
            traffic.window(plan, index, covariate=strength, concept=strength)
            step(f"window {index}: monitor pass")
            (result,) = service.run_once(cfg, MODEL)
            windows.append({"window": result.window, "phase": phase, "rows": result.rows,
                            "accuracy": result.accuracy, "drifted_share": result.drifted_share,
                            "dataset_drifted": result.dataset_drifted,
                            "drifted_features": result.drifted_features,
                            "alerts": [a["kind"] for a in result.alerts]})
            alerts += [{"window": result.window, **a} for a in result.alerts]
            if result.dataset_drifted and drift_window is None:
                drift_window = result.window
            if result.retrain and retrained is None:
                step("retrain policy fired: training v2 on fresh labelled data")
                fresh = synthetic.generate(plan.train_rows, seed=plan.seed + 1,
                                           covariate=1.0, concept=1.0)
                retrained = _train(cfg, ops, "credit-applications", fresh, plan.seed + 1)
                step("gating v2 against the champion; ops requests, risk approves")
                promotions.append(_promote(cfg, ops, risk, retrained.version.version))
                step("rolling v2 out behind the same endpoint")
                deployment.deploy(cfg, ops, MODEL)
    finally:
        traffic.close()

    with session_scope(cfg.db_url) as session:
        logged = session.exec(select(func.sum(PredictionWindow.rows)).where(
            PredictionWindow.deployment == MODEL)).one() or 0
        chain = audit.verify(session)
        champion = models.resolve(session, f"{MODEL}@champion").version

    def pooled(phase: str) -> float | None:
        sel = [w for w in windows if w["phase"] == phase and w["accuracy"] is not None]
        total = sum(w["rows"] for w in sel)
        return sum(w["accuracy"] * w["rows"] for w in sel) / total if total else None

    versions = [{"version": t.version.version, "run": t.run_id, "metrics": t.metrics,
                 "device": t.device} for t in (v1, retrained) if t is not None]
    return {
        "home": str(cfg.home),
        "versions": versions,
        "champion": champion,
        "promotions": promotions,
        "drift_detected_window": drift_window,
        "first_drifted_window": plan.clean_windows + 1,
        "alerts": alerts,
        "windows": windows,
        "accuracy_before_drift": pooled("clean"),
        "accuracy_during_drift": pooled("drifted"),
        "accuracy_after_recovery": pooled("recovered"),
        "served": traffic.served,
        "logged": int(logged),
        "served_by_version": traffic.versions,
        "audit": {"events": chain.events, "verified": chain.ok},
        "endpoint": f"{dep.url}/v2/models/{MODEL}/infer",
        "seconds": round(time.monotonic() - started, 1),
    }
