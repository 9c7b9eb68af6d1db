"""Four-eyes that cannot be raced or gone around: incumbent binding, row locks, expiry, risk-tier
quorum and token issuers, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading

import pyarrow as pa
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.errors import ConflictError, PermissionDenied
from appliance.governance import approvals, audit
from appliance.governance.users import authenticate_token, create_user, get_user, issue_token
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope, utcnow
from appliance.store.models import Approval, ApprovalVote, AuditEvent

PASSED = approvals.gate({"accuracy": 0.9, "auc": 0.9})


def _people(url):
    with session_scope(url) as s:
        create_user(s, "root", "admin", actor="root")
        create_user(s, "ops", "operator", actor="root", team="credit")
        create_user(s, "risk", "approver", actor="root")
        create_user(s, "risk2", "approver", actor="root")


def _versions(url, tmp_path, n):
    store = ArtifactStore(tmp_path / "artifacts")
    out = []
    with session_scope(url) as s:
        ds = datasets.add_table(s, store, pa.table({"x": [1, 2], "y": [0, 1]}), "loans",
                                actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="credit")
        for _ in range(n):
            run = models.start_run(s, model="credit", dataset=ds, spec={}, params={}, seed=1,
                                   actor="ops")
            models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
            out.append(models.register_version(
                s, run=run, digest="d" * 64, profile_digest=None, metrics={"accuracy": 0.9},
                features=["x"], categorical=[], label="y", actor="ops"))
    return out


def _champion(url, version):
    """Make `version` the champion through a request that risk approves."""
    with session_scope(url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), version, "champion", PASSED)
    with session_scope(url) as s:
        assert approvals.approve(s, get_user(s, "risk"), req.id).status == "approved"


def _actions(url, approval_id):
    with session_scope(url) as s:
        return [e.action for e in s.exec(select(AuditEvent).where(
            AuditEvent.object_type == "approval", AuditEvent.object_id == str(approval_id))
            .order_by(AuditEvent.id)).all()]


def test_an_approval_is_refused_once_the_alias_left_its_incumbent(db_url, tmp_path):
    _people(db_url)
    v1, v2, v3 = _versions(db_url, tmp_path, 3)
    _champion(db_url, v1)
    with session_scope(db_url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED)
        assert req.incumbent_version_id == v1.id and req.gate["passed"]
    # Meanwhile v3 becomes champion through its own request.
    _champion(db_url, v3)
    with session_scope(db_url) as s, pytest.raises(ConflictError) as refused:
        approvals.approve(s, get_user(s, "risk2"), req.id)
    assert "credit:1" in str(refused.value) and "credit:3" in str(refused.value)
    assert "re-gate" in str(refused.value)
    with session_scope(db_url) as s:
        assert s.get(Approval, req.id).status == "stale"
        assert models.resolve(s, "credit@champion").id == v3.id
        assert audit.verify(s).ok
    # The refusal is on the record, and a new request (a new gate) is possible.
    assert _actions(db_url, req.id)[-1] == "model.promotion.stale"
    with session_scope(db_url) as s:
        again = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED)
        assert again.incumbent_version_id == v3.id


def test_a_request_is_refused_when_the_alias_moved_while_the_gate_ran(db_url, tmp_path):
    _people(db_url)
    v1, v2 = _versions(db_url, tmp_path, 2)
    _champion(db_url, v1)
    with session_scope(db_url) as s, pytest.raises(ConflictError, match="run the gate again"):
        # The gate measured v2 against an empty alias, but v1 holds it now.
        approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED,
                                    incumbent=None)


def test_two_concurrent_approvers_cannot_both_decide(db_url, tmp_path, monkeypatch):
    _people(db_url)
    (v1,) = _versions(db_url, tmp_path, 1)
    with session_scope(db_url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), v1, "champion", PASSED)
        deciders = [get_user(s, "risk"), get_user(s, "risk2")]
    # Widen the race: each decider, having read the request, waits for the other to read it
    # too. With the row locked the second one cannot read it, so the wait times out and the
    # first decides alone; without the lock both would read "pending" and both approve.
    barrier = threading.Barrier(2, timeout=3)
    check = approvals._check_voter

    def slow_check(*args, **kwargs):
        check(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    monkeypatch.setattr(approvals, "_check_voter", slow_check)
    outcomes: dict[str, object] = {}

    def decide(user):
        try:
            with session_scope(db_url) as s:
                outcomes[user.name] = approvals.approve(s, user, req.id, "ok").status
        except BaseException as exc:  # noqa: BLE001 - the assertions below read it
            outcomes[user.name] = exc

    threads = [threading.Thread(target=decide, args=(u,)) for u in deciders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [n for n, o in outcomes.items() if o == "approved"]
    lost = [o for o in outcomes.values() if isinstance(o, ConflictError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert f"#{req.id} is already approved" in str(lost[0])
    assert _actions(db_url, req.id).count("model.promotion.approved") == 1
    with session_scope(db_url) as s:
        assert [v.voter for v in s.exec(select(ApprovalVote)).all()] == won
        assert s.get(Approval, req.id).decided_by == won[0]
        assert audit.verify(s).ok


def test_an_expired_request_cannot_be_decided_and_lists_as_expired(db_url, tmp_path):
    _people(db_url)
    v1, v2 = _versions(db_url, tmp_path, 2)
    start = utcnow()
    with session_scope(db_url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), v1, "champion", PASSED,
                                          now=start)
        assert req.expires_at == start + approvals.DEFAULT_TTL
        short = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED,
                                            expires_at=start + dt.timedelta(hours=1))
    later = start + dt.timedelta(days=8)
    with session_scope(db_url) as s:
        assert [a.id for a in approvals.list_approvals(s, "pending", now=start)] == [req.id,
                                                                                     short.id]
        assert [a.id for a in approvals.list_approvals(s, "pending", now=later)] == []
        assert [a.id for a in approvals.list_approvals(s, "expired", now=later)] == [req.id,
                                                                                     short.id]
    with session_scope(db_url) as s, pytest.raises(ConflictError, match="expired"):
        approvals.approve(s, get_user(s, "risk"), req.id, now=later)
    with session_scope(db_url) as s:
        assert s.get(Approval, req.id).status == "expired"
        assert models.aliases_of(s, v1) == []
    assert _actions(db_url, req.id)[-1] == "model.promotion.expired"
    # An expired request no longer blocks a new one for the same move.
    with session_scope(db_url) as s:
        renewed = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED,
                                              now=start + dt.timedelta(hours=2))
        assert s.get(Approval, short.id).status == "expired" and renewed.id != short.id


def test_a_high_risk_model_needs_two_distinct_approvers(db_url, tmp_path):
    _people(db_url)
    v1, v2 = _versions(db_url, tmp_path, 2)
    with session_scope(db_url) as s:
        models.update_model(s, get_user(s, "risk"), "credit", risk_tier="high")
        req = approvals.request_promotion(s, get_user(s, "ops"), v1, "champion", PASSED)
        assert req.required_approvals == approvals.REQUIRED_APPROVERS["high"] == 2
    with session_scope(db_url) as s:
        assert approvals.approve(s, get_user(s, "risk"), req.id).status == "pending"
        assert models.aliases_of(s, v1) == []
    with session_scope(db_url) as s, pytest.raises(ConflictError, match="already voted"):
        approvals.approve(s, get_user(s, "risk"), req.id)
    with session_scope(db_url) as s, pytest.raises(PermissionDenied, match="four-eyes"):
        # The requester never counts, whatever their role.
        s.get(Approval, req.id).requested_by = "root"
        approvals.approve(s, get_user(s, "root"), req.id)
    with session_scope(db_url) as s:
        done = approvals.approve(s, get_user(s, "risk2"), req.id, "second pair of eyes")
        assert done.status == "approved" and done.decided_by == "risk2"
        assert approvals.to_public(s, done).approved_by == ["risk", "risk2"]
        assert models.resolve(s, "credit@champion").id == v1.id
    # The refused self-approval is audited (committed with the refusal).
    assert _actions(db_url, req.id) == ["model.promotion.requested", "model.promotion.endorsed",
                                        "model.promotion.self_approval_refused",
                                        "model.promotion.approved"]
    # One rejection rejects, even after an approval.
    with session_scope(db_url) as s:
        req2 = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED)
        approvals.approve(s, get_user(s, "risk"), req2.id)
        assert approvals.reject(s, get_user(s, "risk2"), req2.id, "no").status == "rejected"
        assert models.resolve(s, "credit@champion").id == v1.id


def test_a_tier_raised_after_the_request_raises_the_bar(db_url, tmp_path):
    _people(db_url)
    (v1,) = _versions(db_url, tmp_path, 1)
    with session_scope(db_url) as s:
        req = approvals.request_promotion(s, get_user(s, "ops"), v1, "champion", PASSED)
        assert req.required_approvals == 1
        models.update_model(s, get_user(s, "risk2"), "credit", risk_tier="high")
    with session_scope(db_url) as s:
        assert approvals.approve(s, get_user(s, "risk"), req.id).status == "pending"


def test_a_token_issued_by_the_requester_cannot_approve_their_request(db_url, tmp_path):
    _people(db_url)
    v1, v2 = _versions(db_url, tmp_path, 2)
    with session_scope(db_url) as s:
        # root (an admin, so also an operator) requests, then mints a token for risk.
        req = approvals.request_promotion(s, get_user(s, "root"), v1, "champion", PASSED)
        minted = issue_token(s, "risk", "minted", actor="root")
        own = issue_token(s, "risk2", "own", actor="risk2")
    with session_scope(db_url) as s:
        row = authenticate_token(s, minted)
        assert (row.issued_by, s.get(type(get_user(s, "risk")), row.user_id).name) == ("root",
                                                                                        "risk")
        with pytest.raises(PermissionDenied, match="issued by 'root', who requested"):
            approvals.approve(s, get_user(s, "risk"), req.id, token=row)
        with pytest.raises(PermissionDenied, match="does not belong"):
            approvals.approve(s, get_user(s, "risk2"), req.id, token=row)
    with session_scope(db_url) as s:
        done = approvals.approve(s, get_user(s, "risk2"), req.id,
                                 token=authenticate_token(s, own))
        assert done.status == "approved"
    # On a high-risk model, root's vote and a vote through a token root issued are one person's.
    with session_scope(db_url) as s:
        models.update_model(s, get_user(s, "risk"), "credit", risk_tier="high")
        req2 = approvals.request_promotion(s, get_user(s, "ops"), v2, "champion", PASSED)
        approvals.approve(s, get_user(s, "root"), req2.id)
    with session_scope(db_url) as s, pytest.raises(PermissionDenied, match="one person's"):
        approvals.approve(s, get_user(s, "risk"), req2.id, token=authenticate_token(s, minted))
    with session_scope(db_url) as s:
        # A token an uninvolved admin issued is the normal case: risk2's own vote counts.
        assert approvals.approve(s, get_user(s, "risk2"), req2.id,
                                 token=authenticate_token(s, own)).status == "approved"


def test_the_cli_approves_with_the_acting_token_and_refuses_the_requesters(tmp_path):
    """`appliance approve` through the real CLI: a token the requester minted is refused."""
    def cli(args, token):
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env.update(APPLIANCE_HOME=str(tmp_path), APPLIANCE_TOKEN=token)
        return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    url = f"sqlite:///{tmp_path / 'appliance.db'}"
    migrate(url)
    _people(url)
    (v1,) = _versions(url, tmp_path, 1)
    with session_scope(url) as s:
        req = approvals.request_promotion(s, get_user(s, "root"), v1, "champion", PASSED)
        minted = issue_token(s, "risk", "minted", actor="root")
        own = issue_token(s, "risk2", "own", actor="ops")
    dispose_all()
    refused = cli(["approve", str(req.id)], minted)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "issued by 'root'" in refused.stderr
    listed = cli(["approvals", "--json"], own)
    assert listed.returncode == 0, listed.stderr
    (doc,) = json.loads(listed.stdout)
    assert (doc["id"], doc["status"], doc["approved_by"], doc["incumbent_version"]) == (
        req.id, "pending", [], None)
    done = cli(["approve", str(req.id), "--json"], own)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["status"], doc["approved_by"], doc["decided_by"]) == ("approved", ["risk2"],
                                                                       "risk2")
