"""The world `appliance.demo` plays, in its own parts and on small sizes: the stream's drift
ramp, the requests the lending app builds, the risk officer who approves only what the
monitor asks for, the news it reads, how it starts and stops the monitor process, and the
summary it reads back from the store, here over three windows of the tests' own world
(`loop_world`) closed and judged by the real monitor pass.

The whole demo (Ray Train and Serve, real HTTP, `appliance monitor` closing the loop):
tests/e2e/test_demo.py.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time

import governance_world as gw
import loop_world as lw
import numpy as np
import pytest
from sqlmodel import func, select

from appliance import demo
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, get_user, issue_token
from appliance.monitor import service
from appliance.monitor.policy_store import set_policy
from appliance.monitor.rules import AlertRule
from appliance.pipelines.training import TrainOutcome
from appliance.registry import models
from appliance.store import dispose_all, session_scope
from appliance.store.models import (
    Alert,
    Approval,
    ModelVersion,
    PredictionWindow,
    RetrainRequest,
    Run,
)

PASSED = approvals.gate({"accuracy": 0.9, "auc": 0.9})
# One clean window, one at half strength, then the drifted stream.
PLAN = demo.DemoPlan(window_rows=100, rows_per_request=50, clean_windows=1, ramp=(0.5,))
# The world's windows begin four minutes apart; the monitor judges them at T0 + 5 min (drift)
# and, once the late labels are in, at T0 + 10 min (accuracy).
BEGAN = {i: lw.T0 + dt.timedelta(minutes=4 * (i - 1)) for i in (1, 2, 3)}
RULES = (AlertRule(name="drift", metric="drifted_share", op=">=", threshold=0.5),
         AlertRule(name="accuracy", metric="accuracy", drop=0.05, min_rows=50,
                   severity="critical"))


@pytest.mark.parametrize(("plan", "strengths"), [
    (demo.DemoPlan(), [0.0, 0.0, 0.0, 0.3, 0.65, 1.0, 1.0]),
    (PLAN, [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
    (demo.DemoPlan(clean_windows=0, ramp=()), [1.0] * 7),
    (demo.DemoPlan(clean_windows=2, ramp=(0.1, 0.2, 0.4)), [0.0, 0.0, 0.1, 0.2, 0.4, 1.0, 1.0]),
])
def test_the_stream_drifts_on_the_plan_s_ramp(plan, strengths):
    assert [plan.strength(w) for w in range(1, 8)] == strengths


def test_a_window_is_sent_as_whole_requests():
    assert demo.DemoPlan().requests_per_window == 10
    assert PLAN.requests_per_window == 2


def test_the_demo_s_appliance_lives_in_its_home(tmp_path):
    cfg = demo.demo_config(tmp_path, port=18123)
    assert cfg.home == tmp_path and cfg.serve_port == 18123
    assert cfg.db_url == f"sqlite:///{tmp_path / 'appliance.db'}"
    assert cfg.artifacts == tmp_path / "artifacts"
    # Logs published fast for the story's fast time, with the protected attribute beside them.
    assert cfg.serving.log_flush_s == 0.05 and cfg.serving.log_columns == ("group",)
    # Without a port, a free one of its own.
    assert demo.demo_config(tmp_path).serve_port > 0


def test_the_app_sends_numbers_as_fp64_and_categories_as_bytes():
    assert demo._tensor("income", np.array([1, 2], dtype=np.int64)) == {
        "name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}
    for values in (np.array(["a", "b"], dtype=object), np.array(["a", "b"])):
        assert demo._tensor("employment", values) == {
            "name": "employment", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}


@pytest.mark.parametrize(("index", "served", "phase"), [
    (1, {1: 100}, "clean"),
    (1, {1: 90, 2: 10}, "clean"),
    (2, {1: 100}, "ramp"),
    (3, {1: 100}, "drifted"),
    (3, {1: 90, 2: 10}, "canary"),
    (3, {2: 100}, "recovered"),
    (3, {2: 60, 3: 40}, "canary"),
])
def test_each_window_s_phase(index, served, phase):
    window = PredictionWindow(deployment="credit", index=index, rows=100)
    assert demo._phase(PLAN, window, served, champion_v1=1) == phase


@pytest.fixture
def bank(sqlite_url, tmp_path):
    """The bank's people, the monitor's account, and credit v1 and v2."""
    gw.people(sqlite_url)
    v1 = gw.registered_version(sqlite_url, tmp_path)
    with session_scope(sqlite_url) as s:
        create_user(s, demo.SERVICE_ACCOUNT, "operator", actor="root")
        models.register_version(s, run=s.get(Run, v1.run_id), digest="e" * 64,
                                profile_digest=None, metrics={}, features=["x"],
                                categorical=[], label="y", actor="ops")
    return lw.config(tmp_path, db_url=sqlite_url)


def _user(cfg, name):
    with session_scope(cfg.db_url) as s:
        return get_user(s, name)


def test_the_risk_officer_approves_only_what_the_monitor_asked_for(bank):
    with session_scope(bank.db_url) as s:
        v1, v2 = (models.resolve(s, f"credit:{n}") for n in (1, 2))
        mine = approvals.request_promotion(s, get_user(s, demo.SERVICE_ACCOUNT), v2,
                                           "champion", PASSED,
                                           evidence={"canary": {"status": "passed"}})
        theirs = approvals.request_promotion(s, get_user(s, "ops"), v1, "challenger", PASSED)
        mine_id, theirs_id = mine.id, theirs.id
    risk = _user(bank, "risk")
    assert demo._approve_requests(bank, risk) == [mine_id]
    assert demo._approve_requests(bank, risk) == []
    with session_scope(bank.db_url) as s:
        done, left = s.get(Approval, mine_id), s.get(Approval, theirs_id)
        assert (done.status, done.decided_by) == ("approved", "risk")
        assert done.comment == "demo: gate passed; canary passed"
        assert left.status == "pending"
        assert models.resolve(s, "credit@champion").version == 2


def test_the_news_is_what_the_monitor_did_since_the_last_look(bank):
    news = demo._News()
    assert news.read(bank) == [] and demo._state(bank) is None
    with session_scope(bank.db_url) as s:
        s.add(Alert(kind="drift", rule="drift", model_name="credit", message="m", owner="ops",
                    team="credit"))
        s.add(RetrainRequest(model_name="credit", deployment="credit", active_key="credit",
                             trigger="drift", since_window=1, created_by="svc-monitor"))
    assert news.read(bank) == ["monitor: drift alert to ops (credit)",
                               "monitor: retrain #1 waiting for labels"]
    assert news.read(bank) == []
    with session_scope(bank.db_url) as s:
        request = s.get(RetrainRequest, 1)
        request.state = "awaiting_approval"
        s.add(request)
        s.add(Alert(kind="accuracy", rule="accuracy", model_name="credit", message="m",
                    owner="ops", team="credit"))
    assert news.read(bank) == ["monitor: accuracy alert to ops (credit)",
                               "monitor: retrain #1 awaiting approval"]
    assert demo._state(bank).state == "awaiting_approval"


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """Three windows of the world played as the demo plays them (clean, half drifted,
    drifted; 100 rows each, labels late) and one request still pending; closed and judged by
    the real monitor pass; the app's record of what it sent; and the summary read back."""
    home = tmp_path_factory.mktemp("played")
    with audit.configured(lw.config(home)):
        w = lw.make_world(home, model="credit", alert_rules=RULES, policy={
            "window_rows": 100, "window_seconds": None, "min_drift_rows": 50,
            "protected_attribute": "group"})
        with session_scope(w.cfg.db_url) as s:
            v1 = s.get(ModelVersion, w.version.id)
            approval = approvals.request_promotion(s, get_user(s, "ops"), v1, "champion",
                                                   PASSED)
            approvals.approve(s, get_user(s, "risk"), approval.id)
        truth = []
        for i in (1, 2, 3):
            strength = PLAN.strength(i)
            truth += w.serve(f"w{i}", requests=2, rows_per_request=50, seed=i, at=BEGAN[i],
                             shift=2.0 * strength, concept=strength)
        w.serve("late", requests=1, rows_per_request=30, seed=9,
                at=BEGAN[3] + dt.timedelta(minutes=3))
        service.run_once(w.cfg, now=lw.T0 + dt.timedelta(minutes=5), deliver=False)
        w.label(truth)
        service.run_once(w.cfg, now=lw.T0 + dt.timedelta(minutes=10), deliver=False)
        app = demo._App("http://127.0.0.1:9", "a-token", PLAN)
        app.served, app.versions, app.first_request_id = 330, {"1": 330}, "w1-r000"
        app.sent_at = {i: t.timestamp() for i, t in BEGAN.items()}
        outcome = TrainOutcome(version=v1, run_id=v1.run_id, metrics=v1.metrics, device="cpu",
                               seconds=1.0)
        summary = demo._summary(w.cfg, PLAN, app, outcome, None, "http://127.0.0.1:9", 12.5)
        app.close()
    yield w, summary
    dispose_all()


