"""`appliance demo`: the world it plays, and what the monitor service makes of it.

Real Ray (Train and Serve), a real SQLite store, real HTTP, and `appliance monitor` as its own
process. The plan is the demo's own, only paced faster.
"""

from __future__ import annotations

import json

import pytest
import tritonclient.http as triton
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.demo import DemoPlan, DemoSummaryPublic, demo_config, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(ray_session, tmp_path_factory):
    from ray import serve

    serve.shutdown()
    cfg = demo_config(tmp_path_factory.mktemp("loop"))
    steps: list[str] = []
    summary = run_demo(cfg, DemoPlan(window_seconds=0.8), step=steps.append)
    yield cfg, summary, steps
    serve.shutdown()


def test_drift_is_caught_within_one_window_of_the_ramp_reaching_0_3(loop):
    _, s, _ = loop
    # What `appliance demo --json` prints: the whole summary, as its record.
    assert set(s) == set(DemoSummaryPublic.model_fields)
    DemoSummaryPublic.model_validate(s)
    assert s["first_drifted_window"] == 4 and s["ramp_reaches_0_3_window"] == 4
    assert s["drift_detected_window"] <= s["ramp_reaches_0_3_window"] + 1
    assert s["windows_to_detect"] == s["drift_detected_window"] - 3
    clean = [w for w in s["windows"] if w["phase"] == "clean"]
    assert clean and not any(w["drift"] == "drifted" for w in clean)


def test_late_labels_raise_the_accuracy_alert(loop):
    _, s, _ = loop
    alert = s["accuracy_alert"]
    # Labels of window k arrive during window k + 2: that is when its alert can be raised.
    assert alert is not None and alert["raised_during_window"] >= alert["window"] + 2


def test_the_challenger_learns_only_from_logged_labelled_production_rows(loop):
    _, s, _ = loop
    ds = s["retrain_dataset"]
    assert ds["previous"] is None and ds["production_rows"] == ds["rows"]
    assert ds["source"] == f"retrain request #{s['retrain']['request']}"
    assert min(ds["windows"]) >= s["drift_detected_window"]
    assert [v["created_by"] for v in s["versions"]] == ["ops", "svc-monitor"]


def test_canary_then_promotion_recovers_accuracy(loop):
    _, s, _ = loop
    assert s["canary"]["mode"] == "split" and s["canary"]["share"] == 0.1
    assert s["canary"]["verdict"] == "passed"
    assert s["retrain"]["state"] == "promoted" and s["champion"] == 2
    proposal = s["promotions"][-1]
    assert (proposal["requested_by"], proposal["approved_by"]) == ("svc-monitor", "risk")
    assert proposal["canary"] == "passed"
    before, during, after = (s["accuracy_before_drift"], s["accuracy_during_drift"],
                             s["accuracy_after_recovery"])
    assert during < before - 0.2
    assert abs(after - before) <= 0.02
    assert s["seconds_to_recover"] > 0
    for w in s["windows"]:
        assert "estimated_accuracy" in w and "accuracy" in w


def test_every_served_prediction_is_logged_and_audited(loop):
    _, s, _ = loop
    assert s["served"] == s["logged"] > 0
    assert s["served_by_version"].keys() == {"1", "2"}
    assert s["audit"]["verified"] and s["audit"]["events"] > 30


def test_lineage_and_audit_from_the_cli(loop, monkeypatch):
    cfg, s, _ = loop
    monkeypatch.setenv("APPLIANCE_HOME", str(cfg.home))
    monkeypatch.delenv("APPLIANCE_DB_URL", raising=False)
    monkeypatch.delenv("APPLIANCE_ARTIFACTS", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["lineage", "credit@champion", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["version"] == 2 and doc["aliases"] == ["champion"]
    assert doc["dataset"]["name"] == "credit-retrain"
    assert doc["dataset"]["lineage"]["windows"] == s["retrain_dataset"]["windows"]
    assert doc["code_version"] and doc["run"]["requested_by"] == "svc-monitor"
    (approval,) = [a for a in doc["approvals"] if a["status"] == "approved"]
    assert (approval["requested_by"], approval["approved_by"]) == ("svc-monitor", "risk")
    assert approval["gate"]["canary"]["status"] == "passed"
    res = runner.invoke(app, ["audit", "verify", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"]


def test_tritonclient_reaches_the_champion(loop):
    import numpy as np
    from sqlmodel import select

    from appliance.data import synthetic
    from appliance.governance.users import issue_token
    from appliance.pipelines import deployment
    from appliance.store import session_scope
    from appliance.store.models import User

    cfg, _, _ = loop
    # A token issued after deployment is honoured once the deployment is refreshed.
    with session_scope(cfg.db_url) as session:
        token = issue_token(session, "app", "triton", actor="admin")
        ops = session.exec(select(User).where(User.name == "ops")).one()
    deployment.deploy(cfg, ops, "credit")
    table = synthetic.generate(16, seed=99, covariate=1.0, concept=1.0)
    inputs = []
    for f in synthetic.FEATURES:
        values = table.column(f).to_numpy(zero_copy_only=False)
        if f in synthetic.CATEGORICAL:
            arr = np.array([v.encode() for v in values], dtype=np.object_)
            t = triton.InferInput(f, [16], "BYTES")
        else:
            arr = values.astype(np.float64)
            t = triton.InferInput(f, [16], "FP64")
        t.set_data_from_numpy(arr, binary_data=False)
        inputs.append(t)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{cfg.serve_port}")
    result = client.infer("credit", inputs, headers={"Authorization": f"Bearer {token}"})
    assert result.get_response()["model_version"] == "2"
    assert result.as_numpy("predictions").shape == (16,)
