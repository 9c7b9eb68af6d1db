"""`appliance alerts list|ack|resolve` (appliance/cli/alerts.py) on alerts raised through the
library (`alerts.notice`): the listing by status and model, an operator acknowledging and
resolving (the owner's channels of this home queued), and the refusals."""

from __future__ import annotations

import pytest
from governed_home import Home, document, refused, table, usage_error
from sqlmodel import select

from appliance.cli import alerts as cli
from appliance.errors import ConflictError, InvalidInput, NotFound, PermissionDenied
from appliance.monitor import alerts
from appliance.registry import models
from appliance.store.models import AlertDelivery


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Four open alerts: three of "credit" (owned by ops, with a runbook), one of "toy"."""
    home = Home(tmp_path_factory.mktemp("alerts-cli"), _sqlite_template)
    channels = alerts.Channels(home.cfg.alerts_log, None)
    with home.session() as s:
        models.ensure_model(s, "credit", owner="ops", team="credit")
        models.update_model(s, home.user(s, "ops"), "credit",
                            runbook_url="https://wiki.example/credit")
        models.ensure_model(s, "toy", owner="risk", team="risk")
        home.ids["alerts"] = [
            alerts.notice(s, model=model, deployment=model, rule=rule, severity="warning",
                          message=f"{rule} of {model}", channels=channels).id
            for model, rule in (("credit", "gate_failed"), ("credit", "canary_aborted"),
                                ("toy", "gate_failed"), ("credit", "review_overdue"))]
    return home


def _deliveries(home, alert_id: int, event: str) -> dict[str, str]:
    with home.session() as s:
        rows = s.exec(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id,
                                                  AlertDelivery.event == event)).all()
        return {r.channel: r.target for r in rows}


def test_list_shows_active_alerts_oldest_first(home):
    ids = home.ids["alerts"]
    rows = table(home.invoke("alerts", "list", who="val"))
    assert rows[0] == ["ID", "MODEL", "KIND", "RULE", "SEVERITY", "STATUS", "WINDOW", "COUNT",
                       "OWNER", "TEAM", "CREATED"]
    assert [r[:10] for r in rows[1:]] == [
        [str(ids[0]), "credit", "retrain", "gate_failed", "warning", "open", "<none>",
         "1", "ops", "credit"],
        [str(ids[1]), "credit", "retrain", "canary_aborted", "warning", "open",
         "<none>", "1", "ops", "credit"],
        [str(ids[2]), "toy", "retrain", "gate_failed", "warning", "open", "<none>",
         "1", "risk", "risk"],
        [str(ids[3]), "credit", "retrain", "review_overdue", "warning", "open",
         "<none>", "1", "ops", "credit"]]
    docs = document(home.invoke("alerts", "list", "--model", "toy", "--json"), cli.list_)
    assert [(d["id"], d["model"], d["status"], d["message"]) for d in docs] == [
        (ids[2], "toy", "open", "gate_failed of toy")]
    credit = document(home.invoke("alerts", "list", "--model", "credit", "--json"), cli.list_)
    assert {d["runbook_url"] for d in credit} == {"https://wiki.example/credit"}
    res = home.invoke("alerts", "list", "--model", "toy", "--json=id,owner")
    assert res.exit_code == 0 and res.stdout.split() == [
        "[", "{", '"id":', f"{ids[2]},", '"owner":', '"risk"', "}", "]"]


def test_ack_then_resolve_an_alert(home):
    ids = home.ids["alerts"]
    first = ids[0]
    res = home.invoke("alerts", "ack", first, who="ops")
    assert res.exit_code == 0 and res.stdout == ""
    assert res.stderr == f"alert #{first} acknowledged by ops\n"
    refused(home.invoke("alerts", "ack", first, who="ops"), ConflictError,
            f"alert #{first} is acknowledged, not open")
    active = document(home.invoke("alerts", "list", "--status", "acknowledged", "--json"),
                      cli.list_)
    assert [(d["id"], d["acknowledged_by"]) for d in active] == [(first, "ops")]
    res = home.invoke("alerts", "resolve", first, "--comment", "retrained by hand", who="ops")
    assert res.exit_code == 0 and res.stderr == f"alert #{first} resolved by ops\n"
    assert res.stdout == ""
    # The owner hears of it through this home's channels.
    assert _deliveries(home, first, "resolved") == {"log": str(home.root / "alerts.log")}
    refused(home.invoke("alerts", "resolve", first, who="ops"), ConflictError,
            f"alert #{first} is already resolved (by ops at ")
    refused(home.invoke("alerts", "ack", first, who="ops"), ConflictError,
            f"alert #{first} is resolved, not open")
    done = document(home.invoke("alerts", "list", "--status", "resolved", "--json"), cli.list_)
    assert [(d["id"], d["resolved_by"], d["resolution"]) for d in done] == [
        (first, "ops", "retrained by hand")]
    assert first not in [d["id"] for d in document(home.invoke("alerts", "list", "--json"),
                                                   cli.list_)]
    assert len(document(home.invoke("alerts", "list", "--status", "all", "--json"),
                        cli.list_)) == 4


def test_ack_and_resolve_print_the_alert_as_json(home):
    ids = home.ids["alerts"]
    second = ids[1]
    doc = document(home.invoke("alerts", "ack", second, "--json", who="ops"), cli.ack)
    assert (doc["id"], doc["status"], doc["acknowledged_by"]) == (second, "acknowledged", "ops")
    # An open alert may be resolved without being acknowledged; a webhook is told as well.
    third = ids[2]
    doc = document(home.invoke("alerts", "resolve", third, "--json", who="admin",
                               APPLIANCE_ALERT_WEBHOOK="http://127.0.0.1:9/hook"), cli.resolve)
    assert (doc["id"], doc["status"], doc["resolved_by"]) == (third, "resolved", "admin")
    assert doc["resolution"] == "resolved by admin"
    assert _deliveries(home, third, "resolved") == {
        "log": str(home.root / "alerts.log"), "webhook": "http://127.0.0.1:9/hook"}


@pytest.mark.parametrize(("args", "kind", "needle"), [
    (["ack", "999"], NotFound, "no alert #999; list them with `appliance alerts list`"),
    (["resolve", "999"], NotFound, "no alert #999"),
    (["resolve", "@LAST@", "--comment", "x" * 2001], InvalidInput,
     "the resolution comment is longer than 2000 characters"),
    (["list", "--status", "closed"], InvalidInput,
     "unknown alert status 'closed'; use active, open, acknowledged, resolved or all"),
    (["ack", "@LAST@"], PermissionDenied, "user 'val' has role 'viewer'; 'operate' needs"),
], ids=["ack-unknown", "resolve-unknown", "long-comment", "bad-status", "viewer"])
def test_refusals_name_what_was_wrong(home, args, kind, needle):
    args = [str(home.ids["alerts"][3]) if a == "@LAST@" else a for a in args]
    refused(home.invoke("alerts", *args, who="val" if kind is PermissionDenied else "ops"),
            kind, needle)


def test_an_alert_number_must_be_a_number(home):
    usage_error(home.invoke("alerts", "ack", "first"), "Invalid value for 'alert_id'")
