"""The retraining set (`appliance.monitor.retrain`): the labelled production rows since the
trigger, as logged and joined with their labels, registered with its lineage. Real windows
closed and labelled by the monitor pass; real datasets in a real artifact store."""

from __future__ import annotations

import dataclasses
import datetime as dt

import loop_world as lw
import numpy as np
import pyarrow as pa
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.errors import ConflictError
from appliance.monitor import retrain, service
from appliance.monitor.feedback import write_feedback
from appliance.monitor.policy import DEFAULTS
from appliance.registry import datasets
from appliance.store import session_scope
from appliance.store.models import (
    AuditEvent,
    Dataset,
    FeedbackBatch,
    PredictionWindow,
    RetrainRequest,
    Run,
)

REQUESTS = 12  # of 100 rows: windows of 400 rows hold r00-r03, r04-r07, r08-r11
LABELLED = [f"r{i:02d}" for i in range(10)]  # r10 and r11 get no label


@dataclasses.dataclass
class Loop:
    world: lw.World
    rows: dict[str, dict[str, np.ndarray]]  # request id -> the rows as logged
    feedback: dict[str, str]  # request id -> the path of its feedback file


def build(home, db_url: str | None = None) -> Loop:
    """Three windows of served rows (some requests also scored by v2 in the shadow), closed
    and labelled by the monitor pass: every request but the last two is labelled."""
    extra = {"db_url": db_url} if db_url else {}
    world = lw.make_world(home, policy={"window_rows": 400, "window_seconds": None}, **extra)
    lw.add_version(world)
    rows = {}
    for i in range(REQUESTS):
        name = f"r{i:02d}"
        when = lw.T0 + dt.timedelta(seconds=i)
        rows[name] = lw.log_rows(world.cfg.artifacts, world.deployment, name, 100, at=when,
                                 seed=100 + i, shift=0.3 * (i // 4))
        if i % 4 == 0:  # the shadow challenger scores the first request of each window
            lw.log_rows(world.cfg.artifacts, world.deployment, name, 100, version=2,
                        shadow=True, at=when + dt.timedelta(seconds=0.5), seed=100 + i,
                        shift=0.3 * (i // 4))
    now = lw.T0 + dt.timedelta(minutes=5)
    (done,) = service.run_once(world.cfg, now=now, deliver=False)
    assert [w.window for w in done.closed] == [1, 2, 3]
    feedback = {name: str(write_feedback(world.cfg.artifacts, world.deployment, name,
                                         np.arange(100), rows[name]["y"]))
                for name in LABELLED}
    (done,) = service.run_once(world.cfg, now=now, deliver=False)
    assert done.labelled_rows == 1000
    return Loop(world, rows, feedback)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Loop:
    """One labelled loop (SQLite) for the tests that only read it and add datasets."""
    return build(tmp_path_factory.mktemp("retrain"))


def request(loop: Loop, since_window: int, champion: bool = True) -> RetrainRequest:
    w = loop.world
    with session_scope(w.cfg.db_url) as s:
        row = RetrainRequest(model_name=w.model, deployment=w.deployment, trigger="accuracy",
                             since_window=since_window, created_by="monitor",
                             champion_version_id=w.version.id if champion else None)
        s.add(row)
    return row


def make(loop: Loop, req: RetrainRequest, **policy) -> tuple[Dataset, pa.Table]:
    w = loop.world
    store = ArtifactStore(w.cfg.artifacts)
    with session_scope(w.cfg.db_url) as s:
        ds = retrain.build_dataset(s, store, w.cfg.artifacts, req,
                                   dataclasses.replace(DEFAULTS, **policy))
    return ds, datasets.load(store, ds)


def expected(loop: Loop, names: list[str]) -> pa.Table:
    """The logged inputs of these requests, with their labels as the model's label column."""
    parts = [pa.table({"x1": r["x1"], "x2": r["x2"], "c": pa.array(r["c"], pa.string()),
                       "y": pa.array(r["y"], pa.int64())})
             for r in (loop.rows[n] for n in names)]
    return pa.concat_tables(parts)


def test_labelled_rows_since_counts_served_labelled_rows_from_a_window_on(shared):
    w = shared.world
    with session_scope(w.cfg.db_url) as s:
        counts = [retrain.labelled_rows_since(s, w.deployment, k) for k in (1, 2, 3, 4)]
    assert counts == [1000, 600, 200, 0]


def test_the_set_is_the_labelled_served_rows_since_the_trigger_as_logged_oldest_first(shared):
    w = shared.world
    req = request(shared, since_window=2)
    ds, table = make(shared, req)
    want = expected(shared, [f"r{i:02d}" for i in range(4, 10)])
    assert table.column_names == ["x1", "x2", "c", "y"]
    assert table.num_rows == 600  # no shadow rows, no unlabelled rows, nothing before window 2
    assert table.equals(want)
    assert (ds.name, ds.rows, ds.source) == ("scorer-retrain", 600, f"retrain request #{req.id}")
    # The lineage names the windows and the feedback batches the rows came from.
    with session_scope(w.cfg.db_url) as s:
        ids = {x.index: x.id for x in s.exec(select(PredictionWindow).where(
            PredictionWindow.deployment == w.deployment)).all()}
        batch = {b.path: b.id for b in s.exec(select(FeedbackBatch)).all()}
    assert ds.lineage == {
        "retrain_request": req.id, "deployment": w.deployment, "since_window": 2,
        "windows": [2, 3], "window_ids": [ids[2], ids[3]],
        "feedback_batches": sorted(batch[shared.feedback[name]] for name in LABELLED[4:]),
        "production_rows": 600, "requests": 6, "previous": None, "max_rows": None,
        "holdout_share": 0.2,
        "order": "previous rows first, then production rows oldest first",
    }


def test_max_rows_keeps_the_newest_rows(shared):
    ds, table = make(shared, request(shared, since_window=1), max_rows=250)
    want = expected(shared, ["r07", "r08", "r09"]).slice(50)
    assert table.equals(want)
    assert ds.lineage["windows"] == [2, 3]
    assert ds.lineage["production_rows"] == 250 and ds.lineage["max_rows"] == 250


def test_previous_share_puts_a_seeded_share_of_the_champions_training_rows_first(shared):
    w = shared.world
    req = request(shared, since_window=3)
    ds, table = make(shared, req, previous_share=0.1)
    with session_scope(w.cfg.db_url) as s:
        old = s.get(Dataset, s.get(Run, w.version.run_id).dataset_id)
    training = datasets.load(ArtifactStore(w.cfg.artifacts), old)
    assert table.num_rows == 500 + 200
    head, tail = table.slice(0, 500), table.slice(500)
    assert tail.equals(expected(shared, ["r08", "r09"]))
    # The share is drawn from the training rows, in their order, without repeats.
    positions = {x: i for i, x in enumerate(training.column("x1").to_pylist())}
    picked = [positions[x] for x in head.column("x1").to_pylist()]
    assert picked == sorted(set(picked))
    assert head.equals(training.take(pa.array(picked)).select(["x1", "x2", "c", "y"]))
    assert ds.lineage["previous"] == {"dataset": f"{old.name}:{old.version}", "rows": 500,
                                      "share": 0.1}
    # Rebuilding the same request draws the same rows: the same dataset version.
    again, _ = make(shared, req, previous_share=0.1)
    assert (again.id, again.version, again.digest) == (ds.id, ds.version, ds.digest)


def test_rebuilding_gives_the_same_dataset_version(db_url, tmp_path):
    loop = build(tmp_path, db_url)
    req = request(loop, since_window=1)
    first, table = make(loop, req)
    again, _ = make(loop, req)
    assert (again.id, again.version, again.digest) == (first.id, first.version, first.digest)
    assert table.equals(expected(loop, LABELLED))
    with session_scope(db_url) as s:
        assert len(s.exec(select(Dataset).where(Dataset.name == "scorer-retrain")).all()) == 1
        added = s.exec(select(AuditEvent).where(AuditEvent.action == "dataset.added",
                                                AuditEvent.actor == "monitor")).all()
        assert [e.object_id for e in added] == ["scorer-retrain:1"]


def test_no_labelled_rows_or_no_champion_is_a_conflict(shared):
    with pytest.raises(ConflictError, match="no labelled production rows in windows from 4"):
        make(shared, request(shared, since_window=4))
    with pytest.raises(ConflictError, match="no champion version"):
        make(shared, request(shared, since_window=1, champion=False))


def test_finish_ends_a_request_and_frees_its_model_for_the_next(sqlite_url, tmp_path):
    w = lw.make_world(tmp_path, db_url=sqlite_url)
    with session_scope(sqlite_url) as s:
        first = RetrainRequest(model_name=w.model, deployment=w.deployment, active_key=w.model,
                               trigger="drift", since_window=1, created_by="monitor")
        s.add(first)
        s.flush()
        assert [r.id for r in retrain.active(s, w.model)] == [first.id]
        with pytest.raises(ValueError, match="'canary' is not a terminal state"):
            retrain.finish(s, first, "canary", "monitor")
        retrain.move(s, first, "training", "monitor", run="abc")
        assert first.active_key == w.model
        retrain.finish(s, first, "gate_failed", "monitor", "worse than the champion")
        assert (first.active_key, first.outcome, first.state) == (
            None, "worse than the champion", "gate_failed")
        assert first.finished_at is not None
        assert retrain.active(s) == []
        second = RetrainRequest(model_name=w.model, deployment=w.deployment, active_key=w.model,
                                trigger="drift", since_window=2, created_by="monitor")
        s.add(second)
        s.flush()
        assert retrain.latest(s, w.model).id == second.id
        events = s.exec(select(AuditEvent).where(AuditEvent.object_type == "retrain")
                        .order_by(AuditEvent.id)).all()
        assert [(e.action, e.details) for e in events] == [
            ("retrain.training", {"model": w.model, "run": "abc"}),
            ("retrain.gate_failed", {"model": w.model, "reason": "worse than the champion"})]
