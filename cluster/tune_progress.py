"""A sweep's trials as `cluster.progress.ProgressEvent`s, for any trial kind.

Ray Tune's controller runs in the driver, and so do its callbacks: `TrialProgress` turns each
trial's start, reports and end into events with the trial's id, tuned params and state, and
hands them to the caller's callback in the driver's thread (unlike Ray Train V2, no queue is
needed). A trial's progress is its kind's progress metric (`TrialKind.progress`): epochs, or
boosting rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ray import tune

from cluster.progress import ProgressEvent
from cluster.tune import TUNE_KEYS, TrialKind, clean, status_of, steps_of


class TrialProgress(tune.Callback):
    """Tune callback: one `ProgressEvent` when a trial starts (state "running", step 0), one
    per report ("running") and one when it ends ("finished", "stopped" or "failed").

    Args:
        on_event: called with each event; an exception in it drops the display, never the
            sweep.
        kind: the trials' kind (what a step counts, which metric says it).
        max_steps: a trial's whole budget (epochs or rounds).
        shown: the params each event carries (the tuned ones).
    """

    def __init__(self, on_event: Callable[[ProgressEvent], None], *, kind: TrialKind,
                 max_steps: int, shown: list[str]) -> None:
        self._on_event: Callable[[ProgressEvent], None] | None = on_event
        self._kind = kind
        self._max_steps = max_steps
        self._shown = shown

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) into the experiment's folder; the
        # display it feeds (a console, locks) stays in this process.
        return {**self.__dict__, "_on_event": None}

    def _send(self, trial: Any, result: dict[str, Any] | None, state: str | None) -> None:
        if self._on_event is None:
            return
        result = result or {}
        step = steps_of(self._kind, result)
        if state is None:
            state = status_of(step, self._max_steps, failed=False)
        event = ProgressEvent(
            step=step, total=self._max_steps,
            metrics={k: clean(v) for k, v in result.items()
                     if k not in TUNE_KEYS and k != self._kind.progress},
            rank=0, pid=int(result.get("pid") or os.getpid()), at=time.time(),
            unit=self._kind.unit, trial=str(trial.trial_id), state=state,
            params={k: clean(trial.config.get(k)) for k in self._shown},
        )
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001 - a display's bug must not stop the sweep
            self._on_event = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, None, "running")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._send(trial, result, "running")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, trial.last_result, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send(trial, trial.last_result, "failed")
