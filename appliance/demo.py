"""The demo plays the world; the appliance does the work.

The demo sets the stage as an operator would (users, the first model trained, approved and
deployed, the model's monitoring policy), starts `appliance monitor` as its own process, and
from then on only plays the world around the appliance:

- a lending app sends traffic from the synthetic credit stream, a window's worth at a steady
  pace, through real HTTP; after some clean windows the stream drifts, on a gradual ramp of
  covariate and concept drift over several windows, and stays drifted;
- the loans' outcomes (labels) arrive late: those of window k during window k+2;
- a risk officer approves promotion requests that the monitor files.

Everything else is the monitor's: closing windows by its policy, detecting drift, live
accuracy from late labels and its label-free estimate, alerting the owner, building the
retraining set from logged and labelled production rows, training the challenger on Ray,
gating it, running it as a canary beside the champion, filing the promotion request, and
rolling the challenger out once approved. The summary is read back from the store.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlmodel import col, func, select

from appliance.artifacts import ArtifactStore
from appliance.config import Config
from appliance.data import synthetic
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, issue_token
from appliance.monitor import windows as windows_mod
from appliance.monitor.policy_store import set_policy
from appliance.pipelines import deployment, promotion, training
from appliance.pipelines.spec import TrainSpec
from appliance.ports import free_port
from appliance.registry import datasets, models
from appliance.serving import parse_serving
from appliance.store import migrate, session_scope
from appliance.store.models import (
    Alert,
    Approval,
    ApprovalStatus,
    Dataset,
    FeedbackBatch,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    User,
    WindowVersion,
)

MODEL = "credit"
SERVICE_ACCOUNT = "svc-monitor"


@dataclasses.dataclass
class DemoPlan:
    """The world the demo plays.

    Args:
        train_rows: rows of the first training set (default 20,000).
        window_rows: rows per window, and the monitor's window policy (default 2,000).
        rows_per_request: rows in each inference request (default 200).
        clean_windows: windows before the stream drifts (default 3).
        ramp: drift strengths of the windows after them, before full strength (default
            0.3, 0.65; every later window is at 1.0).
        label_delay: labels of window k arrive during window k + label_delay (default 2).
        recovery_windows: windows served by the new champion alone before the world ends
            (default 3).
        max_windows: the world ends after this many windows whatever happened (default 80).
        window_seconds: how long the app takes to send one window (default 1.5).
        seed: seed of the synthetic stream (default 7).
        policy: the monitoring policy the operator gives the model.
    """

    train_rows: int = 20_000
    window_rows: int = 2_000
    rows_per_request: int = 200
    clean_windows: int = 3
    ramp: tuple[float, ...] = (0.3, 0.65)
    label_delay: int = 2
    recovery_windows: int = 3
    max_windows: int = 80
    window_seconds: float = 1.5
    seed: int = 7
    policy: dict[str, Any] = dataclasses.field(default_factory=lambda: {
        "triggers": ["drift", "accuracy"],
        # Wait for five windows of labelled rows since the alert, and train on the newest
        # three: the drift ramps over several windows, and half-drifted rows teach the old rule.
        "min_labelled_rows": 10_000,
        "max_rows": 6_000,
        "holdout_share": 0.2,
        "canary_mode": "split",
        "canary_share": 0.1,
        "canary_min_rows": 600,
        # Live metrics per employment type and per group, and fairness gaps across the groups
        # of the protected attribute the app sends beside the features (never a model input).
        "segments": ["employment", synthetic.PROTECTED],
        "protected_attribute": synthetic.PROTECTED,
    })

    def strength(self, window: int) -> float:
        """The drift strength of world window `window` (1-based)."""
        k = window - self.clean_windows
        if k <= 0:
            return 0.0
        return self.ramp[k - 1] if k <= len(self.ramp) else 1.0

    @property
    def requests_per_window(self) -> int:
        return self.window_rows // self.rows_per_request


def demo_config(home: Path, port: int | None = None) -> Config:
    """An embedded configuration rooted at `home` (SQLite and artifacts inside it)."""
    home = Path(home)
    # The story's time runs fast (windows seconds apart): its replicas publish their logs
    # every 50 ms, not every second, so that the monitor sees rows as soon as labels.
    return Config(home=home, db_url=f"sqlite:///{home / 'appliance.db'}",
                  artifacts=home / "artifacts", serve_port=port or free_port(),
                  serving=parse_serving({"log_flush_s": 0.05,
                                         # Logged for fairness monitoring, not scored.
                                         "log_columns": [synthetic.PROTECTED]}))


def _tensor(name: str, values: np.ndarray) -> dict[str, Any]:
    if values.dtype.kind in "OUS":
        return {"name": name, "shape": [len(values)], "datatype": "BYTES",
                "data": [str(v) for v in values]}
    return {"name": name, "shape": [len(values)], "datatype": "FP64",
            "data": values.astype(np.float64).tolist()}


class _App:
    """The lending app: sends requests, and later the outcomes of the loans it scored."""

    def __init__(self, url: str, token: str, plan: DemoPlan) -> None:
        self.client = httpx.Client(base_url=url, timeout=60.0,
                                   headers={"Authorization": f"Bearer {token}"})
        self.plan = plan
        self.served = 0
        self.versions: dict[str, int] = {}  # version -> rows it answered
        self.truth: dict[int, list[tuple[str, list[int]]]] = {}
        self.sent_at: dict[int, float] = {}  # window -> wall-clock time its traffic began
        self.first_request_id: str | None = None

    def window(self, index: int, midway: Callable[[], None] = lambda: None) -> None:
        """Send window `index`'s traffic at the plan's pace; call `midway` halfway through."""
        plan, strength = self.plan, self.plan.strength(index)
        batch = synthetic.generate(plan.window_rows, seed=plan.seed * 1000 + index,
                                   covariate=strength, concept=strength, protected=True)
        start, wall = time.monotonic(), time.time()
        pace = plan.window_seconds / plan.requests_per_window
        self.truth[index] = []
        for r in range(plan.requests_per_window):
            part = batch.slice(r * plan.rows_per_request, plan.rows_per_request)
            request_id = f"w{index:03d}-r{r:03d}"
            body = {"id": request_id, "inputs": [
                _tensor(f, part.column(f).to_numpy(zero_copy_only=False))
                for f in [*synthetic.FEATURES, synthetic.PROTECTED]
            ]}
            resp = self.client.post(f"/v2/models/{MODEL}/infer", json=body)
            resp.raise_for_status()
            doc = resp.json()
            preds = next(o for o in doc["outputs"] if o["name"] == "predictions")["data"]
            self.served += len(preds)
            version = doc["model_version"]
            self.versions[version] = self.versions.get(version, 0) + len(preds)
            # Labels name the id the appliance logged the request under, which it returns.
            logged_as = doc["parameters"]["request_id"]
            self.first_request_id = self.first_request_id or logged_as
            self.truth[index].append((logged_as, part.column(synthetic.LABEL).to_pylist()))
            if r == plan.requests_per_window // 2 - 1:
                midway()
            time.sleep(max(0.0, start + (r + 1) * pace - time.monotonic()))
        self.sent_at[index] = wall

    def outcomes(self, index: int) -> None:
        """The loans of window `index` resolve: post their labels."""
        for request_id, labels in self.truth.pop(index, []):
            self.client.post(f"/v2/models/{MODEL}/feedback",
                             json={"request_id": request_id, "labels": labels}
                             ).raise_for_status()

    def close(self) -> None:
        self.client.close()


def _train_first(cfg: Config, ops: User, plan: DemoPlan):
    path = cfg.home / "incoming" / "credit-applications.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(synthetic.generate(plan.train_rows, seed=plan.seed), path)
    with session_scope(cfg.db_url) as session:
        ds = datasets.add_file(session, ArtifactStore(cfg.artifacts), path,
                               "credit-applications", actor=ops.name)
    spec = TrainSpec(model=MODEL, dataset=f"{ds.name}:{ds.version}", label=synthetic.LABEL,
                     categorical=list(synthetic.CATEGORICAL), seed=plan.seed)
    return training.train(cfg, ops, spec)


def _start_monitor(cfg: Config, token: str, ray_address: str) -> subprocess.Popen:
    env = {**os.environ, "APPLIANCE_HOME": str(cfg.home), "APPLIANCE_DB_URL": cfg.db_url,
           "APPLIANCE_ARTIFACTS": str(cfg.artifacts), "APPLIANCE_SERVE_PORT": str(cfg.serve_port),
           "RAY_ADDRESS": ray_address, "APPLIANCE_TOKEN": token}
    env.pop("APPLIANCE_CONFIG", None)
    log = open(cfg.home / "monitor.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "monitor", "--interval", "0.5"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _approve_requests(cfg: Config, risk: User) -> list[int]:
    """The risk officer approves what the monitor asked for (after reading gate and canary)."""
    done = []
    with session_scope(cfg.db_url) as session:
        pending = session.exec(select(Approval).where(
            Approval.status == ApprovalStatus.pending.value,
            Approval.requested_by == SERVICE_ACCOUNT)).all()
        for approval in pending:
            canary = (approval.gate.get("canary") or {})
            approvals.approve(session, risk, approval.id,
                              comment=f"demo: gate passed; canary {canary.get('status')}")
            done.append(approval.id)
    return done


class _News:
    """What the monitor did since the last look, in words (the world reads the store)."""

    def __init__(self) -> None:
        self.alerts = 0
        self.state: str | None = None

    def read(self, cfg: Config) -> list[str]:
        out = []
        with session_scope(cfg.db_url) as session:
            for alert in session.exec(select(Alert).where(Alert.id > self.alerts)
                                      .order_by(Alert.id)).all():
                window = session.get(PredictionWindow, alert.window_id) \
                    if alert.window_id else None
                where = f" for window {window.index}" if window else ""
                out.append(f"monitor: {alert.kind} alert{where} to {alert.owner} "
                           f"({alert.team})")
                self.alerts = alert.id
            request = session.exec(select(RetrainRequest).order_by(
                col(RetrainRequest.id).desc())).first()
        if request is not None and request.state != self.state:
            self.state = request.state
            out.append(f"monitor: retrain #{request.id} {request.state.replace('_', ' ')}")
        return out


def _state(cfg: Config) -> RetrainRequest | None:
    with session_scope(cfg.db_url) as session:
        return session.exec(select(RetrainRequest).order_by(
            col(RetrainRequest.id).desc())).first()


def _wait_for_monitor(cfg: Config, windows: int, monitor: subprocess.Popen,
                      timeout_s: float = 60.0) -> None:
    """Until the monitor has closed every window and merged every label the world sent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and monitor.poll() is None:
        with session_scope(cfg.db_url) as session:
            rows = session.exec(select(PredictionWindow).where(
                PredictionWindow.deployment == MODEL)).all()
            unapplied = session.exec(select(func.count()).select_from(FeedbackBatch).where(
                col(FeedbackBatch.status).in_(["new", "partial"]))).one()
        if len(rows) >= windows and all(w.labelled_rows >= w.rows for w in rows) \
                and not unapplied:
            return
        time.sleep(0.5)


