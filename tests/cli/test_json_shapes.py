"""The --json documents of read commands are a contract: their keys must not drift silently."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from json_records import record_of
from pydantic import TypeAdapter
from typer.testing import CliRunner

from appliance.artifacts import ArtifactStore
from appliance.cli._json_fields import record_fields
from appliance.cli.main import app
from appliance.governance import approvals, audit
from appliance.governance.users import create_user, get_user
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import Alert

SHAPES = {
    ("status",): {"home", "db_url", "datasets", "models", "versions", "pending_approvals",
                  "open_alerts", "deployments", "ray_head"},
    ("data", "list"): {"name", "version", "digest", "rows", "columns", "source", "label",
                       "contract_status", "contract", "contract_accepted_by",
                       "contract_accepted_reason", "contract_accepted_at", "created_by",
                       "created_at"},
    ("data", "show", "loans:1"): {"name", "version", "digest", "rows", "columns", "source",
                                  "label", "contract_status", "contract",
                                  "contract_accepted_by", "contract_accepted_reason",
                                  "contract_accepted_at", "created_by", "created_at"},
    ("models", "list"): {"model", "version", "aliases", "digest", "run", "metrics",
                         "created_by", "created_at"},
    ("models", "show", "credit@champion"): {"model", "version", "aliases", "digest", "run",
                                            "metrics", "created_by", "created_at"},
    ("lineage", "credit@champion"): {"model", "version", "ref", "aliases", "artifact", "metrics",
                                     "registered_by", "registered_at", "dataset", "run",
                                     "code_version", "environment", "approvals"},
    ("approvals", "--status", "all"): {"id", "model", "version", "alias", "status",
                                       "incumbent_version", "required_approvals",
                                       "approved_by", "requested_by", "decided_by",
                                       "requested_at", "expires_at"},
    ("alerts", "list"): {"id", "kind", "rule", "severity", "status", "model", "deployment",
                         "version", "window", "last_window", "value", "threshold",
                         "occurrences", "message", "owner", "team", "runbook_url", "notified",
                         "created_at", "last_seen_at", "acknowledged_by", "acknowledged_at",
                         "resolved_by", "resolved_at", "resolution"},
    ("policy", "show", "credit"): {"model", "policy", "sources", "updated_by", "updated_at"},
    ("canary", "status", "credit"): {"model", "serving", "canary", "retrain"},
    ("audit", "list"): {"id", "ts", "actor", "action", "object", "details", "hash"},
    ("audit", "verify"): {"ok", "events", "head", "broken_at", "reason", "key_id",
                          "checkpoint_events", "checkpoint_at", "findings"},
    ("users", "list"): {"name", "role", "team", "created_at", "disabled_at"},
}
LINEAGE_PARTS = {
    "dataset": {"name", "version", "digest", "rows", "source", "lineage"},
    "run": {"id", "params", "seed", "status", "device", "started_at", "finished_at",
            "requested_by", "rerun_of", "kind", "tuning_run"},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("shapes")
    url = f"sqlite:///{home / 'appliance.db'}"
    migrate(url)
    store = ArtifactStore(home / "artifacts")
    # Events are signed with the key of the home the CLI will verify them in.
    with pytest.MonkeyPatch.context() as env, session_scope(url) as s:
        env.setenv("APPLIANCE_HOME", str(home))
        create_user(s, "admin", "admin", actor="admin")
        create_user(s, "ops", "operator", actor="admin", team="credit")
        create_user(s, "risk", "approver", actor="admin")
        ds = datasets.add_table(s, store, pa.table({"x": [1.0, 2.0], "y": [0, 1]}), "loans",
                                actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="credit")
        run = models.start_run(s, model="credit", dataset=ds, spec={}, params={"lr": 0.1},
                               seed=1, actor="ops")
        models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
        mv = models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                     metrics={"accuracy": 0.9, "auc": 0.9}, features=["x"],
                                     categorical=[], label="y", actor="ops")
        req = approvals.request_promotion(s, get_user(s, "ops"), mv, "champion",
                                          approvals.gate({"accuracy": 0.9, "auc": 0.9}))
        approvals.approve(s, get_user(s, "risk"), req.id)
        s.add(Alert(kind="drift", model_name="credit", message="m", owner="ops"))
        audit.record(s, "monitor", "alert.raised", "alert", 1, {})
    dispose_all()
    return home


@pytest.mark.parametrize("args", list(SHAPES), ids=" ".join)
def test_json_keys(home, monkeypatch, args):
    monkeypatch.setenv("APPLIANCE_HOME", str(home))
    for var in ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    items = doc if isinstance(doc, list) else [doc]
    assert items, f"{args} returned an empty list; the fixture should populate it"
    # What it prints is the record it declares (whose golden schema test_json_schemas holds).
    record = record_of(args)
    TypeAdapter(record).validate_json(res.stdout)
    for item in items:
        assert set(item) == SHAPES[args] == set(record_fields(record))
    if args[0] == "lineage":
        for part, keys in LINEAGE_PARTS.items():
            assert set(doc[part]) == keys

