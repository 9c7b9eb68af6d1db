"""The monitor pass (`appliance.monitor.service.run_once`) over the tests' own world: traffic
logged through the real prediction log, labels through the real feedback writer, a real store
(SQLite and PostgreSQL where the store does the work); the monitor's clock is moved by `now=`."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import multiprocessing
import time

import loop_world as lw
import numpy as np
import pyarrow.compute as pc
import pytest
from sqlmodel import func, select

from appliance.monitor import alerts, retrain, service, windows
from appliance.monitor.feedback import write_feedback
from appliance.monitor.rules import AlertRule
from appliance.registry import models
from appliance.store import session_scope
from appliance.store.leases import try_acquire
from appliance.store.models import (
    Alert,
    AlertDelivery,
    AuditEvent,
    DriftReport,
    FeedbackBatch,
    PredictionWindow,
    RequestIndex,
    RetrainRequest,
    WindowVersion,
)


def minutes(n: float) -> dt.datetime:
    return lw.T0 + dt.timedelta(minutes=n)


def world(tmp_path, db_url: str, **policy) -> lw.World:
    return lw.make_world(tmp_path, db_url=db_url, policy=policy)


def once(w: lw.World, now: dt.datetime) -> service.DeploymentPass:
    """One pass over the world's deployment (notifications delivered too)."""
    (result,) = service.run_once(w.cfg, w.deployment, now=now)
    assert result.error is None and result.skipped is None
    return result


def window_row(w: lw.World, index: int) -> PredictionWindow:
    with session_scope(w.cfg.db_url) as s:
        return s.exec(select(PredictionWindow).where(PredictionWindow.deployment == w.deployment,
                                                     PredictionWindow.index == index)).one()


def slices(w: lw.World, index: int) -> list[tuple[int, bool, int, str]]:
    with session_scope(w.cfg.db_url) as s:
        rows = s.exec(select(WindowVersion).join(PredictionWindow).where(
            PredictionWindow.deployment == w.deployment, PredictionWindow.index == index)
            .order_by(WindowVersion.version, WindowVersion.shadow)).all()
        return [(r.version, r.shadow, r.rows, r.drift_status) for r in rows]


def public_alerts(w: lw.World, **kwargs) -> list[alerts.AlertPublic]:
    with session_scope(w.cfg.db_url) as s:
        return alerts.list_alerts(s, status="all", **kwargs)


def requests_of(w: lw.World) -> list[RetrainRequest]:
    with session_scope(w.cfg.db_url) as s:
        return list(s.exec(select(RetrainRequest).order_by(RetrainRequest.id)).all())


def test_drift_is_detected_on_a_shifted_window_and_not_on_clean_ones(db_url, tmp_path):
    w = world(tmp_path, db_url)
    verdicts = []
    for i, shift in enumerate([0.0, 1.0, 0.0]):
        w.serve(f"w{i}", 20, 100, seed=10 + i, shift=shift)
        result = once(w, minutes(10 * (i + 1)))
        (summary,) = result.closed
        assert (summary.window, summary.rows, summary.closed_by) == (i + 1, 2000, "rows")
        (v,) = summary.versions
        verdicts.append((v["drift"], v["drifted_share"] >= 0.5))
    assert verdicts == [("ok", False), ("drifted", True), ("ok", False)]
    with session_scope(db_url) as s:
        reports = s.exec(select(DriftReport).order_by(DriftReport.id)).all()
        assert [r.dataset_drifted for r in reports] == [False, True, False]
        assert {"x1", "x2", "c"} <= set(reports[1].drifted_features)
        assert reports[1].report["rows"]["current"] == 2000
    (alert,) = public_alerts(w)
    assert (alert.kind, alert.rule, alert.window, alert.status) == ("drift", "drift", 2,
                                                                    "resolved")
    assert "window 2" in alert.message and "drifted: " in alert.message
    assert (alert.resolved_by, alert.resolution) == ("monitor", "condition cleared in window 3")


