"""`appliance.pipelines.tuning` on a real local Ray and a real SQLite store: small ASHA sweeps
of the MLP and of XGBoost (trials reporting every few boosting rounds) whose trials are child
runs, some stopped early, and whose best is registered with lineage naming the tuning run. The
custom kind's sweep runs through the CLI (tests/cli/test_tune_cli.py)."""

from __future__ import annotations

import pytest
from loop_world import config
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import PermissionDenied
from appliance.governance.users import create_user
from appliance.pipelines import tuning
from appliance.pipelines.tune_spec import parse_tuning
from appliance.pipelines.tuning import TrialPublic, _best
from appliance.registry import datasets
from appliance.registry.lineage import lineage
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import ModelVersion, Run
from cluster.bundle import ModelBundle

ROWS = 600
MAX_EPOCHS = 8
MAX_ROUNDS = 16


@pytest.fixture
def world(tmp_path, ray_session):
    cfg = config(tmp_path)
    migrate(cfg.db_url)
    with session_scope(cfg.db_url) as session:
        admin = create_user(session, "admin", "admin", actor="admin")
        ops = create_user(session, "ops", "operator", actor=admin.name)
        viewer = create_user(session, "val", "viewer", actor=admin.name)
        datasets.add_table(session, ArtifactStore(cfg.artifacts), generate(ROWS, seed=5),
                           "credit-train", actor=ops.name)
    yield cfg, ops, viewer
    dispose_all()


def _specs():
    return parse_tuning({
        "model": "credit", "dataset": "credit-train", "label": LABEL,
        "categorical": CATEGORICAL, "seed": 2, "holdout": 0.25,
        "params": {"hidden": 8, "batch_size": 64},
        "resources": {"max_concurrent_trials": 2},
        "tune": {"num_samples": 6, "max_epochs": MAX_EPOCHS, "grace_period": 1,
                 "reduction_factor": 2,
                 # From a rate too small to learn in 8 epochs to one that learns in one: the
                 # trials differ enough that ASHA has something to stop.
                 "space": {"lr": {"loguniform": [1e-5, 0.3]}, "layers": {"randint": [1, 2]}}},
    })


def test_a_sweep_stops_trials_early_records_them_and_registers_the_best(world):
    cfg, ops, _ = world
    spec, tune_spec = _specs()
    out = tuning.tune(cfg, ops, spec, tune_spec)

    # `appliance tune --json` prints this record: its keys are a contract.
    doc = out.model_dump(mode="json")
    assert set(doc) == {"run", "model", "dataset", "metric", "mode", "max_concurrent_trials",
                        "trials", "stopped_early", "best", "registered", "seconds"}
    assert set(doc["best"]) == {"run", "trial_id", "status", "epochs", "params", "metrics",
                                "error"}
    assert set(doc["registered"]) == {"model", "version", "run", "metrics", "digest"}
    assert len(out.trials) == 6 and out.max_concurrent_trials == 2
    assert (out.metric, out.mode) == ("auc", "max")
    stopped = [t for t in out.trials if t.status == "stopped"]
    assert stopped and out.stopped_early == len(stopped)
    assert all(1 <= t.epochs < MAX_EPOCHS for t in stopped)
    assert all(t.epochs == MAX_EPOCHS for t in out.trials if t.status == "finished")
    assert all(t.error is None for t in out.trials)
    assert out.best.metrics["auc"] == max(t.metrics["auc"] for t in out.trials)

    parent = _check_recorded(cfg, out, "epochs", "mlp")
    assert parent.metrics["stopped_early"] == len(stopped)
    # Trials were scored on a slice of the training part; the holdout was never theirs.
    assert parent.metrics["train_rows"] + parent.metrics["valid_rows"] == 450
    m = out.registered.metrics
    assert (m["train_rows"], m["holdout_rows"]) == (450, 150) and m["auc"] is not None


def _check_recorded(cfg, out, budget: str, kind: str) -> Run:
    """The tuning run says which trial won; each trial is a child run as it ended; the best
    trial's params, for the budget it was judged on, are retrained into a version of `kind`'s
    bundle whose lineage names the tuning run. Returns the tuning run."""
    with session_scope(cfg.db_url) as session:
        parent = session.get(Run, out.run)
        children = session.exec(select(Run).where(Run.parent_run_id == out.run)).all()
        assert (parent.kind, parent.status) == ("tune", "finished")
        assert parent.metrics["best_run"] == out.best.run
        trials = {r.id: r for r in children if r.kind == "trial"}
        assert set(trials) == {t.run for t in out.trials}
        for t in out.trials:
            row = trials[t.run]
            assert (row.status, row.params, row.metrics["epochs"]) == (t.status, t.params,
                                                                       t.epochs)
            assert row.started_at <= row.finished_at
        retrained = [r for r in children if r.kind == "train"]
        assert [r.id for r in retrained] == [out.registered.run]
        assert retrained[0].params == {**out.best.params, budget: out.best.epochs}
        record = lineage(session, f"{out.model}:{out.registered.version}").model_dump()
        digest = session.exec(select(ModelVersion.digest).where(
            ModelVersion.model_name == out.model,
            ModelVersion.version == out.registered.version)).one()
    assert record["run"]["tuning_run"] == out.run and record["run"]["id"] == out.registered.run
    # The same bundle as `appliance train` makes for the kind.
    assert ModelBundle.from_bytes(ArtifactStore(cfg.artifacts).get_bytes(digest)).kind == kind
    return parent


def test_an_xgboost_sweep_reports_blocks_of_rounds_and_registers_the_best(world):
    cfg, ops, _ = world
    with session_scope(cfg.db_url) as session:
        datasets.add_table(session, ArtifactStore(cfg.artifacts), generate(400, seed=5),
                           "small-train", actor=ops.name)
    spec, tune_spec = parse_tuning({
        "model": "trees", "dataset": "small-train", "label": LABEL, "kind": "xgboost",
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
    assert out.best.metrics["log_loss"] == min(t.metrics["log_loss"] for t in out.trials)
    _check_recorded(cfg, out, "num_boost_round", "xgboost")

    # Every trial's start, reports and end reached the caller as kind-neutral events.
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
    # Then the retraining of the best on Ray Train's XGBoost trainer reported its rounds.
    retrain = [e for e in events if e.trial is None]
    assert retrain and {e.unit for e in retrain} == {"round"}
    assert retrain[-1].step == retrain[-1].total == out.best.epochs
    assert all("loss" in e.metrics for e in retrain)
    m = out.registered.metrics
    assert (m["train_rows"], m["holdout_rows"]) == (300, 100) and m["log_loss"] is not None


def test_tuning_needs_the_operate_permission(world):
    cfg, _, viewer = world
    spec, tune_spec = _specs()
    with pytest.raises(PermissionDenied):
        tuning.tune(cfg, viewer, spec, tune_spec)
    with session_scope(cfg.db_url) as session:
        assert session.exec(select(Run)).all() == []


def test_the_best_trial_is_the_best_last_report_in_the_metrics_direction():
    def trial(run, status, value):
        return TrialPublic(run=run, trial_id=run, status=status, epochs=1, params={},
                           metrics={} if value is None else {"rmse": value})

    trials = [trial("a", "finished", 0.5), trial("b", "stopped", 0.4),
              trial("c", "failed", 0.1), trial("d", "finished", None)]
    assert _best(trials, "rmse", "min").run == "b"
    assert _best(trials, "rmse", "max").run == "a"
    assert _best([trials[2], trials[3]], "rmse", "min") is None
