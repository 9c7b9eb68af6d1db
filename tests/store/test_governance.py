"""Users, tokens, the audit chain, the gate and four-eyes approval, on SQLite and PostgreSQL."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sqlalchemy import text

from appliance.artifacts import ArtifactStore
from appliance.errors import CheckFailed, ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import approvals, audit, gate_checks
from appliance.governance.gate_checks import parse_gate
from appliance.governance.users import (
    authenticate,
    create_user,
    get_user,
    issue_token,
    revoke_token,
)
from appliance.registry import datasets, lineage, models
from appliance.store import session_scope


def _people(url):
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root", team="credit")
        create_user(s, "ops2", "operator", actor="root", team="credit")
        create_user(s, "risk", "approver", actor="root")
        create_user(s, "viewer", "viewer", actor="root")


def _version(url, tmp_path, name="credit", rows=10):
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(url) as s:
        table = pa.table({"x": list(range(rows)), "y": [0, 1] * (rows // 2)})
        ds = datasets.add_table(s, store, table, "loans", actor="ops")
        models.ensure_model(s, name, owner="ops", team="credit")
        run = models.start_run(s, model=name, dataset=ds, spec={"k": 1}, params={"lr": 0.1},
                               seed=3, actor="ops")
        models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
        return models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                       metrics={"accuracy": 0.9}, features=["x"],
                                       categorical=[], label="y", actor="ops")


def test_tokens_authenticate_and_revoke(db_url):
    _people(db_url)
    with session_scope(db_url) as s:
        secret = issue_token(s, "ops", "laptop", actor="root")
    with session_scope(db_url) as s:
        assert authenticate(s, secret).name == "ops"
        with pytest.raises(PermissionDenied):
            authenticate(s, secret + "x")
        revoke_token(s, "ops", "laptop", actor="root")
    with session_scope(db_url) as s, pytest.raises(PermissionDenied):
        authenticate(s, secret)


def test_bad_role_and_duplicate_user(db_url):
    with session_scope(db_url) as s:
        with pytest.raises(InvalidInput, match="unknown role 'wizard'"):
            create_user(s, "a", "wizard", actor="root")
        create_user(s, "a", "viewer", actor="root")
        with pytest.raises(ConflictError, match="'a' already exists"):
            create_user(s, "a", "viewer", actor="root")


def test_audit_chain_verifies_and_detects_edit_and_delete(db_url):
    _people(db_url)
    with session_scope(db_url) as s:
        for i in range(5):
            audit.record(s, "ops", "thing.done", "thing", i, {"n": i})
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert result.ok and result.events == 10
    with session_scope(db_url) as s:
        s.execute(text("UPDATE auditevent SET actor = 'mallory' WHERE id = 7"))
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert not result.ok and result.broken_at == 7 and "hash" in result.reason
    with session_scope(db_url) as s:
        s.execute(text("UPDATE auditevent SET actor = 'ops' WHERE id = 7"))
        assert audit.verify(s).ok
        s.execute(text("DELETE FROM auditevent WHERE id = 4"))
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert not result.ok and result.broken_at == 5


def test_gate_floors_and_incumbent_tolerance():
    assert approvals.gate({"accuracy": 0.9, "auc": 0.9}).passed
    assert not approvals.gate({"accuracy": 0.6, "auc": 0.9}).passed
    worse = approvals.gate({"accuracy": 0.85, "auc": 0.9}, {"accuracy": 0.9, "auc": 0.9})
    assert not worse.passed
    assert [c.name for c in worse.failed] == ["accuracy >= incumbent - 0.01"]
    assert approvals.gate({"accuracy": 0.895, "auc": 0.9}, {"accuracy": 0.9, "auc": 0.9}).passed


def test_each_task_has_its_default_gate_in_its_metrics_directions():
    def gate(task, candidate, incumbent=None):
        return approvals.gate(candidate, incumbent, checks=gate_checks.default_checks(task))

    # Regression: r2 >= 0 (better than answering the mean), and r2 no more than 0.01 below the
    # champion's; rmse, in label units, has no natural tolerance and is not judged.
    reg = {"rmse": 1.0, "mae": 0.8, "r2": 0.6}
    assert gate("regression", reg, {**reg, "r2": 0.605, "rmse": 0.5}).passed
    worse = gate("regression", {**reg, "r2": 0.55}, reg)
    assert [c.name for c in worse.failed] == ["r2 >= incumbent - 0.01"]
    assert not gate("regression", {**reg, "r2": -0.1}).passed
    # Multiclass: macro F1 floor, and neither accuracy nor macro F1 more than 0.01 below.
    mc = {"accuracy": 0.5, "macro_f1": 0.7, "log_loss": 0.9}
    assert gate("multiclass", mc, {**mc, "macro_f1": 0.705}).passed
    assert not gate("multiclass", mc, {**mc, "macro_f1": 0.75}).passed
    assert not gate("multiclass", mc, {**mc, "accuracy": 0.6}).passed
    assert not gate("multiclass", {**mc, "macro_f1": 0.4}).passed
    # A spec without [gate] gets its task's default; an unknown task the binary one.
    assert parse_gate(None, task="regression") == gate_checks.default_checks("regression")
    assert gate_checks.from_stored(None, "multiclass") == gate_checks.default_checks("multiclass")
    assert gate_checks.default_checks("what") == gate_checks.DEFAULT_CHECKS


def test_four_eyes_promotion(db_url, tmp_path):
    _people(db_url)
    mv = _version(db_url, tmp_path)
    passed = approvals.gate({"accuracy": 0.9, "auc": 0.9})
    with session_scope(db_url) as s:
        ops, viewer = get_user(s, "ops"), get_user(s, "viewer")
        with pytest.raises(PermissionDenied, match="viewer"):
            approvals.request_promotion(s, viewer, mv, "champion", passed)
        req = approvals.request_promotion(s, ops, mv, "champion", passed)
        with pytest.raises(ConflictError, match="already has pending"):
            approvals.request_promotion(s, ops, mv, "champion", passed)
    with session_scope(db_url) as s:
        with pytest.raises(PermissionDenied, match="operator"):
            approvals.approve(s, get_user(s, "ops2"), req.id)
        # An admin who requested may still not approve their own request.
        root = get_user(s, "root")
        own = approvals.request_promotion(s, root, mv, "challenger", passed)
        with pytest.raises(PermissionDenied, match="four-eyes"):
            approvals.approve(s, root, own.id)
        approvals.approve(s, get_user(s, "risk"), req.id, "ok")
    with session_scope(db_url) as s:
        assert models.resolve(s, "credit@champion").id == mv.id
        doc = lineage.lineage(s, "credit@champion")
        assert doc["dataset"]["name"] == "loans" and doc["run"]["params"] == {"lr": 0.1}
        assert doc["run"]["seed"] == 3 and doc["code_version"]
        approved = [a for a in doc["approvals"] if a["status"] == "approved"]
        assert approved[0]["requested_by"] == "ops" and approved[0]["approved_by"] == "risk"
        with pytest.raises(ConflictError, match="already approved"):
            approvals.approve(s, get_user(s, "risk"), req.id)
        assert audit.verify(s).ok


def test_failed_gate_is_audited_and_refused(db_url, tmp_path):
    _people(db_url)
    mv = _version(db_url, tmp_path)
    failing = approvals.gate({"accuracy": 0.1, "auc": 0.1})
    with session_scope(db_url) as s, pytest.raises(CheckFailed, match="failed the promotion gate"):
        approvals.request_promotion(s, get_user(s, "ops"), mv, "champion", failing)
    with session_scope(db_url) as s:
        actions = [r[0] for r in s.execute(text("SELECT action FROM auditevent")).all()]
        assert "model.gate.failed" in actions


def test_dataset_versions_are_content_addressed(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "a")
    csv = tmp_path / "d.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    with session_scope(db_url) as s:
        first = datasets.add_file(s, store, csv, "d", actor="ops")
        again = datasets.add_file(s, store, csv, "d", actor="ops")
        assert (first.version, again.id) == (1, first.id)
        other = datasets.add_table(s, store, pa.table({"a": [3]}), "d", actor="ops")
        assert other.version == 2 and other.digest != first.digest
        assert datasets.load(store, first).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
        with pytest.raises(NotFound, match="'d:9'"):
            datasets.resolve(s, "d:9")
    with pytest.raises(InvalidInput, match="does not exist"):
        datasets.read_table(tmp_path / "missing.parquet")
    with pytest.raises(InvalidInput, match="unsupported type"):
        datasets.read_table(csv.rename(tmp_path / "d.txt"))


def test_model_refs(db_url, tmp_path):
    _people(db_url)
    mv = _version(db_url, tmp_path)
    with session_scope(db_url) as s:
        assert models.resolve(s, "credit").id == mv.id
        assert models.resolve(s, "credit:1").id == mv.id
        with pytest.raises(NotFound, match="no 'champion' alias"):
            models.resolve(s, "credit@champion")
        with pytest.raises(NotFound, match="no model named 'nope'"):
            models.resolve(s, "nope")
        with pytest.raises(InvalidInput, match="must be a number"):
            models.resolve(s, "credit:x")
        with pytest.raises(InvalidInput, match="model name"):
            models.ensure_model(s, "Bad Name", owner="ops", team="t")


def test_concurrent_audit_writers_keep_one_chain(db_url):
    import threading

    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                with session_scope(db_url) as s:
                    audit.record(s, name, "thing.done", "thing", i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{k}",)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with session_scope(db_url) as s:
        result = audit.verify(s)
    assert result.ok and result.events == 45