def test_a_window_below_min_drift_rows_is_insufficient_never_drift(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=300, window_seconds=None)
    w.serve("small", 3, 100, seed=1, shift=2.0)
    (summary,) = once(w, minutes(5)).closed
    assert summary.versions[0]["drift"] == "insufficient"
    assert summary.versions[0]["drifted_share"] is None
    assert public_alerts(w) == []
    with session_scope(sqlite_url) as s:
        assert s.exec(select(func.count()).select_from(DriftReport)).one() == 0
    # The same rows with a lower minimum are judged, and drifted.
    w.cfg = dataclasses.replace(w.cfg, policy={**w.cfg.policy, "min_drift_rows": 300})
    w.serve("again", 3, 100, seed=1, shift=2.0)
    (summary,) = once(w, minutes(10)).closed
    assert summary.versions[0]["drift"] == "drifted"
    assert [a.kind for a in public_alerts(w)] == ["drift"]


def test_a_window_spanning_two_versions_judges_each_against_its_own_profile(db_url, tmp_path):
    w = world(tmp_path, db_url)
    v2 = lw.add_version(w, shift=1.0)  # trained where the inputs have moved to
    w.serve("old", 10, 100, seed=1, version=1)
    w.serve("new", 10, 100, seed=2, version=2, shift=1.0)
    (summary,) = once(w, minutes(10)).closed
    assert window_row(w, 1).versions == ["1", "2"]
    assert slices(w, 1) == [(1, False, 1000, "ok"), (2, False, 1000, "ok")]
    # Both versions now see shifted inputs: only v1, whose profile is unshifted, drifted.
    w.serve("old2", 10, 100, seed=3, version=1, shift=1.0)
    w.serve("new2", 10, 100, seed=4, version=2, shift=1.0)
    once(w, minutes(20))
    assert slices(w, 2) == [(1, False, 1000, "drifted"), (2, False, 1000, "ok")]
    with session_scope(db_url) as s:
        reports = s.exec(select(DriftReport).join(PredictionWindow).where(
            PredictionWindow.index == 2).order_by(DriftReport.version_id)).all()
        assert [(r.version_id, r.rows, r.dataset_drifted) for r in reports] == [
            (w.version.id, 1000, True), (v2.id, 1000, False)]


def test_the_label_free_estimate_tracks_realised_accuracy_under_a_covariate_shift(
    sqlite_url, tmp_path
):
    w = world(tmp_path, sqlite_url)
    truth = w.serve("narrow", 20, 100, seed=5, spread=0.5)  # inputs crowd the boundary
    closing = once(w, minutes(10))
    (summary,) = closing.closed
    estimated = summary.versions[0]["estimated"]
    assert estimated["rows"] == 2000 and estimated["calibration"] in ("identity", "isotonic")
    # The estimate saw the drop before any label: an estimated-accuracy alert.
    assert [(a.kind, a.window) for a in public_alerts(w)
            if a.kind == "estimated_accuracy"] == [("estimated_accuracy", 1)]
    w.label(truth)
    (summary,) = once(w, minutes(20)).relabelled
    (v,) = summary.versions
    assert v["labelled_rows"] == 2000
    realised = v["metrics"]["accuracy"]
    assert realised < w.version.metrics["accuracy"] - 0.05
    assert v["estimated"]["accuracy"] == estimated["accuracy"]  # reported beside it
    assert abs(v["estimated"]["accuracy"] - realised) < 0.03
    assert summary.accuracy == realised and summary.labelled_rows == 2000


