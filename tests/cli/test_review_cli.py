"""`appliance review MODEL --notes TEXT` (appliance/cli/review.py): an approver records a
model's periodic review, the next one due a risk tier's interval later; everyone else, and
empty or overlong notes, are refused."""

from __future__ import annotations

import datetime as dt

import pytest
from governed_home import Home, document, refused, usage_error

from appliance.cli import review as cli
from appliance.errors import InvalidInput, NotFound, PermissionDenied
from appliance.governance import approvals, reviews
from appliance.registry import models


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Model "credit" (high risk) with version 1 champion; "toy" (medium risk) with no version."""
    home = Home(tmp_path_factory.mktemp("review-cli"), _sqlite_template)
    with home.session() as s:
        _, mv = home.register(s, "credit", risk_tier="high")
        request = approvals.request_promotion(s, home.user(s, "ops"), mv, "champion",
                                              approvals.gate({"accuracy": 0.9, "auc": 0.9}))
        approvals.approve(s, home.user(s, "risk"), request.id)
        approvals.approve(s, home.user(s, "risk2"), request.id)
        models.ensure_model(s, "toy", owner="ops", team="credit")
    return home


def test_an_approver_records_a_review(home):
    res = home.invoke("review", "credit", "--notes", "drift within bounds; fairness ok",
                      who="risk")
    assert res.exit_code == 0 and res.stdout == "", res.output
    with home.session() as s:
        (done,) = reviews.history(s, "credit")
    assert (done.reviewer, done.version, done.notes) == (
        "risk", 1, "drift within bounds; fairness ok")
    # High risk: the next review is due 90 days on.
    assert done.next_due_at - done.reviewed_at == dt.timedelta(days=90)
    assert res.stderr == (f"review #{done.id} of credit recorded; next due "
                          f"{done.next_due_at:%Y-%m-%d}\n")


def test_the_review_as_json(home):
    doc = document(home.invoke("review", "toy", "--notes", "  unused so far  ", "--json",
                               who="risk2"), cli.review)
    assert (doc["model"], doc["reviewer"], doc["notes"], doc["version"]) == (
        "toy", "risk2", "unused so far", None)
    due = dt.datetime.fromisoformat(doc["next_due_at"])
    assert due - dt.datetime.fromisoformat(doc["reviewed_at"]) == dt.timedelta(days=180)
    res = home.invoke("review", "toy", "--notes", "again", "--json=model,reviewer",
                      who="admin")
    assert res.exit_code == 0 and res.stdout.split() == [
        "{", '"model":', '"toy",', '"reviewer":', '"admin"', "}"]


@pytest.mark.parametrize(("who", "args", "kind", "needle"), [
    ("ops", ["credit"], PermissionDenied, "user 'ops' has role 'operator'; 'approve' needs"),
    ("val", ["credit"], PermissionDenied, "user 'val' has role 'viewer'; 'approve' needs"),
    (None, ["credit"], PermissionDenied,
     "no API token: 'approve' needs the token of a user with role admin, approver"),
    ("risk", ["ghost"], NotFound, "no model named 'ghost'"),
    ("risk", ["credit", "--notes", "   "], InvalidInput,
     "a review needs --notes saying what was reviewed and found"),
    ("risk", ["credit", "--notes", "x" * 4001], InvalidInput,
     "review notes are 4001 characters; at most 4000"),
], ids=["operator", "viewer", "no-token", "unknown-model", "blank-notes", "long-notes"])
def test_refusals(home, who, args, kind, needle):
    if "--notes" not in args:
        args = [*args, "--notes", "looked at it"]
    before = _reviews(home)
    refused(home.invoke("review", *args, who=who), kind, needle)
    assert _reviews(home) == before


def _reviews(home) -> int:
    with home.session() as s:
        return len(reviews.history(s, "credit"))


def test_notes_are_required(home):
    usage_error(home.invoke("review", "credit", who="risk"), "Missing option '--notes'")
