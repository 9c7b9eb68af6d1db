"""`appliance models list|show|set` and `appliance lineage` (appliance/cli/models.py) on models
registered through the library: the tables people read, the `--json` records, the settings an
operator and an approver change, and the refusals (exit 2, one line naming what was wrong)."""

from __future__ import annotations

import pytest
from governed_home import Home, document, refused, table, usage_error

from appliance.cli import models as cli
from appliance.errors import InvalidInput, NotFound, PermissionDenied
from appliance.governance import approvals
from appliance.registry import models


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Model "credit": version 1 champion (requested by ops, approved by risk), version 2
    with no alias; model "empty" registered with no version."""
    home = Home(tmp_path_factory.mktemp("models-cli"), _sqlite_template)
    with home.session() as s:
        run, v1 = home.register(s, seed=1, params={"lr": 0.1})
        home.register(s, seed=2, accuracy=0.8)
        request = approvals.request_promotion(s, home.user(s, "ops"), v1, "champion",
                                              approvals.gate({"accuracy": 0.9, "auc": 0.9}))
        approvals.approve(s, home.user(s, "risk"), request.id, "fine")
        home.ids["run"] = run.id
        models.ensure_model(s, "empty", owner="ops", team="credit")
    return home


def test_list_shows_each_version_with_its_aliases(home):
    rows = table(home.invoke("models", "list"))
    assert rows[0] == ["NAME", "VERSION", "ALIASES", "ACCURACY", "RUN", "AGE"]
    assert [r[:4] for r in rows[1:]] == [["credit", "1", "champion", "0.9"],
                                         ["credit", "2", "<none>", "0.8"]]
    assert rows[1][4] == home.ids["run"]
    docs = document(home.invoke("models", "list", "credit", "--json"), cli.list_)
    assert [(d["model"], d["version"], d["aliases"]) for d in docs] == [
        ("credit", 1, ["champion"]), ("credit", 2, [])]
    assert docs[0]["metrics"] == {"accuracy": 0.9, "auc": 0.9} and docs[0]["created_by"] == "ops"
    assert document(home.invoke("models", "list", "empty", "--json"), cli.list_) == []
    # A reader with the viewer role reads.
    res = home.invoke("models", "list", "--json=version,model", who="val")
    assert res.exit_code == 0, res.output
    assert res.stdout.replace(" ", "").replace("\n", "") == (
        '[{"version":1,"model":"credit"},{"version":2,"model":"credit"}]')


def test_show_resolves_a_version_an_alias_or_the_latest(home):
    rows = table(home.invoke("models", "show", "credit@champion"))
    assert rows == [["NAME", "VERSION", "ALIASES", "DIGEST"], ["credit", "1", "champion",
                                                                f"{1:064x}"]]
    latest = document(home.invoke("models", "show", "credit", "--json"), cli.show)
    assert (latest["version"], latest["aliases"], latest["digest"]) == (2, [], f"{2:064x}")
    assert document(home.invoke("models", "show", "credit:1", "--json"),
                    cli.show)["aliases"] == ["champion"]


@pytest.mark.parametrize(("args", "kind", "needle"), [
    (["models", "show", "credit:9"], NotFound, "model 'credit' has no version 9"),
    (["models", "show", "credit@challenger"], NotFound, "model 'credit' has no 'challenger' alias"),
    (["models", "show", "empty"], NotFound, "model 'empty' has no version (none yet)"),
    (["models", "show", "credit@"], InvalidInput, "has an empty alias"),
    (["models", "list", "ghost"], NotFound, "no model named 'ghost'"),
    (["models", "show", "ghost:1", "--json"], NotFound, "no model named 'ghost'"),
    (["models", "show", "credit:1", "--json=model,owner"], InvalidInput,
     "--json: unknown field 'owner'; available fields: model, version, aliases"),
    (["lineage", "nobody@champion"], NotFound, "no model named 'nobody'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_unknown_references_are_refused(home, args, kind, needle):
    refused(home.invoke(*args), kind, needle)


def test_lineage_names_the_dataset_run_and_approver(home):
    rows = table(home.invoke("lineage", "credit@champion"))
    assert rows[0] == ["NAME", "VERSION", "DATASET", "RUN", "SEED", "CODE", "REQUESTED_BY",
                       "APPROVED_BY"]
    name, version, dataset, run, seed, _code, requested, approved = rows[1]
    assert (name, version, dataset, run, seed) == ("credit", "1", "loans:1", home.ids["run"], "1")
    assert (requested, approved) == ("ops", "risk")
    doc = document(home.invoke("lineage", "credit:1", "--json"), cli.lineage)
    assert doc["ref"] == "credit:1" and doc["run"]["params"] == {"lr": 0.1}
    assert doc["dataset"]["name"] == "loans" and doc["dataset"]["rows"] == 3
    assert [(a["alias"], a["status"], a["approved_by"]) for a in doc["approvals"]] == [
        ("champion", "approved", "risk")]
    # Version 2 was never approved: no one to name.
    assert table(home.invoke("lineage", "credit:2"))[1][-2:] == ["<none>", "<none>"]


def test_set_changes_the_owner_team_runbook_and_description(home):
    res = home.invoke("models", "set", "credit", "--team", "lending", "--owner", "ops",
                      "--runbook", "https://wiki.example/credit", "--description", "scores",
                      who="ops")
    # Silent on success: the change is in the audit log and in `--json`.
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == "", res.output
    doc = document(home.invoke("models", "set", "credit", "--description", "loan scores",
                               "--json", who="ops"), cli.set_)
    assert doc == {"model": "credit", "owner": "ops", "team": "lending",
                   "runbook_url": "https://wiki.example/credit", "risk_tier": "medium",
                   "review_interval_days": None, "description": "loan scores"}
    doc = document(home.invoke("models", "set", "credit", "--runbook", "", "--json", who="ops"),
                   cli.set_)
    assert doc["runbook_url"] is None
    only = home.invoke("models", "set", "credit", "--team", "credit", "--json=team,owner")
    assert only.exit_code == 0 and only.stdout.split() == ["{", '"team":', '"credit",',
                                                           '"owner":', '"ops"', "}"]


def test_the_risk_tier_and_review_interval_need_an_approver(home):
    doc = document(home.invoke("models", "set", "empty", "--risk-tier", "high",
                               "--review-interval-days", "30", "--json", who="risk"), cli.set_)
    assert (doc["risk_tier"], doc["review_interval_days"]) == ("high", 30)
    refused(home.invoke("models", "set", "empty", "--review-interval-days", "7", who="ops"),
            PermissionDenied, "user 'ops' has role 'operator'; 'approve' needs one of")


@pytest.mark.parametrize(("args", "needle"), [
    (["--risk-tier", "extreme"], "unknown risk tier 'extreme'"),
    (["--runbook", "wiki"], "runbook URL 'wiki' must be an http(s) URL"),
    (["--owner", "ghost"], "no user named 'ghost' to own model 'credit'"),
    (["--review-interval-days", "0"], "review interval 0 must be a whole number of days"),
    ([], "nothing to change: give --owner, --team"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_set_names_the_bad_setting(home, args, needle):
    refused(home.invoke("models", "set", "credit", *args), InvalidInput, needle)


def test_a_bad_option_value_is_a_usage_error(home):
    usage_error(home.invoke("models", "set", "credit", "--review-interval-days", "often"),
                "Invalid value for '--review-interval-days'")
