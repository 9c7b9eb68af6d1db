"""Segments, fairness and importance shift through real monitor passes, and prediction
traceability (`appliance.monitor.trace`) through the request index: traffic logged by the real
prediction log, labels by the real feedback writer, a real SQLite store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil

import loop_world as lw
import numpy as np
import pytest
from sqlmodel import select

from appliance.errors import NotFound
from appliance.monitor import fairness, importance, service, trace
from appliance.monitor.rules import DEFAULT_RULES, parse_rule
from appliance.store import session_scope
from appliance.store.models import Alert, ModelVersion, PredictionWindow, WindowVersion

ROWS = 50
REQUESTS = 8  # 4 windows of 100 rows


def _serve(w: lw.World, requests: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Log `requests` requests through a real replica buffer into one journal segment (one
    fsync, not one per request), the group logged beside the features as ``log_columns``
    logs it; return (request id, true labels) for each."""
    from cluster.serve._log_buffer import PredictionLogBuffer
    from cluster.serve._prediction_log import PredictionLog

    start = int(lw.T0.timestamp() * 1e9)
    ticks = iter(range(start, start + 10**9 * (requests + 1), 10**9))
    log = PredictionLog(w.cfg.artifacts, deployment=w.deployment, model=w.model, version="1",
                        features=lw.FEATURES, categorical=lw.CATEGORICAL,
                        extra=[lw.PROTECTED], clock=lambda: next(ticks))
    truth = []
    with PredictionLogBuffer(log, flush_interval_s=3600.0, max_file_rows=10**6) as buffer:
        for r in range(requests):
            rows = lw.draw(ROWS, seed * 1000 + r)
            buffer.append(f"req-r{r:03d}", {f: rows[f] for f in [*lw.FEATURES, lw.PROTECTED]},
                          (rows["score"] >= 0.5).astype(np.int64), rows["score"])
            truth.append((f"req-r{r:03d}", rows["y"]))
    return truth


@pytest.fixture(scope="module")
def world(tmp_path_factory, _sqlite_template):
    """The world's model, its holdout importance recorded, served 4 windows' worth of traffic
    with a protected group logged beside the features; labels for the first 6 requests."""
    home = tmp_path_factory.mktemp("trace")
    # A copy of the migrated template: copying is ~20x faster than migrating.
    shutil.copyfile(_sqlite_template, home / "store.db")
    rules = (*DEFAULT_RULES,
             parse_rule({"name": "four-fifths", "metric": "disparate_impact_ratio", "op": "<",
                         "threshold": 0.8, "min_rows": 50}, "test"),
             parse_rule({"name": "segment-accuracy", "metric": "accuracy", "segment": "c",
                         "op": "<", "threshold": 0.99, "min_rows": 10}, "test"))
    w = lw.make_world(home, db_url=f"sqlite:///{home / 'store.db'}", alert_rules=rules,
                      policy={"window_rows": 2 * ROWS, "segments": ["c", "group"],
                              "protected_attribute": "group", "fairness_min_rows": 5})
    hold = lw.draw(3000, seed=2)
    with session_scope(w.cfg.db_url) as s:
        version = s.get(ModelVersion, w.version.id)
        version.importance = {
            "method": "permutation", "metric": "auc", "baseline": 0.8, "rows": 3000,
            "repeats": 1, "features": {f: {"importance": 0.1, "std": 0.0} for f in lw.FEATURES},
            "association": importance.association(
                {f: hold[f] for f in lw.FEATURES}, hold["score"], lw.CATEGORICAL)}
        s.add(version)
    truth = _serve(w, REQUESTS, seed=5)
    service.run_once(w.cfg, w.deployment, now=lw.T0 + dt.timedelta(minutes=5))
    w.label(truth[:6])
    service.run_once(w.cfg, w.deployment, now=lw.T0 + dt.timedelta(minutes=6))
    return w, truth


def _stats(w, index):
    with session_scope(w.cfg.db_url) as s:
        return s.exec(select(WindowVersion).join(PredictionWindow).where(
            PredictionWindow.index == index, WindowVersion.shadow == False)).one()  # noqa: E712