def test_labels_arriving_two_windows_late_raise_the_accuracy_alert_naming_their_window(
    db_url, tmp_path
):
    w = world(tmp_path, db_url)
    first = w.serve("w1", 20, 100, seed=1, concept=0.6)  # the rule changed: accuracy falls
    result = once(w, minutes(10))
    assert result.alerts_raised == []  # no drift in the inputs, no labels yet
    w.serve("w2", 20, 100, seed=2)
    assert once(w, minutes(20)).alerts_raised == []
    w.serve("w3", 20, 100, seed=3)
    w.label(first)  # the labels of window 1 arrive during window 3
    result = once(w, minutes(30))
    assert [s.window for s in result.closed] == [3]
    assert [s.window for s in result.relabelled] == [1]
    (alert_id,) = result.alerts_raised
    (alert,) = public_alerts(w)
    assert (alert.id, alert.kind, alert.rule, alert.severity) == (alert_id, "accuracy",
                                                                  "accuracy", "critical")
    assert (alert.window, alert.last_window, alert.version) == (1, 1, 1)
    assert alert.created_at == minutes(30)
    assert alert.value == result.relabelled[0].accuracy < alert.threshold
    assert "in window 1 of scorer" in alert.message and "2000 labelled rows" in alert.message
    # It triggers a retrain on the rows from window 1 on.
    (req,) = requests_of(w)
    assert (req.id, req.trigger, req.alert_id, req.since_window) == (
        result.retrain_requested, "accuracy", alert_id, 1)


def test_a_consecutive_accuracy_rule_fires_when_the_labels_completing_the_run_land_last(
    sqlite_url, tmp_path
):
    rule = AlertRule("accuracy-twice", metric="accuracy", drop=0.05, min_rows=200,
                     consecutive=2, severity="critical")
    w = lw.make_world(tmp_path, db_url=sqlite_url, alert_rules=(rule,),
                      policy={"window_rows": 400, "window_seconds": None})
    clean = w.serve("w1", 4, 100, seed=1)
    second = w.serve("w2", 4, 100, seed=2, concept=0.7)
    third = w.serve("w3", 4, 100, seed=3, concept=0.7)
    assert [s.window for s in once(w, minutes(10)).closed] == [1, 2, 3]
    w.label(clean + third)
    assert once(w, minutes(20)).alerts_raised == []  # window 2's labels are still out
    w.label(second)
    result = once(w, minutes(30))
    # Windows 2 and 3 both breach: two in a row, known once window 2's labels are in.
    assert [v.versions[0]["metrics"]["accuracy"] < 0.75 for v in result.relabelled] == [True]
    assert len(result.alerts_raised) == 1
    assert [(a.rule, a.kind) for a in public_alerts(w)] == [("accuracy-twice", "accuracy")]


def test_an_alert_is_deduplicated_resolved_by_the_monitor_and_then_cooled_down(
    db_url, tmp_path
):
    w = world(tmp_path, db_url)
    with session_scope(db_url) as s:
        models.update_model(s, w.ops, w.model, runbook_url="https://runbooks.example/scorer")

    def window(i: int, shift: float, at: dt.datetime) -> service.DeploymentPass:
        w.serve(f"w{i}", 20, 100, seed=i, shift=shift)
        return once(w, at)

    def outbox(alert_id: int) -> list[str]:
        with session_scope(db_url) as s:
            return sorted(d.event for d in s.exec(select(AlertDelivery).where(
                AlertDelivery.alert_id == alert_id)).all())

    (first,) = window(1, 1.0, minutes(10)).alerts_raised
    assert outbox(first) == ["raised"]
    again = window(2, 1.0, minutes(20))
    assert again.alerts_raised == [] and again.alerts_resolved == []
    (alert,) = public_alerts(w)
    assert (alert.id, alert.occurrences, alert.window, alert.last_window, alert.status) == (
        first, 2, 1, 2, "open")
    assert alert.last_seen_at == minutes(20)
    assert outbox(first) == ["raised"]  # no new delivery for an update
    # Every alert carries its model's owner, team and runbook, here and in what is sent.
    assert (alert.owner, alert.team, alert.runbook_url) == (
        "ops", "risk-models", "https://runbooks.example/scorer")
    sent = [json.loads(line) for line in w.cfg.alerts_log.read_text().splitlines()]
    assert [(d["id"], d["event"], d["owner"], d["team"], d["runbook_url"]) for d in sent] == [
        (first, "raised", "ops", "risk-models", "https://runbooks.example/scorer")]

    cleared = window(3, 0.0, minutes(30))
    assert cleared.alerts_resolved == [first]
    (alert,) = public_alerts(w)
    assert (alert.status, alert.resolved_by, alert.resolved_at) == ("resolved", "monitor",
                                                                    minutes(30))
    assert outbox(first) == ["raised", "resolved"]
    # Within the rule's cooldown (an hour by default) a new breach raises nothing ...
    quiet = window(4, 1.0, minutes(40))
    assert quiet.alerts_raised == [] and len(public_alerts(w)) == 1
    # ... and after it, it raises a new alert.
    (second,) = window(5, 1.0, minutes(30 + 61)).alerts_raised
    assert second != first
    assert [(a.id, a.status, a.window) for a in public_alerts(w)] == [
        (first, "resolved", 1), (second, "open", 5)]


