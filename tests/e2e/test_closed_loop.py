"""The monitor service closes the loop on its own, for a model and data of this test's own.

Real Ray (Train and Serve), a real SQLite store, real HTTP (httpx, a webhook receiver), and
`appliance monitor` as its own process, killed with SIGKILL mid-work and restarted. The test
only plays the world: an app sends traffic and, two windows later, the true labels; a person
approves. The world:

    x1, x2 ~ N(0, 1), segment in {a, b, c};  rule A: y = [x1 + 0.5 x2 + noise > 0]
    shifted: x2 ~ N(1, 1), segment mostly c;  rule B: y = [-x1 + 0.5 x2 + noise > 0]

Story: v1 learns rule A. The world shifts to B; the monitor alerts, retrains on logged,
labelled rows, and canaries the challenger, and then the world swings back to A: the
challenger regresses on live traffic, and the canary is aborted. The world shifts to B again,
for good: a second challenger passes its canary and is proposed for promotion; a person
approves; it takes all the traffic; and a rollback puts v1 back in one step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pyarrow as pa
import pytest
from sqlmodel import func, select
from typer.testing import CliRunner

from appliance.artifacts import ArtifactStore
from appliance.cli.main import app as cli
from appliance.config import Config
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, issue_token
from appliance.monitor.policy_store import set_policy
from appliance.pipelines import deployment, promotion, training
from appliance.pipelines.spec import TrainSpec
from appliance.ports import free_port
from appliance.registry import datasets, models
from appliance.serving import parse_serving
from appliance.store import migrate, session_scope
from appliance.store.models import (
    Alert,
    AlertDelivery,
    Approval,
    ApprovalStatus,
    Dataset,
    Deployment,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    Run,
)

pytestmark = pytest.mark.slow

MODEL = "churn"
WINDOW_ROWS, PER_REQUEST = 400, 40
POLICY = {
    "window_rows": WINDOW_ROWS, "min_drift_rows": 300, "triggers": ["drift", "accuracy"],
    "cooldown_seconds": 0, "min_labelled_rows": 1200, "max_rows": 1200, "holdout_share": 0.25,
    "canary_share": 0.3, "canary_min_rows": 300, "canary_max_windows": 12,
}
# The default rules, without the cooldown: the story raises the same alert twice in a minute.
RULES = """
[[alert_rules]]
name = "drift"
metric = "drifted_share"
op = ">="
threshold = 0.5
cooldown_seconds = 0

