"""`appliance.pipelines.training` on a real Ray and a real SQLite store: what a run records
about its split, and what its drift reference is fitted on."""

from __future__ import annotations

import os
import signal

import numpy as np
import pyarrow as pa
import pytest
from loop_world import config
from sqlmodel import select

import kernels
from appliance.artifacts import ArtifactStore
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import InvalidInput
from appliance.governance.users import create_user
from appliance.monitor import importance
from appliance.monitor.drift import SCORE
from appliance.pipelines import training
from appliance.pipelines.spec import parse_spec
from appliance.pipelines.split import holdout_split
from appliance.registry import datasets
from appliance.registry.lineage import lineage
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import Run
from appliance.tables import table_columns
from cluster.bundle import ModelBundle

ROWS = 800


@pytest.fixture
def world(tmp_path, ray_session):
    cfg = config(tmp_path)
    migrate(cfg.db_url)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        datasets.add_table(session, ArtifactStore(cfg.artifacts), generate(ROWS, seed=3),
                           "credit-train", actor=ops.name)
    yield cfg, ops
    dispose_all()


def _spec(**over):
    doc = {"model": "credit", "dataset": "credit-train", "label": LABEL,
           "categorical": CATEGORICAL, "seed": 4, "holdout": 0.25,
           "params": {"epochs": 3, "hidden": 8}}
    doc.update(over)
    return parse_spec(doc)


def test_lineage_counts_every_row_once_and_the_reference_is_the_holdouts(world):
    cfg, ops = world
    spec = _spec()
    out = training.train(cfg, ops, spec)
    m = out.version.metrics
    # No split of the trainer's own: the training part trains, the holdout judges.
    assert (m["train_rows"], m["valid_rows"], m["holdout_rows"]) == (600, 0, 200)
    assert m["rows"] == 200
    with session_scope(cfg.db_url) as session:
        record = lineage(session, "credit:1").model_dump()
    assert record["metrics"]["train_rows"] + record["metrics"]["valid_rows"] \
        + record["metrics"]["holdout_rows"] == record["dataset"]["rows"] == ROWS

    # The prediction reference holds the holdout's scores, exactly: not in-sample ones.
    store = ArtifactStore(cfg.artifacts)
    bundle = ModelBundle.from_bytes(store.get_bytes(out.version.digest))
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(out.version.profile_digest))
    _, holdout = holdout_split(generate(ROWS, seed=3), spec.seed, spec.holdout, spec.split)
    _, scores = bundle.predict(table_columns(holdout, bundle.feature_names, CATEGORICAL))
    assert profile.rows == 200
    np.testing.assert_allclose(profile.features[SCORE].sorted,
                               np.sort(scores.astype(np.float64)))
    # Global importance on the same holdout, stored with the version and read back typed.
    with session_scope(cfg.db_url) as session:
        imp = importance.version_importance(session, "credit", 1)
    assert imp.metric == "auc" and imp.rows == 200 and imp.method == "permutation"
    assert {f.feature for f in imp.features} == set(bundle.feature_names) == set(imp.association)
    assert [f.rank for f in imp.features] == list(range(1, len(bundle.feature_names) + 1))


def test_early_stopping_records_its_validation_slice(world):
    cfg, ops = world
    spec = _spec(params={"epochs": 30, "hidden": 8, "early_stopping": 2,
                         "valid_fraction": 0.2, "lr": 0.5})
    m = training.train(cfg, ops, spec).version.metrics
    assert (m["train_rows"], m["valid_rows"], m["holdout_rows"]) == (480, 120, 200)
    assert m["epochs"] <= 30