def test_windows_carry_fairness_segments_and_importance_shift(world):
    w, truth = world
    first = _stats(w, 1)
    # The window's rows: requests req-r000 and req-r001, drawn as `serve` drew them.
    rows = [lw.draw(ROWS, 5 * 1000 + r) for r in range(2)]
    group = np.concatenate([r["group"] for r in rows])
    pred = np.concatenate([(r["score"] >= 0.5).astype(np.int64) for r in rows])
    y = np.concatenate([r["y"] for r in rows])
    expected = fairness.fairness_gaps(group, pred, y, min_group_rows=5)
    got = first.fairness
    assert got["attribute"] == "group"
    for key in fairness.GAPS:
        assert got[key] == pytest.approx(expected[key])
    assert got["disparate_impact_ratio"] < 0.8  # the model favours "b" without seeing it
    assert first.segments["group"]["a"]["rows"] == int((group == "a").sum())
    assert first.segments["c"]["a"]["labelled_rows"] > 0
    assert "accuracy" in first.segments["c"]["b"]
    shift = first.importance
    assert shift["method"] == importance.PROXY
    assert 0 <= shift["importance_shift"] < 0.2  # same traffic as the holdout
    assert shift["importance_rank_correlation"] > 0.4
    # Unlabelled windows have no equal opportunity gap.
    assert _stats(w, 4).fairness["equal_opportunity_difference"] is None
    with session_scope(w.cfg.db_url) as s:
        listed = fairness.window_fairness(s, w.deployment)
    assert [x.window for x in listed] == list(range(1, 5))


def test_fairness_and_segment_rules_raise_alerts(world):
    w, _ = world
    with session_scope(w.cfg.db_url) as s:
        raised = {a.rule: a for a in s.exec(select(Alert)).all()}
    assert raised["four-fifths"].kind == "fairness"
    assert raised["four-fifths"].value < 0.8
    assert raised["segment-accuracy"].kind == "segment"


def test_show_reads_one_window_file_through_the_index(world, tmp_path):
    w, truth = world
    with session_scope(w.cfg.db_url) as s:
        files = {x.index: x.path for x in s.exec(select(PredictionWindow)).all()}
    # req-r004 is in window 3; every other window file is moved away: a scan would fail.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for index, path in files.items():
        if index != 3:
            os.replace(path, hidden / os.path.basename(path))
    try:
        with session_scope(w.cfg.db_url) as s:
            doc = trace.show(s, w.cfg.predictions_dir, w.cfg.artifacts, "req-r004")
    finally:
        for index, path in files.items():
            if index != 3:
                os.replace(hidden / os.path.basename(path), path)
    assert doc.window == 3 and not doc.pending and doc.model == w.model
    assert [r.row for r in doc.rows] == list(range(ROWS))
    drawn = lw.draw(ROWS, 5 * 1000 + 4)
    assert [r.inputs["x1"] for r in doc.rows] == drawn["x1"].tolist()
    assert [r.inputs["group"] for r in doc.rows] == drawn["group"].tolist()
    assert [r.label for r in doc.rows] == truth[4][1].tolist()
    assert doc.rows[0].score == pytest.approx(float(drawn["score"][0]))
    line = doc.lineage[str(w.version.version)]
    assert line.dataset.name == f"{w.model}-train" and line.run.id


def test_a_request_not_yet_in_a_window_is_found_pending_and_unknown_ids_are_refused(world):
    w, _ = world
    w2 = dataclasses.replace(w)
    w2.log(lw.draw(3, 99), "late-one", at=lw.T0 + dt.timedelta(minutes=7))
    with session_scope(w.cfg.db_url) as s:
        doc = trace.show(s, w.cfg.predictions_dir, w.cfg.artifacts, "late-one")
        assert doc.pending and doc.window is None and len(doc.rows) == 3
        assert doc.rows[0].label is None
        with pytest.raises(NotFound, match="no logged prediction"):
            trace.show(s, w.cfg.predictions_dir, w.cfg.artifacts, "never-sent")