def test_the_summary_is_the_demo_s_public_record(played):
    _, s = played
    assert set(s) == set(demo.DemoSummaryPublic.model_fields)
    demo.DemoSummaryPublic.model_validate(s)
    assert (s["champion"], s["seconds"]) == (1, 12.5)
    assert [v["version"] for v in s["versions"]] == [1]
    (promotion,) = s["promotions"]
    assert {k: promotion[k] for k in ("version", "requested_by", "approved_by", "status")} == {
        "version": 1, "requested_by": "ops", "approved_by": "risk", "status": "approved"}
    assert promotion["gate"] == {"passed": True} and promotion["canary"] is None
    # The drift alert filed a retrain request that waits for labelled rows: no retraining
    # set, canary or promotion yet.
    assert s["retrain"] == {"request": 1, "state": "waiting_for_labels", "trigger": "drift",
                            "since_window": 2, "outcome": None, "error": None}
    for key in ("retrain_dataset", "canary", "promoted_after_window", "seconds_to_recover",
                "accuracy_after_recovery"):
        assert s[key] is None, key
    assert s["endpoint"] == "http://127.0.0.1:9/v2/models/credit/infer"
    assert s["audit"]["verified"] and s["audit"]["events"] > 0


def test_the_summary_reads_each_window_back(played):
    _, s = played
    assert [(w["window"], w["strength"], w["phase"], w["rows"], w["served_by"])
            for w in s["windows"]] == [(1, 0.0, "clean", 100, {1: 100}),
                                       (2, 0.5, "ramp", 100, {1: 100}),
                                       (3, 1.0, "drifted", 100, {1: 100})]
    assert [w["drift"] for w in s["windows"]] == ["ok", "drifted", "drifted"]
    assert all(w["labelled_rows"] == 100 for w in s["windows"])
    by_index = {w["window"]: w for w in s["windows"]}
    # Pooled over each phase's labelled windows: one window each here.
    assert s["accuracy_before_drift"] == by_index[1]["accuracy"]
    assert s["accuracy_during_drift"] == by_index[3]["accuracy"]
    assert s["accuracy_during_drift"] < s["accuracy_before_drift"] - 0.2
    # Logged: the closed windows' rows and the request still pending.
    assert (s["served"], s["logged"]) == (330, 330)
    assert s["fairness"]["attribute"] == "group" and s["fairness"]["windows"] >= 1