def _task_table(n: int, seed: int) -> pa.Table:
    """x1, x2 ~ N(0, 1), c in {u, v}; `kind` (string classes by the sign pattern of x1 and
    x2: three of them), `amount` (a regression target in units of hundreds)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(0, 1, n), rng.normal(0, 1, n)
    c = rng.choice(["u", "v"], n)
    kind = np.where(x1 > 0.3, "high", np.where(x2 > 0, "mid", "low"))
    amount = 500 + 120 * x1 - 80 * x2 + 60 * (c == "v") + rng.normal(0, 5, n)
    return pa.table({"x1": x1, "x2": x2, "c": c, "kind": kind, "amount": amount})


@pytest.mark.parametrize(
    ("task", "label", "good"),
    [("multiclass", "kind", ("macro_f1", 0.8)), ("regression", "amount", ("r2", 0.9))],
)
def test_each_task_trains_registers_and_profiles(tmp_path, ray_session, task, label, good):
    cfg = config(tmp_path)
    migrate(cfg.db_url)
    table = _task_table(1_200, seed=9)
    other = "amount" if label == "kind" else "kind"
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        datasets.add_table(session, store, table.drop_columns([other]), "tasks", actor=ops.name)
    spec = parse_spec({"model": "tasks", "dataset": "tasks", "label": label, "task": task,
                       "categorical": ["c"], "seed": 1,
                       "params": {"epochs": 30, "hidden": 16, "lr": 0.01, "batch_size": 64}})
    try:
        out = training.train(cfg, ops, spec)
    finally:
        dispose_all()
    m = out.version.metrics
    assert m["task"] == task
    assert m[good[0]] >= good[1], m
    expected = ({"accuracy", "macro_f1", "log_loss"} if task == "multiclass"
                else {"rmse", "mae", "r2"})
    assert expected <= set(m)
    # Calibration and its label-free estimate are for binary classifiers only.
    assert out.version.calibration == {}
    bundle = ModelBundle.from_bytes(store.get_bytes(out.version.digest))
    assert bundle.task == task
    _, holdout = holdout_split(table, spec.seed, spec.holdout, spec.split)
    cols = table_columns(holdout, bundle.feature_names, ["c"])
    got = bundle.score(cols)
    if task == "multiclass":
        assert bundle.classes == ["high", "low", "mid"]
        assert got.probabilities.shape == (holdout.num_rows, 3)
        np.testing.assert_allclose(got.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    else:
        # In label units: the network learnt the standardised amount.
        truth = holdout.column("amount").to_numpy()
        assert np.abs(got.scores - truth).mean() < 40
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(out.version.profile_digest))
    np.testing.assert_allclose(profile.features[SCORE].sorted,
                               np.sort(got.scores.astype(np.float64)))
    # Permutation importance in the task's main metric: c decides nothing of the class, and
    # a little of the amount.
    imp = {k: v["importance"] for k, v in out.version.importance["features"].items()}
    assert out.version.importance["metric"] == ("macro_f1" if task == "multiclass" else "rmse")
    assert imp["x1"] > imp["c"] and imp["x2"] > imp["c"]


def test_spec_task_defaults_to_binary_and_refuses_unknown_ones():
    assert _spec().task == "binary"
    assert _spec(task="regression").to_dict()["task"] == "regression"
    with pytest.raises(InvalidInput, match="'task' must be one of"):
        _spec(task="ranking")


def test_xgboost_is_registered_profiled_and_gated_like_the_mlp(tmp_path, ray_session):
    from appliance.pipelines import promotion

    cfg = config(tmp_path)
    migrate(cfg.db_url)
    table = _task_table(1_000, seed=11).drop_columns(["amount"])
    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        datasets.add_table(session, store, table, "kinds", actor=ops.name)
    doc = {"model": "kinds", "dataset": "kinds", "label": "kind", "task": "multiclass",
           "kind": "xgboost", "categorical": ["c"], "params": {"num_boost_round": 20}}
    # Params are the kind's: an MLP param is refused before any run is recorded.
    with pytest.raises(InvalidInput, match="'hidden'"):
        training.start(cfg, ops, parse_spec({**doc, "params": {"hidden": 8}}))
    try:
        out = training.train(cfg, ops, parse_spec(doc))
        with session_scope(cfg.db_url) as session:
            assert lineage(session, "kinds:1").run.params["num_boost_round"] == 20
        # The gate re-scores the stored artifact on the same holdout: the same metrics.
        (again,) = promotion.evaluate_on_holdout(cfg, out.version, [])
    finally:
        dispose_all()
    m = out.version.metrics
    assert m["macro_f1"] >= 0.85 and m["epochs"] == 20
    assert again == {k: m[k] for k in again}
    bundle = ModelBundle.from_bytes(store.get_bytes(out.version.digest))
    assert bundle.kind == "xgboost" and bundle.classes == ["high", "low", "mid"]
    imp = {k: v["importance"] for k, v in out.version.importance["features"].items()}
    assert imp["x1"] > imp["c"] and imp["x2"] > imp["c"]
    profile = kernels.ReferenceProfile.from_bytes(store.get_bytes(out.version.profile_digest))
    assert profile.rows == m["holdout_rows"] == 200


def test_a_custom_function_that_cannot_be_imported_is_refused_before_a_run(world):
    cfg, ops = world
    spec = _spec(kind="custom", function="no_such_module:train", params={"epochs": 2})
    with pytest.raises(InvalidInput, match="cannot import module 'no_such_module'"):
        training.start(cfg, ops, spec)
    with session_scope(cfg.db_url) as session:
        assert session.exec(select(Run)).all() == []


def test_a_killed_worker_resumes_from_its_checkpoint_and_lineage_says_so(world):
    cfg, ops = world
    spec = _spec(params={"epochs": 12, "hidden": 16, "batch_size": 32},
                 fault_tolerance={"max_failures": 2, "checkpoints_to_keep": 2})
    killed: list[int] = []
    steps: list[tuple[int, int]] = []

    def kill_once(event):
        steps.append((event.step, event.pid))
        # Once epoch 2 is checkpointed and reported, SIGKILL the worker process itself: Ray
        # Train must notice, start a new worker and go on from the last checkpoint.
        if event.step >= 2 and not killed:
            killed.append(event.pid)
            os.kill(event.pid, signal.SIGKILL)

    out = training.train(cfg, ops, spec, on_progress=kill_once)
    assert killed
    after = [step for step, pid in steps if pid != killed[0]]
    # The new worker went on from a checkpoint (epoch 1 or later), not from scratch.
    assert after and after[0] >= 2, steps
    assert after[-1] == 12
    m = out.version.metrics
    assert m["epochs"] == 12
    assert m["restarts"] == 1 and m["resumed_from_epochs"] == [after[0] - 1], m
    with session_scope(cfg.db_url) as session:
        record = lineage(session, "credit:1").model_dump()
    assert record["metrics"]["restarts"] == 1
    assert record["metrics"]["resumed_from_epochs"][0] >= 1


@pytest.mark.parametrize(
    ("section", "message"),
    [({"max_failures": -1}, "'fault_tolerance.max_failures' must be an integer in [0, 100]"),
     ({"checkpoints_to_keep": 0}, "'fault_tolerance.checkpoints_to_keep' must be an integer"),
     ({"retries": 1}, "unknown fault_tolerance key(s) ['retries']"),
     ("x", "'fault_tolerance' must be a table")],
)
def test_fault_tolerance_keys_are_validated(section, message):
    with pytest.raises(InvalidInput) as err:
        _spec(fault_tolerance=section)
    assert message in str(err.value)
    assert _spec().max_failures == 2 and _spec().checkpoints_to_keep == 2