def test_a_retrain_request_is_written_with_its_alert_and_only_one_is_active_per_model(
    db_url, tmp_path
):
    w = world(tmp_path, db_url, cooldown_seconds=0)
    first = w.serve("w1", 20, 100, seed=1, shift=1.0, concept=0.6)
    closing = once(w, minutes(10))
    (drift_alert,) = closing.alerts_raised
    (req,) = requests_of(w)
    assert closing.retrain_requested == req.id
    assert (req.model_name, req.deployment, req.trigger, req.alert_id, req.since_window) == (
        "scorer", "scorer", "drift", drift_alert, 1)
    assert (req.state, req.active_key, req.created_by, req.champion_version_id) == (
        "waiting_for_labels", "scorer", "monitor", w.version.id)
    assert req.created_at == minutes(10)
    with session_scope(db_url) as s:
        (event,) = s.exec(select(AuditEvent).where(AuditEvent.action == "retrain.requested"))
        assert event.details["alert"] == drift_alert and event.details["trigger"] == "drift"
    # An accuracy alert (a trigger too) while that request is in flight: no second request.
    w.label(first)
    labelled = once(w, minutes(20))
    assert len(labelled.alerts_raised) == 1 and labelled.retrain_requested is None
    assert [r.id for r in requests_of(w)] == [req.id]
    with session_scope(db_url) as s:
        assert retrain.labelled_rows_since(s, w.deployment, 1) == 2000


@pytest.mark.parametrize(("policy", "requested"), [
    ({}, True),
    ({"retrain": False}, False),
    ({"triggers": ["accuracy"]}, False),
    ({"triggers": ["estimated_accuracy", "drift"]}, True),
])
def test_a_retrain_request_follows_the_policy_s_switch_and_triggers(
    sqlite_url, tmp_path, policy, requested
):
    w = world(tmp_path, sqlite_url, **policy)
    w.serve("w1", 20, 100, seed=1, shift=1.0)
    result = once(w, minutes(10))
    assert len(result.alerts_raised) == 1  # the drift alert is raised either way
    assert (len(requests_of(w)) == 1) is requested
    assert (result.retrain_requested is not None) is requested


@pytest.mark.parametrize(("cooldown", "requests"), [(6 * 3600, 1), (0, 2)])
def test_no_retrain_request_within_the_policy_s_cooldown(sqlite_url, tmp_path, cooldown,
                                                         requests):
    w = world(tmp_path, sqlite_url, cooldown_seconds=cooldown)
    first = w.serve("w1", 20, 100, seed=1, shift=1.0, concept=0.6)
    once(w, minutes(10))
    (req,) = requests_of(w)
    with session_scope(sqlite_url) as s:
        retrain.finish(s, s.get(RetrainRequest, req.id), "gate_failed", "monitor", "no better")
    w.label(first)
    result = once(w, minutes(70))  # an accuracy alert an hour later
    assert len(result.alerts_raised) == 1
    assert len(requests_of(w)) == requests


