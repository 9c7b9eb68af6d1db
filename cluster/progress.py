"""Training progress from Ray Train workers to the driver, for any model kind.

A worker reports one `ProgressEvent` per step (an MLP epoch, a block of N boosting rounds)
through the `ProgressSink` it finds in its train-loop config; the driver's `ProgressListener`
takes the events off a Ray actor-backed queue in a thread of its own and hands each to a
callback (the CLI's progress bar). Ray Train V2's callbacks run in its controller actor, not in
the driver process, hence the queue.

A sweep's trials report the same events, with their trial id, params and state, from Ray
Tune's driver-side callbacks (`cluster.tune_progress`): no queue there, Tune's controller runs
in the driver.

The listener also counts restarts: every event names the process that sent it, and a new
process for rank 0 after the first means Ray Train replaced the worker group (a worker died or
raised) and the run went on from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.util.queue import Empty, Queue


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """One step of a training run, as a worker reported it.

    Args:
        step: steps done so far (1-based: epoch k of `total` for the MLP).
        total: steps the run will take at most.
        metrics: the worker's metrics for this step (e.g. {"loss": 0.41}).
        rank: the reporting worker's world rank.
        pid: the reporting worker's process id.
        at: wall-clock time of the report (seconds since the epoch).
        unit: what one step counts: "epoch" (default) or "round" (boosting rounds, where
            `step` is the rounds done so far).
        trial: the sweep trial's id when the event is a trial's (default None: a training run).
        state: a trial's: "running" (default), "finished" (trained its whole budget),
            "stopped" (ASHA stopped it early) or "failed".
        params: a trial's tuned params (default None).
    """

    step: int
    total: int
    metrics: dict[str, Any]
    rank: int
    pid: int
    at: float
    unit: str = "epoch"
    trial: str | None = None
    state: str = "running"
    params: dict[str, Any] | None = None


class ProgressSink:
    """What a worker reports through; picklable, so it travels in the train-loop config."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def report(self, step: int, total: int, metrics: dict[str, Any], *, rank: int = 0,
               unit: str = "epoch") -> None:
        """Send one step's metrics (plain numbers) to the driver; never blocks training for
        long (the queue is unbounded). `unit` says what a step counts (`ProgressEvent`)."""
        self._queue.put(ProgressEvent(int(step), int(total), dict(metrics), int(rank),
                                      os.getpid(), time.time(), unit=unit))


@dataclasses.dataclass
class Restarts:
    """Restarts the listener saw: how many, and the step each new attempt resumed after."""

    count: int = 0
    resumed_from: list[int] = dataclasses.field(default_factory=list)


class ProgressListener:
    """Driver side: a queue, a thread that drains it into `on_event`, and the restarts seen.

    Use as a context manager around the training call; `sink` goes to the workers.

    Args:
        on_event: called in the listener's thread with each event (default None: only the
            restarts are tracked).
        poll_s: how long one wait on the queue lasts before checking for the end (0.2).
    """

    def __init__(self, on_event: Callable[[ProgressEvent], None] | None = None,
                 poll_s: float = 0.2) -> None:
        self._on_event = on_event
        self._poll_s = poll_s
        self._queue: Queue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid: int | None = None
        self.restarts = Restarts()
        self.events = 0

    @property
    def sink(self) -> ProgressSink:
        assert self._queue is not None, "use the listener as a context manager"
        return ProgressSink(self._queue)

    def __enter__(self) -> ProgressListener:
        # No CPU held: the queue must never compete with the training workers for a slot.
        self._queue = Queue(actor_options={"num_cpus": 0})
        self._thread = threading.Thread(target=self._drain, name="train-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._queue is not None:
            try:
                self._take(self._queue.get_nowait_batch(self._queue.size()))
            except ray.exceptions.RayError:
                pass  # the queue's actor died with the run: what it held is lost, not the error
            finally:
                self._queue.shutdown()

    def _drain(self) -> None:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                event = self._queue.get(timeout=self._poll_s)
            except Empty:
                continue
            except ray.exceptions.RayError:
                return  # the queue's actor is gone: nothing more will come
            self._take([event])

    def _take(self, events: list[ProgressEvent]) -> None:
        for event in events:
            self.events += 1
            if event.rank == 0:
                if self._pid is not None and event.pid != self._pid:
                    self.restarts.count += 1
                    self.restarts.resumed_from.append(event.step - 1)
                self._pid = event.pid
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:  # noqa: BLE001 - a display's bug must not stop the count
                    # The restarts above still need every event; only the display is dropped.
                    self._on_event = None
