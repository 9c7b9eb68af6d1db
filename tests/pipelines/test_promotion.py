"""Gating a candidate and requesting its promotion (`appliance.pipelines.promotion`), without
Ray: real XGBoost bundles of the tests' own world (`loop_world`) in a real artifact store and
SQLite. What is promotion's own: each candidate is judged on its own holdout (the seed, share
and split of its run's spec), by the gate it stored, beside the alias holder; `request` checks
the permission before it reads anything, refuses a version that holds the alias already before
any gate, opens no approval for a failed gate, and refuses to file a request whose alias moved
while its gate ran.

The gate's checks on models trained on a real Ray (segments, user functions, tolerance):
tests/pipelines/test_gating.py.
"""

from __future__ import annotations

import datetime as dt

import governance_world as gw
import loop_world as lw
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.errors import ConflictError, GateFailed, NotFound, PermissionDenied
from appliance.governance import approvals
from appliance.governance.users import get_user
from appliance.pipelines import promotion
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import Approval, AuditEvent, ModelVersion

MODEL = "scorer"
ROWS = 600
PASSED = approvals.gate({"accuracy": 0.9, "auc": 0.9})
# The store a gate function below acts on while the gate runs (set by the test that uses it).
_RACE: dict[str, str] = {}


def approve_the_pending_request(candidate, holdout, champion):
    """A gate function that, while the gate runs, has risk approve the pending request: the
    alias the gate measured against moves."""
    with session_scope(_RACE["url"]) as s:
        (pending,) = s.exec(select(Approval).where(Approval.status == "pending")).all()
        approvals.approve(s, get_user(s, "risk"), pending.id)
    return True, "approved the pending request"


@pytest.fixture(scope="module")
def bundles():
    """The world's rows; a bundle trained on their labels and one on the opposite labels."""
    import xgboost  # deferred: only these bundles need it

    from cluster.bundle import ModelBundle, Preprocessor

    rows = lw.draw(ROWS, seed=1)
    cols = {f: rows[f] for f in lw.FEATURES}
    pre = Preprocessor.fit(cols, lw.CATEGORICAL)
    out = []
    for label in (rows["y"], 1 - rows["y"]):
        booster = xgboost.train({"max_depth": 2, "objective": "binary:logistic", "nthread": 1,
                                 "seed": 0}, xgboost.DMatrix(pre.transform(cols), label=label),
                                num_boost_round=8)
        out.append(ModelBundle(pre, booster, 0, 0, "y", kind="xgboost").to_bytes())
    return rows, out[0], out[1]


def _register(cfg, bundle: bytes, *, seed: int, holdout: float, gate: dict | None = None):
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as s:
        ds = datasets.resolve(s, "loans")
        run = models.start_run(s, model=MODEL, dataset=ds,
                               spec={"model": MODEL, "label": "y", "holdout": holdout,
                                     "split": "random"}, params={}, seed=seed, actor="ops")
        models.finish_run(s, run, metrics={}, device="cpu")
        return models.register_version(
            s, run=run, digest=store.put_bytes(bundle), profile_digest=None, metrics={},
            features=lw.FEATURES, categorical=lw.CATEGORICAL, label="y", actor="ops",
            gate_checks=gate)


@pytest.fixture
def world(sqlite_url, tmp_path, bundles):
    """v1: the good bundle, judged on a quarter of the rows by its own gate (AUC >= 0.7); v2:
    the contrary bundle, judged on half of them by the default gate (none stored)."""
    import pyarrow as pa

    rows, good, bad = bundles
    cfg = lw.config(tmp_path, db_url=sqlite_url)
    gw.people(sqlite_url)
    with session_scope(sqlite_url) as s:
        models.ensure_model(s, MODEL, owner="ops", team="credit")
        datasets.add_table(s, ArtifactStore(cfg.artifacts),
                           pa.table({k: rows[k] for k in [*lw.FEATURES, "y"]}), "loans",
                           actor="ops")
    v1 = _register(cfg, good, seed=3, holdout=0.25, gate={"thresholds": {"auc": {"min": 0.7}}})
    v2 = _register(cfg, bad, seed=4, holdout=0.5)
    return cfg, v1, v2, good


def _user(cfg, name):
    with session_scope(cfg.db_url) as s:
        return get_user(s, name)


def _actions(cfg) -> list[str]:
    with session_scope(cfg.db_url) as s:
        return [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()]