def test_the_schedule_opens_a_request_for_the_windows_of_the_last_period(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=200, window_seconds=None,
              triggers=["schedule"], schedule_seconds=3600, cooldown_seconds=0)
    w.serve("w1", 2, 100, seed=1, at=minutes(0))
    assert once(w, minutes(30)).retrain_requested is None  # the deployment started at T0
    w.serve("w2", 2, 100, seed=2, at=minutes(40))
    result = once(w, minutes(65))
    (req,) = requests_of(w)
    assert (result.retrain_requested, req.trigger, req.alert_id, req.since_window) == (
        req.id, "schedule", None, 2)
    with session_scope(sqlite_url) as s:
        retrain.finish(s, s.get(RetrainRequest, req.id), "promoted", "monitor")
    w.serve("w3", 2, 100, seed=3, at=minutes(100))
    # The next period counts from the last request.
    assert once(w, minutes(65 + 59)).retrain_requested is None
    assert once(w, minutes(65 + 61)).retrain_requested is not None
    assert [(r.trigger, r.since_window) for r in requests_of(w)] == [("schedule", 2),
                                                                      ("schedule", 3)]


def test_an_unreadable_pending_file_is_set_aside_and_every_deployment_goes_on(
    sqlite_url, tmp_path
):
    w = world(tmp_path, sqlite_url, window_rows=200, window_seconds=None)
    b = lw.add_deployment(w, "scorer-b")
    w.serve("a", 2, 100, seed=1)
    b.serve("b", 1, 100, seed=2)
    pending = b.cfg.predictions_dir / "scorer-b" / "pending"
    bad = pending / f"{int(minutes(0.5).timestamp() * 1e9):020d}-broken.parquet"
    bad.write_bytes(b"PAR1 truncated by a full disk")
    b.serve("b2", 1, 100, seed=3)
    results = {r.deployment: r for r in service.run_once(w.cfg, now=minutes(10))}
    assert results["scorer-b"].quarantined == [
        str(w.cfg.predictions_dir / "scorer-b" / "corrupt" / bad.name)]
    assert results["scorer-b"].error is None
    assert [s.window for s in results["scorer-b"].closed] == [1]
    assert [s.window for s in results["scorer"].closed] == [1]
    assert lw.window_requests(sqlite_url, "scorer-b") == {1: ["b-r000", "b2-r000"]}


def test_a_failing_deployment_is_reported_and_the_others_are_still_monitored(
    db_url, tmp_path
):
    w = world(tmp_path, db_url, window_rows=200, window_seconds=None)
    b = lw.add_deployment(w, "scorer-b")
    truth_a, truth_b = w.serve("a", 2, 100, seed=1), b.serve("b", 2, 100, seed=2)
    service.run_once(w.cfg, now=minutes(10))
    # Window 1 of scorer-b is damaged on disk; then labels arrive for both deployments.
    window_b = window_row(b, 1)
    with open(window_b.path, "r+b") as fh:
        fh.truncate(100)
    w.label(truth_a)
    b.label(truth_b)
    more_a = w.serve("a2", 2, 100, seed=3)
    b.serve("b2", 2, 100, seed=4)
    results = {r.deployment: r for r in service.run_once(w.cfg, now=minutes(20))}
    assert results["scorer-b"].error is not None
    assert "window-000001.parquet" in results["scorer-b"].error
    ok = results["scorer"]
    assert ok.error is None
    assert [s.window for s in ok.closed] == [2]
    assert [(s.window, s.labelled_rows) for s in ok.relabelled] == [(1, 200)]
    # The owner hears of the broken window; its deployment goes on with the next windows, and
    # so does the other.
    with session_scope(w.cfg.db_url) as s:
        (notice,) = s.exec(select(Alert).where(Alert.rule == "monitor")).all()
    assert notice.deployment == "scorer-b" and "window 1" in notice.message
    w.label(more_a)
    results = {r.deployment: r for r in service.run_once(w.cfg, now=minutes(30))}
    assert [(s.window, s.labelled_rows) for s in results["scorer"].relabelled] == [(2, 200)]


def test_a_deployment_whose_lease_another_monitor_holds_is_skipped(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=200, window_seconds=None)
    w.serve("a", 2, 100, seed=1)
    with session_scope(sqlite_url) as s:
        assert try_acquire(s, "monitor:scorer", "elsewhere:1:1", ttl_s=600)
    (result,) = service.run_once(w.cfg, now=minutes(10))
    assert result.skipped and result.closed == []
    with session_scope(sqlite_url) as s:
        assert windows.pending_rows(s, w.cfg.predictions_dir, w.deployment) == 200
    # Its own lease is no obstacle: the holder that took it goes on.
    (result,) = service.run_once(w.cfg, now=minutes(10), holder="elsewhere:1:1")
    assert result.skipped is None and [s.window for s in result.closed] == [1]


