"""A sweep's trials as progress events (`cluster.tune_progress.TrialProgress`), driven with Ray
Tune's own `Trial` objects: start, each report and the end of a trial become events with its
id, tuned params and state, and a display that raises is dropped, never the sweep."""

from __future__ import annotations

import math
import pickle

from cluster.tune import KINDS
from cluster.tune_progress import TrialProgress


def _trial():
    # Imported here, once `cluster` is (above): the appliance's settings come before Ray's.
    from ray.tune.experiment import Trial

    return Trial("trainable", config={"lr": 0.1, "hidden": 8, "epochs": 4}, stub=True)


def test_a_trials_life_becomes_events():
    events = []
    progress = TrialProgress(events.append, kind=KINDS["mlp"], max_steps=4, shown=["lr"])
    trial = _trial()
    progress.on_trial_start(0, [trial], trial)
    result = {"epoch": 2, "auc": 0.8, "log_loss": math.nan, "training_iteration": 2, "pid": 42}
    trial.update_last_result(result)
    progress.on_trial_result(1, [trial], trial, result)
    progress.on_trial_complete(2, [trial], trial)
    assert [(e.step, e.state) for e in events] == [(0, "running"), (2, "running"),
                                                   (2, "stopped")]
    start, report, end = events
    assert {e.trial for e in events} == {str(trial.trial_id)}
    assert all(e.total == 4 and e.unit == "epoch" and e.params == {"lr": 0.1} for e in events)
    # Only the trial's own metrics: Tune's keys and the progress metric are left out, and an
    # undefined metric is None.
    assert report.metrics == {"auc": 0.8, "log_loss": None} and report.pid == 42
    assert start.metrics == {}


def test_a_trial_that_used_its_budget_finished_and_an_error_failed():
    events = []
    progress = TrialProgress(events.append, kind=KINDS["xgboost"], max_steps=40, shown=[])
    done, broken = _trial(), _trial()
    done.update_last_result({"rounds": 40, "auc": 0.9})
    progress.on_trial_complete(0, [], done)
    progress.on_trial_error(0, [], broken)
    assert [(e.step, e.state, e.unit) for e in events] == [(40, "finished", "round"),
                                                           (0, "failed", "round")]


def test_a_display_that_raises_is_dropped_and_the_callback_pickles_without_it():
    calls = []

    def display(event):
        calls.append(event)
        raise RuntimeError("a display bug")

    progress = TrialProgress(display, kind=KINDS["mlp"], max_steps=4, shown=[])
    trial = _trial()
    progress.on_trial_start(0, [trial], trial)
    progress.on_trial_start(0, [trial], trial)
    assert len(calls) == 1
    revived = pickle.loads(pickle.dumps(TrialProgress(calls.append, kind=KINDS["mlp"],
                                                      max_steps=4, shown=[])))
    revived.on_trial_start(0, [trial], trial)
    assert len(calls) == 1  # the display stays in the driver