[[alert_rules]]
name = "accuracy"
metric = "accuracy"
drop = 0.08
min_rows = 150
severity = "critical"
cooldown_seconds = 0
"""


def draw(n: int, seed: int, world: str) -> pa.Table:
    rng = np.random.default_rng(seed)
    shifted = world == "B"
    x1 = rng.normal(0.0, 1.0, n)
    x2 = rng.normal(1.0 if shifted else 0.0, 1.0, n)
    segment = rng.choice(["a", "b", "c"], n, p=[0.1, 0.2, 0.7] if shifted else [0.4, 0.4, 0.2])
    sign = -1.0 if shifted else 1.0
    y = (sign * x1 + 0.5 * x2 + rng.normal(0.0, 0.4, n) > (0.5 if shifted else 0.0))
    return pa.table({"x1": x1, "x2": x2, "segment": segment, "churned": y.astype(np.int64)})


class Hooks:
    """A webhook receiver on loopback: each alert event should reach it once."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.events.append({"key": self.headers["Idempotency-Key"],
                                     **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Monitor:
    """`appliance monitor` as its own process, which the test may kill."""

    def __init__(self, cfg: Config, token: str) -> None:
        import ray

        self.cfg, self.killed_in = cfg, []
        self.env = {**os.environ, "APPLIANCE_HOME": str(cfg.home), "APPLIANCE_TOKEN": token,
                    "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
                    "APPLIANCE_SERVE_PORT": str(cfg.serve_port)}
        for key in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG"):
            self.env.pop(key, None)
        self.log = open(cfg.home / "monitor.log", "ab")  # noqa: SIM115
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "monitor", "--interval", "0.3"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill_and_restart(self, state: str) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.killed_in.append(state)
        self.start()

    def alive(self) -> None:
        assert self.process.poll() is None, (self.cfg.home / "monitor.log").read_text()[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class App:
    """The app: traffic from the world of the moment; labels two windows later."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60.0,
                                   headers={"Authorization": f"Bearer {token}"})
        self.window = 0
        self.served = 0
        self.versions: dict[str, int] = {}
        self.truth: dict[int, list[tuple[str, list[int]]]] = {}

    def send(self, world: str) -> None:
        self.window += 1
        k = self.window
        table = draw(WINDOW_ROWS, 1000 + k, world)
        self.truth[k] = []
        for r in range(WINDOW_ROWS // PER_REQUEST):
            part = table.slice(r * PER_REQUEST, PER_REQUEST)
            rid = f"w{k:03d}-r{r:02d}"
            body = {"id": rid, "inputs": [
                {"name": "x1", "shape": [PER_REQUEST], "datatype": "FP64",
                 "data": part.column("x1").to_pylist()},
                {"name": "x2", "shape": [PER_REQUEST], "datatype": "FP64",
                 "data": part.column("x2").to_pylist()},
                {"name": "segment", "shape": [PER_REQUEST], "datatype": "BYTES",
                 "data": part.column("segment").to_pylist()},
            ]}
            resp = self.client.post(f"/v2/models/{MODEL}/infer", json=body)
            assert resp.status_code == 200, resp.text  # never a dropped request
            version = resp.json()["model_version"]
            self.versions[version] = self.versions.get(version, 0) + PER_REQUEST
            self.served += PER_REQUEST
            # Labels name the id the appliance logged the request under (its own, unique).
            logged_as = resp.json()["parameters"]["request_id"]
            self.truth[k].append((logged_as, part.column("churned").to_pylist()))
            if r == WINDOW_ROWS // PER_REQUEST - 1:
                # With the last request of window k: window k - 1's rows are logged and
                # published by then (every 50 ms), as they would be hours apart in real time.
                self.outcomes(k - 2)
            time.sleep(0.02)

    def outcomes(self, k: int) -> None:
        for rid, labels in self.truth.pop(k, []):
            self.client.post(f"/v2/models/{MODEL}/feedback",
                             json={"request_id": rid, "labels": labels}).raise_for_status()


def _request(cfg: Config, rid: int | None = None) -> RetrainRequest | None:
    with session_scope(cfg.db_url) as session:
        query = select(RetrainRequest).order_by(RetrainRequest.id.desc())
        if rid is not None:
            query = query.where(RetrainRequest.id == rid)
        return session.exec(query).first()


def _run_until(app: App, monitor: Monitor, world: str, done, *, limit: int = 60,
               kill_at: set[str] = frozenset()) -> RetrainRequest | None:
    """Send windows of `world` until `done(latest request)`; SIGKILL the monitor (and start
    another) the first time the latest request is seen in each state of `kill_at`."""
    killed: set[str] = set()
    for _ in range(limit):
        app.send(world)
        monitor.alive()
        latest = _request(monitor.cfg)
        if latest is not None and latest.state in kill_at - killed:
            killed.add(latest.state)
            monitor.kill_and_restart(latest.state)
        if done(latest):
            return latest
    raise AssertionError(f"gave up after {limit} windows; latest request: {latest}")


FLUSH_S = 0.05


@pytest.fixture(scope="module")
def story(ray_session, tmp_path_factory):
    from ray import serve

    from cluster.serve import canary_info

    serve.shutdown()
    home = tmp_path_factory.mktemp("closed-loop")
    hooks = Hooks()
    # The story's time runs fast (a window every 0.7 s, its labels two windows later): the
    # replicas publish their logs every 50 ms, not every second, so that the monitor sees a
    # window's rows before the labels of an earlier one arrive, as it would in real time.
    (home / "appliance.toml").write_text(
        f'alert_webhook = "{hooks.url}"\n{RULES}\n[serving]\nlog_flush_s = {FLUSH_S}\n')
    cfg = Config(home=home, db_url=f"sqlite:///{home / 'appliance.db'}",
                 artifacts=home / "artifacts", serve_port=free_port(), alert_webhook=hooks.url,
                 serving=parse_serving({"log_flush_s": FLUSH_S}))
    # This process and the monitor's (APPLIANCE_HOME = home) sign one chain with one key.
    audit.configure(cfg)
    migrate(cfg.db_url)
    with session_scope(cfg.db_url) as session:
        create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor="admin", team="retention")
        risk = create_user(session, "risk", "approver", actor="admin")
        create_user(session, "svc", "operator", actor="admin")
        app_token = issue_token(session, "ops", "app", actor="admin")
        svc_token = issue_token(session, "svc", "monitor", actor="admin")
        ds = datasets.add_table(session, ArtifactStore(cfg.artifacts), draw(3000, 1, "A"),
                                "churn-history", actor="ops")
    spec = TrainSpec(model=MODEL, dataset=f"{ds.name}:{ds.version}", label="churned",
                     categorical=["segment"], seed=3, params={"epochs": 8, "hidden": 16})
    v1 = training.train(cfg, ops, spec)
    approval, _ = promotion.request(cfg, ops, f"{MODEL}:{v1.version.version}", "champion")
    with session_scope(cfg.db_url) as session:
        approvals.approve(session, risk, approval.id)
        set_policy(session, ops, MODEL, POLICY)
    dep = deployment.deploy(cfg, ops, MODEL)
    monitor = Monitor(cfg, svc_token)
    app = App(dep.url, app_token)
    facts: dict = {"cfg": cfg, "hooks": hooks, "app": app, "monitor": monitor, "risk": risk,
                   "ops": ops}
    try:
        for _ in range(3):
            app.send("A")
        # The world shifts; the monitor builds a retraining set and trains (killed once
        # mid-training)...
        _run_until(app, monitor, "B", lambda r: r is not None and r.state not in (
            "waiting_for_labels",), kill_at={"training"})
        # ...while the world swings back: the challenger, trained on the shift, regresses in
        # its canary.
        facts["first_canary"] = _run_until(app, monitor, "A", lambda r: r.state not in (
            "training", "gating", "deploying_canary"))
        facts["canary_seen"] = canary_info(cfg, MODEL)
        facts["first"] = _run_until(app, monitor, "A", lambda r: r.state not in (
            "canary", "requesting_promotion", "awaiting_approval"))
        facts["canary_after_abort"] = canary_info(cfg, MODEL)
        # The world shifts for good; a second challenger is canaried (the monitor is killed
        # once more, mid-canary) and proposed for promotion. Labels, a training, a canary
        # deploy and two monitor restarts take their own time, while the app sends a window
        # every 0.7 s or so: the limit only stops a loop that is stuck.
        facts["second"] = _run_until(
            app, monitor, "B", lambda r: r.id != facts["first"].id and r.state in (
                "awaiting_approval", "gate_failed", "failed", "canary_aborted"),
            kill_at={"deploying_canary", "canary"}, limit=120)
        with session_scope(cfg.db_url) as session:
            # A copy: approving changes the row.
            facts["pending"] = session.get(Approval, facts["second"].approval_id).model_copy()
            approvals.approve(session, risk, facts["second"].approval_id, comment="looks good")
        facts["promoted"] = _run_until(app, monitor, "B", lambda r: r.state == "promoted")
        for _ in range(3):
            app.send("B")
        for k in list(app.truth):
            app.outcomes(k)
        _caught_up(cfg, app)
        monitor.alive()
        yield facts
    finally:
        monitor.stop()
        app.client.close()
        hooks.close()
        serve.shutdown()
        audit.configure(None)


def test_a_regressing_canary_is_aborted_and_the_champion_serves_alone(story):
    first = story["first"]
    assert story["first_canary"].state == "canary"
    assert story["canary_seen"]["share"] == pytest.approx(0.3)
    assert first.state == "canary_aborted", first
    verdict = first.canary["verdict"]
    assert verdict["status"] == "regressed"
    assert verdict["challenger"]["value"] < verdict["champion"]["value"] - 0.02
    assert story["canary_after_abort"] is None
    with session_scope(story["cfg"].db_url) as session:
        ledger = session.exec(select(Deployment).where(Deployment.role == "canary")).all()
        notices = session.exec(select(Alert).where(Alert.kind == "retrain")).all()
    assert [d.status for d in ledger][0] == "aborted"
    assert any("canary regressed" in a.message for a in notices)


def test_the_monitor_alone_trains_canaries_and_proposes_the_challenger(story):
    cfg, second = story["cfg"], story["second"]
    assert second.state == "awaiting_approval"
    pending = story["pending"]
    assert pending.requested_by == "svc" and pending.status == ApprovalStatus.pending.value
    assert pending.gate["passed"] and pending.gate["canary"]["status"] == "passed"
    with session_scope(cfg.db_url) as session:
        challenger = session.get(ModelVersion, pending.version_id)
        run = session.get(Run, challenger.run_id)
        ds = session.get(Dataset, run.dataset_id)
    # Trained through the same pipeline as `appliance train`: the champion's spec and params,
    # on logged, labelled production rows only, with the newest rows held out.
    assert run.spec["split"] == "latest" and run.spec["label"] == "churned"
    assert run.params["epochs"] == 8 and run.params["hidden"] == 16
    assert ds.name == f"{MODEL}-retrain" and ds.lineage["previous"] is None
    assert ds.lineage["production_rows"] == ds.rows == POLICY["max_rows"]
    assert ds.lineage["windows"] and ds.lineage["feedback_batches"]


def test_promotion_moves_all_traffic_without_a_dropped_request(story):
    cfg, app = story["cfg"], story["app"]
    assert story["promoted"].state == "promoted"
    with session_scope(cfg.db_url) as session:
        champion = models.resolve(session, f"{MODEL}@champion")
        live = session.exec(select(Deployment).where(Deployment.status == "active")).all()
    assert champion.version == 3
    assert [(d.role, d.version_id) for d in live] == [("primary", champion.id)]
    # App.send asserted a 200 for every request, through both canaries and the promotion.
    assert app.versions.keys() >= {"1", "2", "3"}


def test_sigkill_and_restarts_lose_and_duplicate_nothing(story):
    cfg, app = story["cfg"], story["app"]
    # Killed mid-training, mid-canary, and wherever else a window found it.
    assert {"training", "canary"} <= set(story["monitor"].killed_in)
    with session_scope(cfg.db_url) as session:
        requests = session.exec(select(RetrainRequest).order_by(RetrainRequest.id)).all()
        runs = session.exec(select(Run).where(Run.model_name == MODEL)).all()
        versions = session.exec(select(ModelVersion)).all()
        proposals = session.exec(select(Approval).where(Approval.requested_by == "svc")).all()
        windows = session.exec(select(PredictionWindow).order_by(PredictionWindow.index)).all()
        alerts = session.exec(select(Alert).where(Alert.kind != "retrain")).all()
        sends = session.exec(select(func.count()).select_from(AlertDelivery).where(
            AlertDelivery.channel == "webhook", AlertDelivery.status == "delivered")).one()
        chain = audit.verify(session)
    assert [r.state for r in requests] == ["canary_aborted", "promoted"]
    # One run and one version per challenger, one promotion request: nothing twice.
    assert len(runs) == len(versions) == 3
    assert [p.version_id for p in proposals] == [versions[2].id]
    assert [w.index for w in windows] == list(range(1, len(windows) + 1))
    assert sum(w.rows for w in windows) == app.served - _pending(cfg)
    opened = [(a.rule, a.window_id) for a in alerts]
    assert len(opened) == len(set(opened))
    keys = [e["key"] for e in story["hooks"].events]
    assert len(keys) == len(set(keys)) == sends > 0
    assert chain.ok


def _caught_up(cfg: Config, app: App, timeout_s: float = 60.0) -> None:
    """Wait until the monitor has closed every full window and merged every label."""
    from appliance.store.models import FeedbackBatch

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope(cfg.db_url) as session:
            closed = session.exec(select(func.sum(PredictionWindow.rows))).one() or 0
            unapplied = session.exec(select(func.count()).select_from(FeedbackBatch).where(
                FeedbackBatch.status.in_(["new", "partial"]))).one()
        if closed == app.served and not unapplied:
            return
        time.sleep(0.3)
    raise AssertionError(f"the monitor did not catch up: {closed} of {app.served} rows closed, "
                         f"{unapplied} feedback batches unapplied")


def _pending(cfg: Config) -> int:
    from appliance.monitor.windows import pending_rows

    with session_scope(cfg.db_url) as session:
        return pending_rows(session, cfg.predictions_dir, MODEL)


def test_late_labels_raised_an_accuracy_alert_for_an_earlier_window(story):
    with session_scope(story["cfg"].db_url) as session:
        accuracy = session.exec(select(Alert).where(Alert.rule == "accuracy")
                                .order_by(Alert.id)).first()
        window = session.get(PredictionWindow, accuracy.window_id)
        newest_then = session.exec(select(func.max(PredictionWindow.index)).where(
            PredictionWindow.closed_at <= accuracy.created_at)).one()
    assert accuracy.owner == "ops" and accuracy.team == "retention"
    # Its window's labels arrived two windows later: it was raised after later windows closed.
    assert newest_then >= window.index + 1


def test_cli_shows_canary_status_and_rolls_back_in_one_step(story, monkeypatch):
    cfg = story["cfg"]
    monkeypatch.setenv("APPLIANCE_HOME", str(cfg.home))
    monkeypatch.delenv("APPLIANCE_DB_URL", raising=False)
    monkeypatch.delenv("APPLIANCE_ARTIFACTS", raising=False)
    monkeypatch.setenv("APPLIANCE_SERVE_PORT", str(cfg.serve_port))
    runner = CliRunner()
    res = runner.invoke(cli, ["canary", "status", MODEL, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["retrain"]["state"] == "promoted" and doc["canary"] is None
    assert [s["version"] for s in doc["serving"]] == [3]
    with session_scope(cfg.db_url) as session:
        token = issue_token(session, "risk", "cli", actor="admin")
    res = runner.invoke(cli, ["rollback", MODEL, "--json"], env={"APPLIANCE_TOKEN": token})
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout)["to_version"] == 1
    resp = story["app"].client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.1]},
        {"name": "x2", "shape": [1], "datatype": "FP64", "data": [0.2]},
        {"name": "segment", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
    assert resp.json()["model_version"] == "1"
    with session_scope(cfg.db_url) as session:
        assert models.resolve(session, f"{MODEL}@champion").version == 1
