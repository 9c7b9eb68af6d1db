"""Live progress of a sweep, on stderr: one row per trial (id, tuned params, epoch or round
k/N, the sweep's metric, running / stopped early / done / failed), then the retraining of the
best.

Fed by `cluster.progress.ProgressEvent`s: a trial's come from Ray Tune's callbacks in the
driver's main thread, the retraining's from a listener thread; rich's Live redraws from its
own thread and reads the latest event of each trial. Off a terminal (a log, a pipe) there is
no live view: each trial's end is written as one line, so captured stderr says how every trial
ended and nothing else.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

_STATES = {"running": "running", "finished": "done", "stopped": "stopped early",
           "failed": "failed"}


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "<none>" if value is None else str(value)


def _params(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={_number(v)}" for k, v in (params or {}).items()) or "<none>"


class TuneProgress:
    """Context manager: the live trial table on a terminal, one line per ended trial off it.

    Args:
        console: where to draw (the CLI's stderr console).
        title: what is being tuned, e.g. "tuning credit on credit-train".
        metric: the sweep's metric, shown for each trial.
        samples: trials the sweep will run.
    """

    def __init__(self, console: Console, title: str, metric: str, samples: int) -> None:
        self._console = console
        self._title = title
        self._metric = metric
        self._samples = samples
        self._trials: dict[str, Any] = {}
        self._retrain: Any = None
        self._live = (Live(get_renderable=self._render, console=console, transient=False,
                           refresh_per_second=4) if console.is_terminal else None)

    def __enter__(self) -> TuneProgress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def describe(self, title: str, metric: str, samples: int) -> None:
        """Name the sweep, its metric and its trial count, once known (the spec is read by
        the library)."""
        self._title, self._metric, self._samples = title, metric, samples

    def update(self, event: Any) -> None:
        """Take one `ProgressEvent`: a trial's (its row) or the retraining's (the last line)."""
        if event.trial is None:
            self._retrain = event
            return
        self._trials[event.trial] = event
        if self._live is None and event.state != "running":
            self._console.print(self.line(event), soft_wrap=True, highlight=False,
                                markup=False)

    def line(self, event: Any) -> str:
        """One trial's state in a line: id, state, progress, metric and params."""
        value = event.metrics.get(self._metric)
        return (f"trial {event.trial}: {_STATES.get(event.state, event.state)} at "
                f"{event.unit} {event.step}/{event.total}, {self._metric} {_number(value)} "
                f"({_params(event.params)})")

    def _render(self) -> Group:
        trials = list(self._trials.values())
        unit = trials[0].unit if trials else "epoch"
        table = Table(box=None, pad_edge=False, header_style="bold")
        for header in ("TRIAL", "PARAMS", unit.upper(), self._metric.upper(), "STATUS"):
            table.add_column(header, no_wrap=True)
        for e in trials:
            table.add_row(e.trial, _params(e.params), f"{e.step}/{e.total}",
                          _number(e.metrics.get(self._metric)), _STATES.get(e.state, e.state))
        done = sum(e.state != "running" for e in trials)
        head = (f"{self._title}: {done} of {self._samples} trials ended" if trials
                else f"{self._title}: starting Ray Tune")
        parts: list[Any] = [Text(head), table]
        if self._retrain is not None:
            r = self._retrain
            loss = r.metrics.get("loss")
            parts.append(Text(f"retraining the best: {r.unit} {r.step}/{r.total}"
                              + (f", loss {loss:.4g}" if isinstance(loss, float) else "")))
        return Group(*parts)