def test_the_summary_says_when_drift_was_caught(played):
    _, s = played
    assert (s["first_drifted_window"], s["ramp_reaches_0_3_window"]) == (2, 2)
    assert s["drift_detected_window"] == 2 and s["windows_to_detect"] == 1
    assert [(a["kind"], a["window"]) for a in s["alerts"]] == [("drift", 2), ("accuracy", 2)]
    assert s["windows"][1]["alerts"] == ["drift", "accuracy"]
    # The accuracy alert of window 2 came when its labels did, while window 3 was sent.
    assert s["accuracy_alert"]["window"] == 2
    assert s["accuracy_alert"]["raised_during_window"] == 3


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_world_waits_for_the_monitor_to_catch_up(played):
    w, _ = played
    alive = _sleeper()
    try:
        # Every window closed and labelled: no wait.
        started = time.monotonic()
        demo._wait_for_monitor(w.cfg, 3, alive, timeout_s=30)
        assert time.monotonic() - started < 5
        # A window the monitor has not closed: waits, up to the timeout.
        started = time.monotonic()
        demo._wait_for_monitor(w.cfg, 4, alive, timeout_s=0.6)
        assert time.monotonic() - started >= 0.6
    finally:
        demo._stop(alive)
    # A monitor that exited is not waited for.
    started = time.monotonic()
    demo._wait_for_monitor(w.cfg, 4, alive, timeout_s=30)
    assert time.monotonic() - started < 5


def test_stop_ends_a_process_with_sigterm_and_leaves_an_ended_one_alone():
    child = _sleeper()
    demo._stop(child)
    assert child.returncode == -signal.SIGTERM
    demo._stop(child)
    assert child.returncode == -signal.SIGTERM


def test_the_monitor_process_runs_on_the_demo_s_store(tmp_path):
    """`_start_monitor` starts `appliance monitor` on the demo's home, store and token: it
    closes a window of the demo's deployment, and stops cleanly on SIGTERM. Its Ray address
    leads nowhere: with no retrain request to act on, the service never joins Ray."""
    with audit.configured(lw.config(tmp_path)):
        w = lw.make_world(tmp_path, model="credit")
        with session_scope(w.cfg.db_url) as s:
            set_policy(s, get_user(s, "ops"), "credit", {"window_rows": 50})
            create_user(s, demo.SERVICE_ACCOUNT, "operator", actor="admin")
            token = issue_token(s, demo.SERVICE_ACCOUNT, "monitor", actor="admin")
        w.serve("w1", requests=1, rows_per_request=50, seed=1)
    monitor = demo._start_monitor(w.cfg, token, "127.0.0.1:9")
    try:
        deadline = time.monotonic() + 60
        closed = 0
        while not closed and monitor.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            with session_scope(w.cfg.db_url) as s:
                closed = s.exec(select(func.count()).select_from(PredictionWindow)).one()
    finally:
        demo._stop(monitor)
        dispose_all()
    log = (tmp_path / "monitor.log").read_text()
    assert closed == 1, log
    assert monitor.returncode == 0, log
