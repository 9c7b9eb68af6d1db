"""Where a model came from and who let it out (`appliance.registry.lineage`): dataset, run,
params, code and every approval behind a version, by any of its references; on SQLite and
PostgreSQL."""

from __future__ import annotations

import governance_world as gw

from appliance.governance import approvals
from appliance.governance.users import get_user
from appliance.registry.lineage import lineage
from appliance.store import session_scope


def test_lineage_follows_a_version_to_its_data_run_and_approvals(db_url, tmp_path):
    gw.people(db_url)
    mv = gw.registered_version(db_url, tmp_path, rows=12)
    with session_scope(db_url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), mv, "champion",
                                          approvals.gate({"accuracy": 0.9, "auc": 0.9}))
        approvals.reject(s, get_user(s, "risk"), req.id, "not yet")
    with session_scope(db_url) as s:
        doc = lineage(s, "credit:1").model_dump()
        assert (doc["model"], doc["version"], doc["ref"]) == ("credit", 1, "credit:1")
        assert doc["aliases"] == [] and doc["registered_by"] == "ops"
        assert doc["artifact"] == {"digest": "d" * 64, "profile_digest": None}
        assert doc["dataset"]["name"] == "loans" and doc["dataset"]["rows"] == 12
        assert doc["run"]["params"] == {"lr": 0.1} and doc["run"]["seed"] == 3
        assert doc["run"]["requested_by"] == "ops" and doc["run"]["rerun_of"] is None
        assert doc["code_version"]
        [rejected] = doc["approvals"]
        assert (rejected["status"], rejected["requested_by"], rejected["decided_by"]) == (
            "rejected", "ops", "risk")
        assert rejected["approved_by"] is None and rejected["alias"] == "champion"
        assert lineage(s, "credit").version == 1