def test_two_monitor_processes_never_close_a_window_twice_or_lose_a_row(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=300, window_seconds=None)
    stop = tmp_path / "stop"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=spawn) as pool:
        jobs = [pool.submit(lw.monitor_until, w.cfg, str(stop), str(r), minutes(10))
                for r in ready]
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            for job in (j for j in jobs if j.done()):
                job.result()  # a worker that died early says why
            assert time.monotonic() < deadline, "the monitor processes did not start"
            time.sleep(0.05)
        logged = []
        for i in range(40):  # traffic arrives while both monitors pass over it
            lw.log_rows(w.cfg.artifacts, w.deployment, f"q{i:02d}", 50, at=minutes(i / 60),
                        seed=i)
            logged.append(f"q{i:02d}")
            time.sleep(0.01)
        stop.touch()
        done = [j.result(timeout=120) for j in jobs]
    assert [d["errors"] for d in done] == [[], []]
    assert all(d["passes"] >= 2 for d in done)
    last = once(w, minutes(10))
    assert sum(d["closed"] for d in done) + len(last.closed) == 6

    with session_scope(sqlite_url) as s:
        closed = s.exec(select(PredictionWindow).order_by(PredictionWindow.index)).all()
        assert [x.index for x in closed] == [1, 2, 3, 4, 5, 6]
        assert [(x.rows, x.requests) for x in closed] == [(300, 6)] * 6
        left = windows.pending_rows(s, w.cfg.predictions_dir, w.deployment)
        assert sum(x.rows for x in closed) + left == 40 * 50
        assert sum(windows.read_window(x).num_rows for x in closed) == 1800
        held = s.exec(select(RequestIndex.request_id)).all()
        assert s.exec(select(func.count()).select_from(WindowVersion)).one() == 6
    assert len(held) == len(set(held)) == 36
    assert sorted(held) == logged[:36]


def test_the_cost_of_a_pass_follows_what_arrived_not_the_history(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=100, window_seconds=None)
    truth = []
    for i in range(12):
        truth += w.serve(f"w{i:02d}", 1, 100, seed=i)
        once(w, minutes(i + 1))
        if i >= 2:  # labels trail two windows behind
            w.label([truth[i - 2]])
    result = once(w, minutes(20))
    w.label(truth[10:])
    result = once(w, minutes(21))
    assert [s.window for s in result.relabelled] == [11, 12]
    with session_scope(sqlite_url) as s:
        statuses = s.exec(select(FeedbackBatch.status)).all()
        assert statuses == ["applied"] * 12
        before = {x.index: (x.labelled_rows, x.accuracy, x.labels_updated_at)
                  for x in s.exec(select(PredictionWindow)).all()}
    # Nothing new: no feedback file is read, no window recomputed. The files may even go.
    for path in w.cfg.feedback_dir.rglob("*.parquet"):
        path.unlink()
    result = once(w, minutes(22))
    assert (result.relabelled, result.labelled_rows, result.closed) == ([], 0, [])
    with session_scope(sqlite_url) as s:
        after = {x.index: (x.labelled_rows, x.accuracy, x.labels_updated_at)
                 for x in s.exec(select(PredictionWindow)).all()}
    assert after == before and all(v[0] == 100 for v in after.values())
    # One new label touches its window only.
    w.label([(truth[5][0], truth[5][1][:1] ^ 1)])
    result = once(w, minutes(23))
    assert [s.window for s in result.relabelled] == [6] and result.labelled_rows == 1


