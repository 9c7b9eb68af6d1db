"""Sweeps of the other model kinds on a real local Ray and a real SQLite store: an XGBoost
sweep whose trials report every few boosting rounds, some stopped early by ASHA, each a child
run, the best retrained through Ray Train's XGBoost trainer (its rounds reported as progress)
and registered with lineage naming the tuning run. The custom kind's sweep runs through the
CLI (tests/cli/test_tune_cli.py)."""

from __future__ import annotations

import pytest
from loop_world import config
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.governance.users import create_user
from appliance.pipelines import tuning
from appliance.pipelines.tune_spec import parse_tuning
from appliance.registry import datasets
from appliance.registry.lineage import lineage
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import ModelVersion, Run
from cluster.bundle import ModelBundle

ROWS = 400
MAX_ROUNDS = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory, ray_session):
    cfg = config(tmp_path_factory.mktemp("tune-kinds"))
    migrate(cfg.db_url)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        datasets.add_table(session, ArtifactStore(cfg.artifacts), generate(ROWS, seed=5),
                           "credit-train", actor=ops.name)
    yield cfg, ops
    dispose_all()


def test_an_xgboost_sweep_stops_trials_early_and_registers_the_best(world):
    cfg, ops = world
    spec, tune_spec = parse_tuning({
        "model": "trees", "dataset": "credit-train", "label": LABEL, "kind": "xgboost",
        "categorical": CATEGORICAL, "seed": 3, "holdout": 0.25,
        "tune": {"num_samples": 4, "max_rounds": MAX_ROUNDS, "grace_period": 2,
                 "metric": "log_loss",
                 # From a rate that barely moves the log loss in 16 rounds to one that does
                 # in two: ASHA has something to stop.
                 "space": {"eta": {"loguniform": [0.005, 0.6]},
                           "max_depth": {"randint": [1, 4]}}},
    })
    events = []
    out = tuning.tune(cfg, ops, spec, tune_spec, on_progress=events.append)

    assert (out.metric, out.mode, len(out.trials)) == ("log_loss", "min", 4)
    stopped = [t for t in out.trials if t.status == "stopped"]
    assert stopped and out.stopped_early == len(stopped), [t.status for t in out.trials]
    # A trial reports every block of rounds; ASHA stops one at a report, before the budget.
    assert all(1 <= t.epochs < MAX_ROUNDS for t in stopped)
    assert all(t.epochs == MAX_ROUNDS for t in out.trials if t.status == "finished")
    assert all(t.metrics["rounds"] == t.epochs and t.error is None for t in out.trials)
    assert {"max_depth", "eta", "num_boost_round"} <= set(out.best.params)
    assert out.best.metrics["log_loss"] == min(t.metrics["log_loss"] for t in out.trials)

    # Every trial's start, reports and end reached the caller, kind-neutral events.
    by_trial: dict[str, list] = {}
    for e in events:
        if e.trial is not None:
            by_trial.setdefault(e.trial, []).append(e)
    assert set(by_trial) == {t.trial_id for t in out.trials}
    for t in out.trials:
        seen = by_trial[t.trial_id]
        assert seen[0].state == "running" and seen[0].step == 0
        assert seen[-1].state == t.status and seen[-1].step == t.epochs
        assert {e.unit for e in seen} == {"round"} and {e.total for e in seen} == {MAX_ROUNDS}
        assert set(seen[-1].params) == {"eta", "max_depth"}
        assert seen[-1].metrics["log_loss"] == pytest.approx(t.metrics["log_loss"])
    # Then the retraining of the best on Ray Train reported its rounds.
    retrain = [e for e in events if e.trial is None]
    assert retrain and {e.unit for e in retrain} == {"round"}
    assert retrain[-1].step == retrain[-1].total == out.best.epochs
    assert all("loss" in e.metrics for e in retrain)

    with session_scope(cfg.db_url) as session:
        parent = session.get(Run, out.run)
        children = session.exec(select(Run).where(Run.parent_run_id == out.run)).all()
        assert (parent.kind, parent.status, parent.metrics["best_run"]) == (
            "tune", "finished", out.best.run)
        trials = {r.id: r for r in children if r.kind == "trial"}
        assert set(trials) == {t.run for t in out.trials}
        for t in out.trials:
            row = trials[t.run]
            assert (row.status, row.params, row.metrics["epochs"]) == (t.status, t.params,
                                                                       t.epochs)
        (retrained,) = [r for r in children if r.kind == "train"]
        assert retrained.id == out.registered.run
        # The best configuration, for the rounds it was judged on.
        assert retrained.params == {**out.best.params, "num_boost_round": out.best.epochs}
        record = lineage(session, f"trees:{out.registered.version}")
        version = session.exec(select(ModelVersion).where(
            ModelVersion.model_name == "trees")).one()
        blob = ArtifactStore(cfg.artifacts).get_bytes(version.digest)
    assert record["run"]["tuning_run"] == out.run and record["run"]["id"] == out.registered.run
    # The same bundle as `appliance train` makes for the kind.
    assert ModelBundle.from_bytes(blob).kind == "xgboost"
    m = out.registered.metrics
    assert (m["train_rows"], m["holdout_rows"]) == (300, 100) and m["log_loss"] is not None