def run_demo(
    cfg: Config, plan: DemoPlan | None = None,
    step: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Play the world against a fresh appliance at `cfg` and return the summary document.

    Args:
        cfg: an embedded configuration, normally from `demo_config`.
        plan: the world (default `DemoPlan()`).
        step: called with a short description as each step starts (progress display).
    """
    # The demo's audit events are signed with its own home's key and checkpointed there, as
    # its monitor process (APPLIANCE_HOME = cfg.home) and `appliance audit verify` expect.
    with audit.configured(cfg):
        return _run_demo(cfg, plan, step)


def _run_demo(cfg: Config, plan: DemoPlan | None, step: Callable[[str], None]) -> dict[str, Any]:
    # Deferred: importing the control plane must not import Ray. `cluster` first: it sets
    # Ray's auth mode, which Ray reads when it is first imported.
    import cluster.runtime  # noqa: I001
    import ray

    plan = plan or DemoPlan()
    started = time.monotonic()
    migrate(cfg.db_url)
    step("creating users: ops (operator), risk (approver), app, and the monitor's account")
    with session_scope(cfg.db_url) as session:
        create_user(session, "admin", "admin", actor="admin", team="platform")
        ops = create_user(session, "ops", "operator", actor="admin", team="credit-risk")
        risk = create_user(session, "risk", "approver", actor="admin", team="model-risk")
        create_user(session, "app", "viewer", actor="admin", team="lending-app")
        create_user(session, SERVICE_ACCOUNT, "operator", actor="admin", team="platform")
        # The lending app calls the model and reports outcomes: labels need the feedback scope.
        app_token = issue_token(session, "app", "lending-app", actor="admin",
                                scopes=["infer", "feedback"])
        monitor_token = issue_token(session, SERVICE_ACCOUNT, "monitor", actor="admin")
    step("starting Ray")
    cluster.runtime.ensure_ray(cfg)
    step("training credit v1 on Ray Train")
    v1 = _train_first(cfg, ops, plan)
    step("gating v1; ops requests its promotion, risk approves")
    approval, _ = promotion.request(cfg, ops, f"{MODEL}:{v1.version.version}", "champion")
    with session_scope(cfg.db_url) as session:
        approvals.approve(session, risk, approval.id, comment="demo: first champion")
        models.update_model(session, ops, MODEL,
                            runbook_url="https://wiki.example/runbooks/credit-scoring")
        set_policy(session, ops, MODEL, {"window_rows": plan.window_rows, **plan.policy})
    step("deploying credit@champion on Ray Serve")
    dep = deployment.deploy(cfg, ops, MODEL)
    step("starting `appliance monitor` as its own process")
    monitor = _start_monitor(cfg, monitor_token, ray.get_runtime_context().gcs_address)
    app = _App(dep.url, app_token, plan)
    promoted_after: int | None = None
    sent = 0
    news = _News()
    try:
        for index in range(1, plan.max_windows + 1):
            state = _state(cfg)
            step(f"window {index}: traffic at drift {plan.strength(index):.2f}"
                 + (f"; retrain #{state.id} {state.state}" if state else ""))
            # The loans of window k resolve while window k + label_delay is being served.
            app.window(index, midway=lambda k=index - plan.label_delay: app.outcomes(k))
            sent = index
            for line in news.read(cfg):
                step(line)
            for approval_id in _approve_requests(cfg, risk):
                step(f"risk approves promotion request #{approval_id}")
            if monitor.poll() is not None:
                raise RuntimeError(f"the monitor exited with {monitor.returncode}; see "
                                   f"{cfg.home / 'monitor.log'}")
            state = _state(cfg)
            if promoted_after is None and state is not None and state.state == "promoted":
                promoted_after = index
            if promoted_after is not None and index >= promoted_after + plan.recovery_windows:
                break
        step("the last loans resolve; the monitor catches up")
        for index in range(max(1, sent - plan.label_delay + 1), sent + 1):
            app.outcomes(index)
        _wait_for_monitor(cfg, sent, monitor)
    finally:
        app.close()
        _stop(monitor)
    return _summary(cfg, plan, app, v1, promoted_after, dep.url,
                    round(time.monotonic() - started, 1))


def _phase(plan: DemoPlan, window: PredictionWindow, versions: dict[int, int],
           champion_v1: int) -> str:
    strength = plan.strength(window.index)
    only = set(versions)
    if strength == 0.0:
        return "clean"
    if strength < 1.0:
        return "ramp"
    if only == {champion_v1}:
        return "drifted"
    if champion_v1 not in only and len(only) == 1:
        return "recovered"
    return "canary"


class DemoSummaryPublic(BaseModel):
    """`appliance demo --json`: what happened to the world the demo played, read back from
    the store (the nested parts are the demo's own report, not a product record)."""

    home: str
    versions: list[dict[str, Any]]
    champion: int
    promotions: list[dict[str, Any]]
    drift_detected_window: int | None
    first_drifted_window: int
    ramp_reaches_0_3_window: int
    windows_to_detect: int | None
    alerts: list[dict[str, Any]]
    accuracy_alert: dict[str, Any] | None
    windows: list[dict[str, Any]]
    accuracy_before_drift: float | None
    accuracy_during_drift: float | None
    accuracy_after_recovery: float | None
    retrain_dataset: dict[str, Any] | None
    retrain: dict[str, Any] | None
    canary: dict[str, Any] | None
    promoted_after_window: int | None
    seconds_to_recover: float | None
    served: int
    logged: int
    served_by_version: dict[str, int]
    fairness: dict[str, Any]
    first_request_id: str | None
    audit: dict[str, Any]
    endpoint: str
    seconds: float


def _summary(cfg: Config, plan: DemoPlan, app: _App, v1, promoted_after: int | None,
             url: str, seconds: float) -> dict[str, Any]:
    with session_scope(cfg.db_url) as session:
        number = {mv.id: mv.version for mv in session.exec(select(ModelVersion)).all()}
        windows = session.exec(select(PredictionWindow).where(
            PredictionWindow.deployment == MODEL).order_by(PredictionWindow.index)).all()
        stats = session.exec(select(WindowVersion)).all()
        by_window: dict[int, list[WindowVersion]] = {}
        for s in stats:
            by_window.setdefault(s.window_id, []).append(s)
        alert_rows = session.exec(select(Alert).order_by(Alert.id)).all()
        window_index = {w.id: w.index for w in windows}
        request = session.exec(select(RetrainRequest).order_by(RetrainRequest.id)).first()
        dataset = session.get(Dataset, request.dataset_id) if request and request.dataset_id \
            else None
        approvals_rows = session.exec(select(Approval).order_by(Approval.id)).all()
        champion = models.resolve(session, f"{MODEL}@champion").version
        # Intact and checkpointed: the chain `appliance audit verify` will check.
        chain = audit.health(session, cfg)
        pending = windows_mod.pending_rows(session, cfg.predictions_dir, MODEL)
        versions = [{"version": mv.version, "run": mv.run_id, "metrics": mv.metrics,
                     "created_by": mv.created_by} for mv in session.exec(
            select(ModelVersion).order_by(ModelVersion.version)).all()]
    summaries = []
    for w in windows:
        rows = [s for s in by_window.get(w.id, []) if not s.shadow]
        served = {number[s.version_id]: s.rows for s in rows}
        main = max(rows, key=lambda s: s.rows) if rows else None
        summaries.append({
            "window": w.index, "strength": plan.strength(w.index),
            "phase": _phase(plan, w, served, v1.version.version), "rows": w.rows,
            "served_by": served, "drift": main.drift_status if main else None,
            "drifted_share": main.drifted_share if main else None,
            "accuracy": w.accuracy, "labelled_rows": w.labelled_rows,
            "estimated_accuracy": (main.estimated or {}).get("accuracy") if main else None,
            "disparate_impact_ratio": ((main.fairness or {}).get("disparate_impact_ratio")
                                       if main else None),
            "alerts": [a.rule for a in alert_rows if window_index.get(a.window_id) == w.index],
        })

    def pooled(phase: str) -> float | None:
        sel = [w for w in summaries if w["phase"] == phase and w["accuracy"] is not None]
        total = sum(w["labelled_rows"] for w in sel)
        return sum(w["accuracy"] * w["labelled_rows"] for w in sel) / total if total else None

    def raised_during(alert: Alert) -> int | None:
        began = [i for i, t in app.sent_at.items() if t <= alert.created_at.timestamp()]
        return max(began) if began else None

    ratios = [w["disparate_impact_ratio"] for w in summaries
              if w["disparate_impact_ratio"] is not None]
    drift_alerts = [a for a in alert_rows if a.kind == "drift"]
    accuracy_alerts = [a for a in alert_rows if a.kind == "accuracy"]
    detected = window_index.get(drift_alerts[0].window_id) if drift_alerts else None
    first_drifted = plan.clean_windows + 1
    at_03 = next(i for i in range(1, plan.max_windows + 2) if plan.strength(i) >= 0.3)
    verdict = (request.canary or {}).get("verdict") if request else None
    recover = None
    if request is not None and request.state == "promoted" and drift_alerts:
        recover = round((request.finished_at - drift_alerts[0].created_at).total_seconds(), 1)
    return {
        "home": str(cfg.home),
        "versions": versions,
        "champion": champion,
        "promotions": [{"approval": a.id, "version": number[a.version_id],
                        "requested_by": a.requested_by, "approved_by": a.decided_by,
                        "status": a.status, "gate": {k: a.gate.get(k) for k in ("passed",)},
                        "canary": (a.gate.get("canary") or {}).get("status")}
                       for a in approvals_rows],
        "drift_detected_window": detected,
        "first_drifted_window": first_drifted,
        "ramp_reaches_0_3_window": at_03,
        "windows_to_detect": detected - first_drifted + 1 if detected else None,
        "alerts": [{"id": a.id, "kind": a.kind, "rule": a.rule, "severity": a.severity,
                    "window": window_index.get(a.window_id), "status": a.status,
                    "created_at": a.created_at, "resolved_by": a.resolved_by,
                    "message": a.message} for a in alert_rows],
        "accuracy_alert": ({"window": window_index.get(accuracy_alerts[0].window_id),
                            "raised_during_window": raised_during(accuracy_alerts[0]),
                            "created_at": accuracy_alerts[0].created_at}
                           if accuracy_alerts else None),
        "windows": summaries,
        "accuracy_before_drift": pooled("clean"),
        "accuracy_during_drift": pooled("drifted"),
        "accuracy_after_recovery": pooled("recovered"),
        "retrain_dataset": ({"dataset": f"{dataset.name}:{dataset.version}",
                             "rows": dataset.rows, "source": dataset.source,
                             "windows": dataset.lineage.get("windows"),
                             "feedback_batches": len(dataset.lineage.get("feedback_batches", [])),
                             "production_rows": dataset.lineage.get("production_rows"),
                             "previous": dataset.lineage.get("previous")}
                            if dataset else None),
        "retrain": ({"request": request.id, "state": request.state,
                     "trigger": request.trigger, "since_window": request.since_window,
                     "outcome": request.outcome, "error": request.error}
                    if request else None),
        "canary": ({"mode": request.canary.get("mode"), "share": request.canary.get("share"),
                    "verdict": verdict.get("status") if verdict else None,
                    "reason": verdict.get("reason") if verdict else None,
                    "windows": verdict.get("windows") if verdict else None}
                   if request and request.canary else None),
        "promoted_after_window": promoted_after,
        "seconds_to_recover": recover,
        "served": app.served,
        "logged": int(sum(w.rows for w in windows) + pending),
        "served_by_version": app.versions,
        "fairness": {"attribute": plan.policy.get("protected_attribute"), "windows": len(ratios),
                     "min_disparate_impact_ratio": min(ratios) if ratios else None,
                     "windows_below_four_fifths": sum(r < 0.8 for r in ratios)},
        "first_request_id": app.first_request_id,
        "audit": {"events": chain.events, "verified": chain.ok,
                  "checkpoint_events": chain.checkpoint_events},
        "endpoint": f"{url}/v2/models/{MODEL}/infer",
        "seconds": seconds,
    }
