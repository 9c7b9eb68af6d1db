"""A live progress bar for training runs, on stderr: step k/N (epochs or boosting rounds),
loss, elapsed.

Fed by `cluster.progress.ProgressEvent`s, which arrive in a thread of the driver; rich's
Progress takes updates from any thread. Off a terminal it shows nothing, so logs and captured
stderr carry only real messages.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TrainProgress:
    """Context manager: a spinner until the first event, then a bar of the run's steps.

    Args:
        console: where to draw (the CLI's stderr console).
        title: what is being trained, e.g. "training credit on credit-train".
    """

    def __init__(self, console: Console, title: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
            console=console, disable=not console.is_terminal, transient=False,
        )
        self._task = self._progress.add_task(f"{title} (starting Ray Train)", total=None,
                                             metrics="")
        self._title = title

    def __enter__(self) -> TrainProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def describe(self, title: str) -> None:
        """Name what is being trained, once it is known (the spec is read by the library)."""
        self._title = title
        self._progress.update(self._task, description=f"{title} (starting Ray Train)")

    def update(self, event: Any) -> None:
        """Show one `ProgressEvent`: its step of total and its loss (and validation loss)."""
        shown = [f"{key} {event.metrics[key]:.4g}" for key in ("loss", "valid_loss")
                 if isinstance(event.metrics.get(key), (int, float))]
        self._progress.update(self._task, description=f"{self._title}: {event.unit}",
                              completed=event.step, total=event.total, metrics="  ".join(shown))
