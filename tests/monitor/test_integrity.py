"""Integrity alerts (`appliance.monitor.integrity`): an artifact whose bytes changed raises one
critical alert for its model's owner (an admin's for a dataset), audited and queued for
delivery; on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import load_config
from appliance.errors import ArtifactIntegrityError
from appliance.governance import audit
from appliance.governance.users import create_user
from appliance.monitor import integrity
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import Alert, AlertDelivery, AuditEvent


def _corrupt(path) -> None:
    """Rewrite the stored object at `path` with other bytes, as bit rot or an attacker would."""
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[::-1] + b"!")


def test_a_mismatch_raises_one_critical_alert_for_the_owner(db_url, tmp_path):
    cfg = dataclasses.replace(load_config(), db_url=db_url, artifacts=tmp_path / "a",
                              home=tmp_path)
    store = ArtifactStore(cfg.artifacts)
    with session_scope(db_url) as s:
        create_user(s, "admin", "admin", actor="admin")
        create_user(s, "ops", "operator", actor="admin", team="credit")
        models.ensure_model(s, "credit", owner="ops", team="credit")
    digest = store.put_bytes(b"weights" * 50)
    _corrupt(store.path_for(digest))
    for _ in range(2):
        with pytest.raises(ArtifactIntegrityError), integrity.alerting(cfg):
            store.get_bytes(digest, what="model bundle credit:1", model="credit")
    # A dataset belongs to no model: its alert goes to an admin.
    with session_scope(db_url) as s:
        ds = datasets.add_table(s, store, pa.table({"x": [1, 2, 3]}), "loans", actor="ops")
    _corrupt(store.path_for(ds.digest))
    with pytest.raises(ArtifactIntegrityError), integrity.alerting(cfg):
        datasets.load(store, ds)
    with session_scope(db_url) as s:
        bundle, data = s.exec(select(Alert).order_by(Alert.id)).all()
        assert (bundle.kind, bundle.severity, bundle.owner, bundle.team) == (
            "integrity", "critical", "ops", "credit")
        assert bundle.occurrences == 2 and digest in bundle.message
        assert (data.owner, data.model_name) == ("admin", "")
        assert "dataset loans:1" in data.message
        assert s.exec(select(AlertDelivery).where(AlertDelivery.alert_id == bundle.id)).all()
        raised = s.exec(select(AuditEvent).where(AuditEvent.action == "alert.raised")).all()
        assert [e.details["artifact"] for e in raised] == ["model bundle credit:1",
                                                           "dataset loans:1"]
        assert audit.verify(s).ok
