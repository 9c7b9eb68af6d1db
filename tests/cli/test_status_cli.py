"""`appliance status` (appliance/cli/status.py) with no Ray head running: the counts of a
store built through the library, its table and its `StatusPublic` document, the "no head"
state and a recorded head that is gone (no Ray is joined for either), and `--json=FIELDS`."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from cli_home import invoke, make_home, refusal, run_cli, use_home

from appliance.artifacts import ArtifactStore
from appliance.governance import approvals
from appliance.governance.users import get_user, issue_token, revoke_token
from appliance.pipelines.status import HeadStatusPublic, StatusPublic
from appliance.registry import datasets, models
from appliance.store import dispose_all, session_scope, utcnow
from appliance.store.models import Alert, Deployment
from cluster.head import ADDRESS_FILE


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template):
    """One dataset; models "credit" (versions 1 and 2) and "toy" (none); v2's promotion
    pending; two open alerts and a resolved one; credit v1 serving, an earlier run stopped."""
    cfg, _ = make_home(tmp_path_factory.mktemp("status-cli"), _sqlite_template)
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as s:
        ds = datasets.add_table(s, store, pa.table({"x": [1.0, 2.0], "y": [0, 1]}), "loans",
                                actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="credit")
        models.ensure_model(s, "toy", owner="ops", team="credit")
        run = models.start_run(s, model="credit", dataset=ds, spec={}, params={}, seed=1,
                               actor="ops")
        models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
        v1, v2 = (models.register_version(
            s, run=run, digest=str(n) * 64, profile_digest=None,
            metrics={"accuracy": 0.9, "auc": 0.9}, features=["x"], categorical=[], label="y",
            actor="ops") for n in (1, 2))
        approvals.request_promotion(s, get_user(s, "ops"), v2, "champion",
                                    approvals.gate({"accuracy": 0.9, "auc": 0.9}))
        s.add_all([Alert(kind="drift", model_name="credit", message="m", owner="ops",
                         status=status) for status in ("open", "open", "resolved")])
        s.add(Deployment(name="credit", model_name="credit", version_id=v1.id,
                         url="http://127.0.0.1:8000/v2/models/credit", created_by="ops",
                         status="stopped", stopped_at=utcnow()))
        s.add(Deployment(name="credit", model_name="credit", version_id=v1.id,
                         url="http://127.0.0.1:8000/v2/models/credit", created_by="ops"))
    dispose_all()
    return cfg


COUNTS = {"datasets": 1, "models": 2, "versions": 2, "pending_approvals": 1, "open_alerts": 2}
NO_HEAD = HeadStatusPublic(address=None, running=False, reachable=False, processes=0,
                           applications=None)


def test_the_table_holds_the_counts_and_no_head_row(home):
    # A process of its own: the table alone on stdout, nothing on stderr without a head.
    res = run_cli(["status"], home)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    header, row = res.stdout.strip().splitlines()
    assert header.split() == ["NAME", "DATASETS", "MODELS", "VERSIONS", "APPROVALS", "ALERTS",
                              "SERVING"]
    assert row.split() == [str(home.home), "1", "2", "2", "1", "2", "1"]


def test_json_is_the_status_record(home, monkeypatch):
    use_home(monkeypatch, home)
    res = invoke(["status", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    doc = StatusPublic.model_validate_json(res.stdout)
    assert (doc.home, doc.db_url) == (str(home.home), home.db_url)
    assert doc.model_dump(include=set(COUNTS)) == COUNTS
    (serving,) = doc.deployments
    assert (serving.name, serving.version) == ("credit", 1)
    assert serving.url == "http://127.0.0.1:8000/v2/models/credit"
    assert doc.ray_head == NO_HEAD
    # Times leave with their zone, as every --json writes them.
    assert json.loads(res.stdout)["deployments"][0]["since"].endswith("+00:00")


def test_json_fields_prints_only_those_and_names_the_fields_it_has(home, monkeypatch):
    use_home(monkeypatch, home)
    res = invoke(["status", "--json=open_alerts,ray_head"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout) == {"open_alerts": 2, "ray_head": NO_HEAD.model_dump()}
    message = refusal(invoke(["status", "--json=serving"]))
    assert message == ("--json: unknown field 'serving'; available fields: home, db_url, "
                       "datasets, models, versions, pending_approvals, open_alerts, "
                       "deployments, ray_head")


def test_a_recorded_head_that_is_gone_shows_as_down(home, monkeypatch):
    # Port 1: nothing listens there and no head process names it, so nothing is joined.
    address_file = home.home / ADDRESS_FILE
    address_file.write_text("127.0.0.1:1\n")
    use_home(monkeypatch, home)
    try:
        table = invoke(["status"])
        doc = StatusPublic.model_validate_json(invoke(["status", "--json"]).stdout)
    finally:
        address_file.unlink()
    assert table.exit_code == 0 and table.stderr == "", (table.output, table.exception)
    lines = table.stdout.strip().splitlines()
    assert lines[2].split() == ["NAME", "ADDRESS", "RUNNING", "REACHABLE", "PROCESSES",
                                "APPLICATIONS"]
    assert lines[3].split() == ["ray-head", "127.0.0.1:1", "False", "False", "0", "<none>"]
    assert doc.ray_head == HeadStatusPublic(address="127.0.0.1:1", running=False,
                                            reachable=False, processes=0, applications=None)
    assert doc.model_dump(include=set(COUNTS)) == COUNTS


def test_a_reader_with_a_revoked_token_is_refused(home, monkeypatch, tmp_path):
    # A token that is given is checked even where reads need none (the embedded default).
    with session_scope(home.db_url) as s:
        secret = issue_token(s, "val", "gone", actor="admin")
        revoke_token(s, "val", "gone", actor="admin")
    dispose_all()
    use_home(monkeypatch, home, token=secret)
    assert refusal(invoke(["status"])).startswith("the API token is unknown or revoked")
