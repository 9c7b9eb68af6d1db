"""The whole loop with real Ray (Train and Serve), a real SQLite store and real HTTP requests."""

from __future__ import annotations

import json

import pytest
import tritonclient.http as triton
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.demo import DemoPlan, demo_config, run_demo, step_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loop(ray_session, tmp_path_factory):
    from ray import serve

    serve.shutdown()
    cfg = demo_config(tmp_path_factory.mktemp("loop"))
    plan = DemoPlan(train_rows=12_000, clean_windows=2, recovery_windows=2,
                    requests_per_window=8, rows_per_request=250)
    steps: list[str] = []
    summary = run_demo(cfg, plan, step=steps.append)
    # The CLI's progress bar is sized by step_count: it must match what the loop reports.
    assert len(steps) == step_count(plan), steps
    yield cfg, summary
    serve.shutdown()


def test_drift_is_caught_in_the_first_drifted_window(loop):
    _, s = loop
    assert s["drift_detected_window"] == s["first_drifted_window"] == 3
    clean = [w for w in s["windows"] if w["phase"] == "clean"]
    assert not any(w["dataset_drifted"] for w in clean)
    kinds = {a["kind"] for a in s["alerts"] if a["window"] == 3}
    assert "drift" in kinds


def test_retrained_champion_recovers_accuracy(loop):
    _, s = loop
    assert s["champion"] == 2
    assert [v["version"] for v in s["versions"]] == [1, 2]
    before, during, after = (s["accuracy_before_drift"], s["accuracy_during_drift"],
                             s["accuracy_after_recovery"])
    assert during < before - 0.10
    assert abs(after - before) <= 0.03
    assert s["served_by_version"].keys() == {"1", "2"}


def test_every_served_prediction_is_logged_and_audited(loop):
    _, s = loop
    assert s["served"] == s["logged"] == 5 * 8 * 250
    assert s["audit"]["verified"] and s["audit"]["events"] > 20
    assert [p["requested_by"] for p in s["promotions"]] == ["ops", "ops"]
    assert [p["approved_by"] for p in s["promotions"]] == ["risk", "risk"]


def test_lineage_and_audit_from_the_cli(loop, monkeypatch):
    cfg, _ = loop
    monkeypatch.setenv("APPLIANCE_HOME", str(cfg.home))
    monkeypatch.delenv("APPLIANCE_DB_URL", raising=False)
    monkeypatch.delenv("APPLIANCE_ARTIFACTS", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["lineage", "credit@champion", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["version"] == 2 and doc["aliases"] == ["champion"]
    assert doc["dataset"]["name"] == "credit-applications" and doc["dataset"]["version"] == 2
    assert doc["run"]["seed"] == 8 and doc["code_version"]
    assert {"epochs", "lr", "hidden", "layers", "batch_size"} <= doc["run"]["params"].keys()
    (approval,) = [a for a in doc["approvals"] if a["status"] == "approved"]
    assert (approval["requested_by"], approval["approved_by"]) == ("ops", "risk")
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

    cfg, _ = loop
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