def test_labels_that_never_find_their_request_expire_a_horizon_after_their_pass(
    sqlite_url, tmp_path
):
    w = world(tmp_path, sqlite_url)
    write_feedback(w.cfg.artifacts, w.deployment, "never-served", [0], [1])
    once(w, minutes(10))
    with session_scope(sqlite_url) as s:
        assert s.exec(select(FeedbackBatch.status)).all() == ["partial"]
    # The horizon (7 days by default) counts on the clock the passes run on.
    once(w, minutes(10) + dt.timedelta(days=7, minutes=1))
    with session_scope(sqlite_url) as s:
        assert s.exec(select(FeedbackBatch.status)).all() == ["expired"]


def test_a_label_outside_the_models_classes_does_not_stop_the_other_labels(
    sqlite_url, tmp_path
):
    w = world(tmp_path, sqlite_url, window_rows=200, window_seconds=None)
    first, second = w.serve("w1", 2, 100, seed=1), w.serve("w2", 2, 100, seed=2)
    once(w, minutes(10))
    # A mistyped label (7 for a binary model) in one delivery, never corrected ...
    write_feedback(w.cfg.artifacts, w.deployment, first[0][0], [0], [7])
    service.run_once(w.cfg, now=minutes(20))
    # ... and the right labels of every other row afterwards: they must land.
    request_id, y = first[0]
    write_feedback(w.cfg.artifacts, w.deployment, request_id, np.arange(1, 100), y[1:])
    w.label(first[1:] + second)
    service.run_once(w.cfg, now=minutes(30))
    service.run_once(w.cfg, now=minutes(40))
    assert window_row(w, 2).labelled_rows == 200
    assert window_row(w, 1).labelled_rows >= 100


def test_an_unreadable_feedback_file_does_not_stop_the_other_labels(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=200, window_seconds=None)
    truth = w.serve("w1", 2, 100, seed=1)
    once(w, minutes(10))
    folder = w.cfg.feedback_dir / w.deployment
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00000000000000000001-broken.parquet").write_bytes(b"PAR1 cut short")
    w.label(truth)
    results = [service.run_once(w.cfg, now=minutes(m))[0] for m in (20, 30)]
    assert window_row(w, 1).labelled_rows == 200
    assert any("broken" in (r.error or "") + " ".join(r.quarantined) for r in results)


def test_run_once_monitors_only_the_named_deployment_and_every_active_one_otherwise(
    sqlite_url, tmp_path
):
    w = world(tmp_path, sqlite_url, window_rows=100, window_seconds=None)
    b = lw.add_deployment(w, "scorer-b")
    w.serve("a", 1, 100, seed=1)
    b.serve("b", 1, 100, seed=2)
    assert [r.deployment for r in service.run_once(w.cfg, "scorer-b", now=minutes(5))] == [
        "scorer-b"]
    with session_scope(sqlite_url) as s:
        assert service.active_deployments(s) == [("scorer", "scorer"), ("scorer-b", "scorer")]
        assert s.exec(select(PredictionWindow.deployment)).all() == ["scorer-b"]
    results = service.run_once(w.cfg, now=minutes(6))
    assert [(r.deployment, [x.window for x in r.closed]) for r in results] == [
        ("scorer", [1]), ("scorer-b", [])]


def test_the_outcome_of_each_window_is_summarised_for_the_caller(sqlite_url, tmp_path):
    w = world(tmp_path, sqlite_url, window_rows=500, window_seconds=None)
    truth = w.serve("a", 5, 100, seed=1)
    (summary,) = once(w, minutes(5)).closed
    assert summary.versions == [{
        "version": 1, "shadow": False, "rows": 500, "drift": "ok", "drifted_share": 0.0,
        "labelled_rows": 0, "metrics": {}, "estimated": summary.versions[0]["estimated"]}]
    w.label(truth[:2])
    result = once(w, minutes(6))
    assert result.labelled_rows == 200
    (summary,) = result.relabelled
    correct = sum(int(np.sum((lw.draw(100, 1000 + r)["score"] >= 0.5) == y))
                  for r, (_, y) in enumerate(truth[:2]))
    assert summary.versions[0]["metrics"]["correct"] == correct
    assert summary.accuracy == pytest.approx(correct / 200)
    table = windows.read_window(window_row(w, 1), ["request_id"])
    assert pc.count_distinct(table.column("request_id")).as_py() == 5
