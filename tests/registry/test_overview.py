"""What the store holds, in counts (`appliance.registry.overview`, the body of `appliance
status`); on SQLite and PostgreSQL."""

from __future__ import annotations

import governance_world as gw

from appliance.governance import approvals
from appliance.governance.users import get_user
from appliance.registry.overview import store_counts
from appliance.store import session_scope


def test_counts_follow_what_is_added(db_url, tmp_path):
    with session_scope(db_url) as s:
        assert store_counts(s) == {"datasets": 0, "models": 0, "versions": 0,
                                   "pending_approvals": 0, "open_alerts": 0, "deployments": []}
    gw.people(db_url)
    mv = gw.registered_version(db_url, tmp_path)
    with session_scope(db_url) as s:
        approvals.request_promotion(s, get_user(s, "ops"), mv, "champion",
                                    approvals.gate({"accuracy": 0.9, "auc": 0.9}))
    with session_scope(db_url) as s:
        counts = store_counts(s)
    assert (counts["datasets"], counts["models"], counts["versions"]) == (1, 1, 1)
    assert counts["pending_approvals"] == 1 and counts["deployments"] == []
