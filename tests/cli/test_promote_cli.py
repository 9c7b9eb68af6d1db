"""`appliance promote|approve|reject|approvals|rollback` (appliance/cli/promote.py).

Promotion requests are made through the library (`approvals.request_promotion`, as `promote`
does once its gate passed: the gate scores real bundles, so `promote` is tested here up to its
refusals before the gate). Approvers decide them through the CLI: one approver or two by risk
tier, the four-eyes rule including the issuer of the approver's token, rejection, expiry; and
`rollback` of a model that is not deployed moves its champion alias back without Ray.
"""

from __future__ import annotations

import datetime as dt

import pytest
from governed_home import Home, document, refused, table, usage_error

from appliance.cli import promote as cli
from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.governance import approvals
from appliance.registry import models
from appliance.store.models import utcnow

GATE = approvals.gate({"accuracy": 0.9, "auc": 0.9})


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Requests by ops unless said otherwise; `home.ids` names them:

    - "credit": version 1 champion (approved by risk); "credit-2" asks champion for version 2,
      "credit-3" challenger for version 3;
    - "hi" (high risk, two approvers): "hi-1" asks champion for version 1;
    - "mine": "mine-1" asks champion for version 1, requested by admin;
    - "old": "old-1", requested ten days ago, has expired;
    - "solo": version 1 champion and nothing before it; "toy": no version.
    """
    home = Home(tmp_path_factory.mktemp("promote-cli"), _sqlite_template)
    with home.session() as s:
        ops, risk, admin = (home.user(s, n) for n in ("ops", "risk", "admin"))
        for seed, name in ((1, "credit"), (2, "credit"), (3, "credit"), (4, "hi"), (5, "mine"),
                           (6, "old"), (7, "solo")):
            _, mv = home.register(s, name, seed=seed,
                                  risk_tier="high" if name == "hi" else None)
            key = f"{name}-{mv.version}"
            if key in ("credit-1", "solo-1"):
                approvals.approve(s, risk, approvals.request_promotion(
                    s, ops, mv, "champion", GATE).id)
            elif key == "old-1":
                home.ids[key] = approvals.request_promotion(
                    s, ops, mv, "champion", GATE, now=utcnow() - dt.timedelta(days=10)).id
            else:
                home.ids[key] = approvals.request_promotion(
                    s, admin if name == "mine" else ops, mv,
                    "challenger" if key == "credit-3" else "champion", GATE).id
        models.ensure_model(s, "toy", owner="ops", team="credit")
    return home


def test_approvals_lists_pending_requests_and_filters_by_status(home):
    rows = table(home.invoke("approvals", who="val"))
    assert rows[0] == ["ID", "MODEL", "VERSION", "ALIAS", "STATUS", "APPROVALS", "REQUESTED_BY",
                       "EXPIRES", "AGE"]
    assert [r[:7] for r in rows[1:]] == [
        [str(home.ids["credit-2"]), "credit", "2", "champion", "pending", "0/1", "ops"],
        [str(home.ids["credit-3"]), "credit", "3", "challenger", "pending", "0/1", "ops"],
        [str(home.ids["hi-1"]), "hi", "1", "champion", "pending", "0/2", "ops"],
        [str(home.ids["mine-1"]), "mine", "1", "champion", "pending", "0/1", "admin"]]
    expired = document(home.invoke("approvals", "--status", "expired", "--json"),
                       cli.approvals_list)
    assert [(d["id"], d["model"], d["status"]) for d in expired] == [
        (home.ids["old-1"], "old", "expired")]
    everything = document(home.invoke("approvals", "--status", "all", "--json"),
                          cli.approvals_list)
    approved = [(d["model"], d["version"], d["approved_by"], d["decided_by"])
                for d in everything if d["status"] == "approved"]
    assert approved[:2] == [("credit", 1, ["risk"], "risk"), ("solo", 1, ["risk"], "risk")]
    res = home.invoke("approvals", "--json=id,required_approvals")
    assert res.exit_code == 0 and '"required_approvals": 2' in res.stdout
    assert '"model"' not in res.stdout
    refused(home.invoke("approvals", "--status", "open"), InvalidInput,
            "unknown approval status 'open'; use all or ")


def test_approve_moves_the_alias_and_rollback_moves_it_back(home):
    request = home.ids["credit-2"]
    res = home.invoke("approve", request, "--comment", "better on the holdout", who="risk")
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert res.stderr == "credit@champion -> version 2\n"
    with home.session() as s:
        assert models.resolve(s, "credit@champion").version == 2
    refused(home.invoke("approve", request, who="risk2"), ConflictError,
            f"approval request #{request} is already approved")
    # Not deployed: the alias moves back and nothing is served, so no Ray is needed.
    res = home.invoke("rollback", "credit", who="risk")
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert res.stderr.endswith("credit@champion -> version 1 (was 2)\n")
    doc = document(home.invoke("rollback", "credit", "--json", who="risk"), cli.rollback)
    assert doc == {"model": "credit", "from_version": 1, "to_version": 2,
                   "canary_removed": False, "retrain_cancelled": None}
    doc = document(home.invoke("rollback", "credit", "--to-version", "1", "--json",
                               who="risk2"), cli.rollback)
    assert (doc["from_version"], doc["to_version"]) == (2, 1)
    with home.session() as s:
        assert models.resolve(s, "credit@champion").version == 1


@pytest.mark.parametrize(("args", "kind", "needle"), [
    (["credit", "--to-version", "3"], NotFound,
     "credit:3 never held 'champion'; promote it instead"),
    (["credit", "--to-version", "9"], NotFound, "model 'credit' has no version 9"),
    (["solo"], NotFound, "model 'solo' has no earlier champion to roll back to"),
    (["solo", "--to-version", "1"], ConflictError, "solo:1 is already the champion"),
    (["toy"], NotFound, "model 'toy' has no 'champion' alias"),
    (["../x"], InvalidInput, "model name '../x'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_rollback_refuses_what_it_cannot_restore(home, args, kind, needle):
    refused(home.invoke("rollback", *args, who="risk"), kind, needle)


def test_a_high_risk_model_waits_for_a_second_approver(home):
    request = home.ids["hi-1"]
    res = home.invoke("approve", request, who="risk")
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert res.stderr == (f"approval request #{request}: 1 of 2 approvers; it waits for "
                          "another\n")
    refused(home.invoke("approve", request, who="risk"), ConflictError,
            f"user 'risk' already voted on approval request #{request}")
    doc = document(home.invoke("approve", request, "--json", who="risk2"), cli.approve)
    assert (doc["status"], doc["approved_by"], doc["decided_by"]) == (
        "approved", ["risk", "risk2"], "risk2")
    assert (doc["model"], doc["version"], doc["alias"], doc["required_approvals"]) == (
        "hi", 1, "champion", 2)


def test_reject_closes_a_request_and_the_alias_stays(home):
    request = home.ids["credit-3"]
    res = home.invoke("reject", request, "--comment", "not yet", who="risk")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", ""), res.output
    rejected = document(home.invoke("approvals", "--status", "rejected", "--json"),
                        cli.approvals_list)
    assert [(d["id"], d["decided_by"], d["approved_by"]) for d in rejected] == [
        (request, "risk", [])]
    refused(home.invoke("reject", request, who="risk2"), ConflictError,
            f"approval request #{request} is already rejected")
    refused(home.invoke("models", "show", "credit@challenger"), NotFound,
            "model 'credit' has no 'challenger' alias")


def test_nobody_decides_their_own_request(home):
    request = home.ids["mine-1"]
    for command in ("approve", "reject"):
        refused(home.invoke(command, request, who="admin"), PermissionDenied,
                f"user 'admin' requested #{request} and may not decide it (four-eyes rule)")
    # risk's token was issued by admin, the requester: the token the CLI acts with counts.
    refused(home.invoke("approve", request, who="risk"), PermissionDenied,
            f"the token 'risk' acts with was issued by 'admin', who requested #{request}")
    pending = document(home.invoke("approvals", "--json"), cli.approvals_list)
    assert [(d["status"], d["approved_by"]) for d in pending if d["id"] == request] == [
        ("pending", [])]


def test_an_expired_request_cannot_be_approved(home):
    request = home.ids["old-1"]
    refused(home.invoke("approve", request, who="risk"), ConflictError,
            f"approval request #{request} expired at ")
    refused(home.invoke("approve", 999, who="risk"), NotFound, "no approval request #999")


@pytest.mark.parametrize(("args", "kind", "needle"), [
    (["credit", "9"], NotFound, "model 'credit' has no version 9"),
    (["ghost", "1"], NotFound, "no model named 'ghost'"),
    (["solo", "1"], ConflictError, "solo:1 already holds the 'champion' alias"),
    (["Bad/Name", "1"], InvalidInput, "model name 'Bad/Name' is not valid"),
    (["credit", "2", "--to", "top dog"], InvalidInput, "alias 'top dog' is not valid"),
    (["credit", "2", "--expires-in", "2w"], InvalidInput,
     "--expires-in '2w' must be a positive duration (90s, 30m, 12h, 7d)"),
    (["credit", "2", "--expires-in", "0h"], InvalidInput, "--expires-in '0h' must be a positive"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_promote_refuses_before_it_runs_the_gate(home, args, kind, needle):
    refused(home.invoke("promote", *args, who="ops"), kind, needle)


def test_numbers_must_be_numbers(home):
    usage_error(home.invoke("promote", "credit", "two"), "Invalid value for 'version'")
    usage_error(home.invoke("approve", "first"), "Invalid value for 'approval_id'")
    usage_error(home.invoke("rollback", "credit", "--to-version", "last"),
                "Invalid value for '--to-version'")
