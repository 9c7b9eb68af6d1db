"""The store's counts for `appliance status`, read through Core, match what the rows say."""

from __future__ import annotations

import datetime as dt

from appliance.registry.overview import ServingPublic, store_counts
from appliance.store import get_engine, session_scope
from appliance.store.models import (
    Alert,
    Approval,
    Dataset,
    Deployment,
    ModelVersion,
    RegisteredModel,
    Run,
)

SINCE = dt.datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=dt.timezone.utc)


def _world(url: str) -> None:
    with session_scope(url) as s:
        s.add(Dataset(name="loans", version=1, digest="d1", rows=3, created_by="t"))
        s.add(RegisteredModel(name="credit", owner="t"))
        s.add(RegisteredModel(name="churn", owner="t"))
        s.flush()
        s.add(Run(id="r1", model_name="credit", dataset_id=1, seed=0, code_version="x",
                  environment="e", created_by="t"))
        s.flush()
        for n in (1, 2, 3):
            s.add(ModelVersion(model_name="credit", version=n, digest=f"m{n}", run_id="r1",
                               label="y", created_by="t"))
        s.flush()
        s.add(Deployment(name="credit", model_name="credit", version_id=2, url="http://a/2",
                         created_by="t", started_at=SINCE))
        s.add(Deployment(name="credit", model_name="credit", version_id=1, url="http://a/1",
                         created_by="t", status="stopped"))
        s.add(Deployment(name="credit-canary", model_name="credit", version_id=3,
                         url="http://a/3", role="canary", created_by="t", started_at=SINCE))
        for status in ("pending", "pending", "approved"):
            s.add(Approval(model_name="credit", version_id=3, target_alias="champion",
                           status=status, requested_by="t"))
        for status in ("open", "acknowledged", "resolved", "open", "open"):
            s.add(Alert(kind="drift", model_name="credit", status=status, message="m",
                        owner="t"))


def test_counts_and_active_deployments(db_url):
    _world(db_url)
    with get_engine(db_url).connect() as conn:
        counts = store_counts(conn)
    assert counts.model_dump(exclude={"deployments"}) == {
        "datasets": 1, "models": 2, "versions": 3, "pending_approvals": 2, "open_alerts": 3}
    assert counts.deployments == [
        ServingPublic(name="credit", version=2, url="http://a/2", since=SINCE),
        ServingPublic(name="credit-canary", version=3, url="http://a/3", since=SINCE),
    ]
    # Aware UTC, as the ORM hands them back (SQLite keeps no zone).
    assert all(d.since.tzinfo == dt.timezone.utc for d in counts.deployments)


def test_an_empty_store_counts_nothing(db_url):
    with get_engine(db_url).connect() as conn:
        counts = store_counts(conn)
    assert counts.model_dump() == {"datasets": 0, "models": 0, "versions": 0,
                                   "pending_approvals": 0, "open_alerts": 0, "deployments": []}