def test_each_candidate_is_measured_on_its_own_holdout(world):
    cfg, v1, v2, _ = world
    mine, theirs = promotion.evaluate_on_holdout(cfg, v1, [v2])
    assert mine["rows"] == theirs["rows"] == ROWS // 4
    assert mine["auc"] > 0.8 and theirs["auc"] < 0.2
    # v2's run kept half of the rows out: the same two models, judged on v2's holdout.
    (again,) = promotion.evaluate_on_holdout(cfg, v2, [])
    assert again["rows"] == ROWS // 2 and again["auc"] < 0.2


def test_the_gate_judges_by_the_checks_the_version_stored(world):
    cfg, v1, v2, _ = world
    first = promotion.run_gate(cfg, v1, None)
    assert first.result.passed and first.incumbent is None
    assert [c.name for c in first.result.checks] == ["auc >= 0.7"]
    assert first.candidate == promotion.evaluate_on_holdout(cfg, v1, [])[0]
    # v2 stored no gate: the default floors and tolerance, against v1 on v2's holdout.
    worse = promotion.run_gate(cfg, v2, v1)
    assert not worse.result.passed and worse.incumbent["rows"] == ROWS // 2
    assert {c.name for c in worse.result.failed} == {
        "accuracy >= 0.7", "auc >= 0.7", "accuracy >= incumbent - 0.01",
        "auc >= incumbent - 0.01"}


def test_request_checks_the_permission_and_the_reference_first(world):
    cfg, _, _, _ = world
    before = _actions(cfg)
    # A viewer learns nothing, not even whether the model exists.
    with pytest.raises(PermissionDenied, match="'operate' needs one of"):
        promotion.request(cfg, _user(cfg, "viewer"), "ghost:1", "champion")
    with pytest.raises(NotFound, match="ghost"):
        promotion.request(cfg, _user(cfg, "ops"), "ghost:1", "champion")
    with pytest.raises(NotFound, match="has no version 9"):
        promotion.request(cfg, _user(cfg, "ops"), f"{MODEL}:9", "champion")
    assert _actions(cfg) == before


def test_a_passed_gate_opens_an_approval_bound_to_the_alias_holder(world):
    cfg, v1, v2, _ = world
    ops, until = _user(cfg, "ops"), dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
    approval, result = promotion.request(cfg, ops, f"{MODEL}:1", "champion", expires_at=until)
    assert result.passed and approval.status == "pending"
    assert approval.incumbent_version_id is None and approval.requested_by == "ops"
    assert approval.gate == result.to_dict()
    assert approval.expires_at.replace(tzinfo=dt.timezone.utc) == until
    with session_scope(cfg.db_url) as s:
        approvals.approve(s, get_user(s, "risk"), approval.id)
    before = _actions(cfg)
    # The alias holder again: refused before any gate runs, so nothing is audited.
    with pytest.raises(ConflictError, match=f"{MODEL}:1 already holds the 'champion' alias"):
        promotion.request(cfg, ops, f"{MODEL}:1", "champion")
    assert _actions(cfg) == before
    # A failed gate is audited and opens no approval.
    with pytest.raises(GateFailed, match=f"{MODEL}:2 failed the promotion gate"):
        promotion.request(cfg, ops, f"{MODEL}:2", "champion")
    assert _actions(cfg) == [*before, "model.gate.failed"]
    with session_scope(cfg.db_url) as s:
        assert s.exec(select(Approval).where(Approval.version_id == v2.id)).all() == []
        assert models.resolve(s, f"{MODEL}@champion").id == v1.id


def test_a_request_whose_alias_moved_while_its_gate_ran_is_refused(world):
    cfg, v1, v2, good = world
    v3 = _register(cfg, good, seed=5, holdout=0.25,
                   gate={"functions": ["test_promotion:approve_the_pending_request"]})
    with session_scope(cfg.db_url) as s:
        ops, risk = get_user(s, "ops"), get_user(s, "risk")
        approvals.approve(s, risk, approvals.request_promotion(
            s, ops, s.get(ModelVersion, v1.id), "champion", PASSED).id)
        # A request for v2 waits; v3's gate function has it approved while v3's gate runs.
        approvals.request_promotion(s, ops, s.get(ModelVersion, v2.id), "champion", PASSED)
    _RACE["url"] = cfg.db_url
    with pytest.raises(ConflictError, match="moved while the gate ran") as refused:
        promotion.request(cfg, ops, f"{MODEL}:3", "champion")
    assert f"measured against {MODEL}:1" in str(refused.value)
    with session_scope(cfg.db_url) as s:
        assert models.resolve(s, f"{MODEL}@champion").id == v2.id
        assert s.exec(select(Approval).where(Approval.version_id == v3.id)).all() == []
