"""The sweep's progress view: one line per ended trial off a terminal, a live table of every
trial on one (fed the same kind-neutral events a sweep sends)."""

from __future__ import annotations

import io

from rich.console import Console

from appliance.cli._tune_progress import TuneProgress
from cluster.progress import ProgressEvent


def _event(trial, step, state, value, unit="round", total=16):
    return ProgressEvent(step=step, total=total, metrics={"log_loss": value}, rank=0, pid=1,
                         at=0.0, unit=unit, trial=trial, state=state,
                         params={"eta": 0.0123456, "max_depth": 3})


def _feed(console):
    with TuneProgress(console, "tuning trees", "log_loss", samples=2) as view:
        view.update(_event("t1", 0, "running", None))
        view.update(_event("t1", 2, "running", 0.61))
        view.update(_event("t2", 2, "stopped", 0.65))
        view.update(_event("t1", 16, "finished", 0.4567891))
        view.update(ProgressEvent(step=3, total=16, metrics={"loss": 0.5}, rank=0, pid=2,
                                  at=0.0, unit="round"))
        return view


def test_off_a_terminal_each_ended_trial_is_one_line():
    out = io.StringIO()
    _feed(Console(file=out, force_terminal=False, width=40))
    # Never wrapped, whatever the width: a log line per trial.
    assert out.getvalue().splitlines() == [
        "trial t2: stopped early at round 2/16, log_loss 0.65 (eta=0.01235 max_depth=3)",
        "trial t1: done at round 16/16, log_loss 0.4568 (eta=0.01235 max_depth=3)",
    ]


def test_on_a_terminal_every_trial_has_a_row():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    view = _feed(console)
    with console.capture() as capture:
        console.print(view._render())
    text = capture.get()
    assert "tuning trees: 2 of 2 trials ended" in text
    assert "ROUND" in text and "LOG_LOSS" in text
    assert "t1" in text and "16/16" in text and "done" in text
    assert "t2" in text and "stopped early" in text
    assert "retraining the best: round 3/16, loss 0.5" in text
