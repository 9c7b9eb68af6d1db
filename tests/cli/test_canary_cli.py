"""`appliance canary status MODEL` (appliance/cli/canary.py): the versions serving a model and
where its latest retrain request stands, with the retraining set's contract findings, on a
store built through the library. The serving ledger's rows and the retrain requests are
written as `deploy` and the monitor write them: serving and retraining need Ray, which these
tests leave out."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from governed_home import Home, document, refused, table

from appliance.cli import canary as cli
from appliance.errors import InvalidInput, NotFound
from appliance.registry import datasets, models
from appliance.registry.contract import Purpose, Reference
from appliance.store.models import Dataset, Deployment, RetrainRequest

SINCE = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Model "credit": version 1 primary, version 2 its split canary (10%) for retrain request
    "canary"; "scorer": version 1 primary, its retrain request held because the retraining
    set's column x changed type; "toy": registered, never served."""
    home = Home(tmp_path_factory.mktemp("canary-cli"), _sqlite_template)
    with home.session() as s:
        _, v1 = home.register(s, "credit", seed=1)
        _, v2 = home.register(s, "credit", seed=2)
        run, scorer = home.register(s, "scorer", seed=3)
        models.ensure_model(s, "toy", owner="ops", team="credit")
        baseline = s.get(Dataset, run.dataset_id)
        retraining = datasets.add_table(
            s, home.store, pa.table({"x": ["a", "b", "c"], "y": [0, 1, 0]}), "scorer-retrain",
            actor="monitor", purpose=Purpose.retraining,
            against=Reference(f"{baseline.name}:{baseline.version}", baseline.profile))
        canary = RetrainRequest(
            model_name="credit", deployment="credit", active_key="credit", trigger="drift",
            since_window=4, state="canary", created_by="monitor", champion_version_id=v1.id,
            version_id=v2.id, run_id="r123", gate={"passed": True},
            canary={"mode": "split", "share": 0.1, "verdict": {"status": "pending"}},
            created_at=SINCE)
        held = RetrainRequest(
            model_name="scorer", deployment="scorer", active_key="scorer", trigger="accuracy",
            since_window=2, state="waiting_for_data_accept", created_by="monitor",
            champion_version_id=scorer.id, dataset_id=retraining.id, created_at=SINCE)
        s.add_all([canary, held])
        s.flush()
        s.add_all([
            Deployment(name="credit", model_name="credit", version_id=v1.id, url="http://a",
                       created_by="ops", started_at=SINCE),
            Deployment(name="credit", model_name="credit", version_id=v2.id, url="http://a",
                       role="canary", mode="split", share=0.1, retrain_id=canary.id,
                       created_by="monitor", started_at=SINCE),
            Deployment(name="scorer", model_name="scorer", version_id=scorer.id, url="http://b",
                       created_by="ops", started_at=SINCE)])
        home.ids.update(credit=canary.id, scorer=held.id)
    return home


def test_status_shows_the_champion_its_canary_and_the_retrain_request(home):
    res = home.invoke("canary", "status", "credit", who="val")
    rows = table(res)
    since = SINCE.isoformat(timespec="seconds")
    assert rows[:3] == [["NAME", "VERSION", "ROLE", "MODE", "SHARE", "SINCE"],
                        ["credit", "1", "primary", "<none>", "<none>", since],
                        ["credit", "2", "canary", "split", "0.1", since]]
    assert rows[3] == ["RETRAIN", "STATE", "TRIGGER", "DATASET", "CONTRACT", "CHAMPION",
                       "CHALLENGER", "GATE", "CANARY", "APPROVAL", "AGE"]
    assert rows[4] == [f"#{home.ids['credit']}", "canary", "drift", "<none>", "<none>",
                       "1", "2", "True", "pending", "<none>", since]
    assert len(rows) == 5  # no retraining set, so no findings
    doc = document(home.invoke("canary", "status", "credit", "--json"), cli.status)
    assert [(s["version"], s["role"], s["mode"], s["share"]) for s in doc["serving"]] == [
        (1, "primary", None, None), (2, "canary", "split", 0.1)]
    assert doc["canary"] == doc["serving"][1]
    retrain = doc["retrain"]
    assert (retrain["id"], retrain["state"], retrain["champion_version"],
            retrain["challenger_version"], retrain["run"]) == (
        home.ids["credit"], "canary", 1, 2, "r123")
    assert retrain["canary"]["verdict"] == {"status": "pending"}


def test_status_lists_the_findings_that_hold_a_retrain_request(home):
    rows = table(home.invoke("canary", "status", "scorer"))
    assert rows[1][:3] == ["scorer", "1", "primary"]
    assert rows[2][0] == "RETRAIN" and len(rows) == 6
    assert rows[3][:5] == [f"#{home.ids['scorer']}", "waiting_for_data_accept",
                           "accuracy", "scorer-retrain:1", "failed"]
    assert rows[4] == ["COLUMN", "CHECK", "SEVERITY", "MESSAGE"]
    assert rows[5] == ["x", "type", "block", "column", "'x':", "type", "categorical,", "was",
                       "numeric"]
    doc = document(home.invoke("canary", "status", "scorer", "--json"), cli.status)
    assert doc["canary"] is None
    contract = doc["retrain"]["data_contract"]
    assert doc["retrain"]["data_contract_status"] == "failed" and not contract["passed"]
    assert [(v["column"], v["check"], v["severity"]) for v in contract["violations"]] == [
        ("x", "type", "block")]


def test_a_model_never_served_has_no_rows(home):
    rows = table(home.invoke("canary", "status", "toy"))
    assert rows == [["NAME", "VERSION", "ROLE", "MODE", "SHARE", "SINCE"]]
    doc = document(home.invoke("canary", "status", "toy", "--json"), cli.status)
    assert doc == {"model": "toy", "serving": [], "canary": None, "retrain": None}
    res = home.invoke("canary", "status", "credit", "--json=model,canary")
    assert res.exit_code == 0 and res.stdout.split()[:4] == ["{", '"model":', '"credit",',
                                                            '"canary":']


@pytest.mark.parametrize(("model", "kind", "needle"), [
    ("ghost", NotFound, "no model named 'ghost'; list them with `appliance models list`"),
    ("../x", InvalidInput, "model name '../x'"),
])
def test_an_unknown_or_impossible_model_is_refused(home, model, kind, needle):
    refused(home.invoke("canary", "status", model), kind, needle)
