"""`appliance.cli._progress.TrainProgress`: the training bar on stderr, fed the
`cluster.progress.ProgressEvent`s a run sends (named `_cli`: tests/cluster/test_progress.py
tests the events' side).

On a terminal: what is trained, the unit, step k of N, the loss and validation loss, nothing
else; off one (a log, captured stderr) nothing at all.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.text import Text

from appliance.cli._progress import TrainProgress
from cluster.progress import ProgressEvent


def _event(step, total, unit="epoch", **metrics):
    return ProgressEvent(step=step, total=total, metrics=metrics, rank=0, pid=1, at=0.0,
                         unit=unit)


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def _last_line(out: io.StringIO) -> str:
    # The live bar redraws its line; the last one drawn is what stays on screen.
    return Text.from_ansi(out.getvalue()).plain.splitlines()[-1]


def test_before_the_first_event_it_says_ray_train_is_starting():
    console, out = _terminal()
    with TrainProgress(console, "training") as bar:
        bar.describe("training credit on loans")
    line = _last_line(out)
    assert line.startswith("training credit on loans (starting Ray Train)")
    assert "0/?" in line


def test_each_update_shows_its_step_of_total_and_the_losses():
    console, out = _terminal()
    with TrainProgress(console, "training credit on loans") as bar:
        bar.update(_event(1, 10, loss=0.9, valid_loss=0.95))
        bar.update(_event(3, 10, loss=0.123456, valid_loss=0.234567, accuracy=0.9))
    line = _last_line(out)
    assert line.startswith("training credit on loans: epoch ")
    assert " 3/10 loss 0.1235  valid_loss 0.2346 " in line
    assert "accuracy" not in line and "starting" not in line


def test_boosting_rounds_and_a_missing_or_non_numeric_loss():
    console, out = _terminal()
    with TrainProgress(console, "training fraud on txns") as bar:
        bar.update(_event(40, 200, unit="round", loss=None, valid_loss="nan?"))
    line = _last_line(out)
    assert line.startswith("training fraud on txns: round ")
    assert " 40/200 " in line and "loss" not in line


def test_off_a_terminal_it_shows_nothing():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with TrainProgress(console, "training credit on loans") as bar:
        bar.describe("training credit on loans")
        bar.update(_event(3, 10, loss=0.5))
    assert out.getvalue() == ""
