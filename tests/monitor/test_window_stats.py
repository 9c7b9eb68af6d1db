"""What each version did in a closed window (`appliance.monitor.window_stats.close_stats`), on
the monitor tests' own world (`loop_world`): drift against the version's own profile, "ok"
for traffic like its training data and "drifted" for shifted traffic, no verdict on too few
rows or without a profile, and the label-free estimate of a binary classifier."""

from __future__ import annotations

import datetime as dt

import loop_world as lw
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.monitor import windows
from appliance.monitor.window_stats import close_stats, main_slice, task_of
from appliance.store import session_scope
from appliance.store.models import DriftReport, PredictionWindow

ROWS = 400


def _closed_window(tmp_path, **drift):
    world = lw.make_world(tmp_path)
    world.serve("w", requests=4, rows_per_request=ROWS // 4, seed=5, at=lw.T0, **drift)
    [window] = lw.close_all(world.cfg.db_url, world.cfg.predictions_dir, world.deployment,
                            windows.WindowPolicy(rows=ROWS, seconds=None),
                            lw.T0 + dt.timedelta(minutes=1))
    return world, window


def _stats(world, window, *, min_drift_rows=100, version=None):
    with session_scope(world.cfg.db_url) as s:
        row = s.get(PredictionWindow, window.id)
        table = windows.read_window(row)
        out = close_stats(s, ArtifactStore(world.cfg.artifacts), row, table,
                          {"1": version or world.version}, min_drift_rows=min_drift_rows)
        reports = s.exec(select(DriftReport)).all()
        return [o.model_dump() for o in out], [r.model_dump() for r in reports]


def test_traffic_like_the_training_data_is_judged_ok(tmp_path):
    world, window = _closed_window(tmp_path)
    [stats], [report] = _stats(world, window)
    assert (stats["version"], stats["shadow"], stats["rows"]) == (1, False, ROWS)
    assert stats["drift_status"] == "ok" and not report["dataset_drifted"]
    # A binary classifier's metrics estimated from its calibrated scores, without labels.
    assert stats["estimated"] and 0.0 <= stats["estimated"]["accuracy"] <= 1.0


def test_shifted_traffic_is_judged_drifted_and_reported(tmp_path):
    world, window = _closed_window(tmp_path, shift=2.0)
    [stats], [report] = _stats(world, window)
    assert stats["drift_status"] == "drifted" and report["dataset_drifted"]
    assert {"x1", "x2"} <= set(report["drifted_features"])
    assert stats["drifted_share"] == pytest.approx(report["drifted_share"])


def test_too_few_rows_or_no_profile_give_no_verdict(tmp_path):
    world, window = _closed_window(tmp_path / "few")
    [few], reports = _stats(world, window, min_drift_rows=ROWS + 1)
    assert few["drift_status"] == "insufficient" and reports == []
    # A window is judged once: another world for the version without a profile.
    world, window = _closed_window(tmp_path / "bare")
    bare = world.version.model_copy(update={"profile_digest": None})
    [none], reports = _stats(world, window, version=bare)
    assert none["drift_status"] == "no_profile" and reports == []


def test_the_task_and_the_main_slice(tmp_path):
    world, window = _closed_window(tmp_path)
    assert task_of(world.version) == "binary"
    with session_scope(world.cfg.db_url) as s:
        row = s.get(PredictionWindow, window.id)
        rows = close_stats(s, ArtifactStore(world.cfg.artifacts), row,
                           windows.read_window(row), {"1": world.version}, min_drift_rows=100)
        assert main_slice(rows) is rows[0]
    assert main_slice([]) is None
