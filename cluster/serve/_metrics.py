"""Prometheus metrics of serving, exported through Ray's metrics agent.

Ray exports every ``ray.serve.metrics`` metric on each node's metrics export port, prefixed
``ray_`` and tagged with the Serve application, deployment and replica. The ingress counts
requests and errors and times them; each model replica records its batch sizes and its
prediction log's backlog. Points are recorded from a thread, a fraction of a second later,
off the requests' path.

    ray_appliance_requests_total{model, version, route, code}
    ray_appliance_request_latency_ms_bucket{model, version, route, le}   (histogram)
    ray_appliance_batch_rows_bucket{model, version, le}                  (rows per model call)
    ray_appliance_batch_requests_bucket{model, version, le}              (requests per call)
    ray_appliance_log_backlog_rows{model, version}                       (gauge)
    ray_appliance_log_refused_total{model, version}                      (503s: log full)

``version`` is the version that answered (the ``x-model-version`` header), empty when no
model did (a 401, a 404, a 413).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from ray.serve import metrics

_log = logging.getLogger(__name__)

# Milliseconds; fine steps where a tabular model answers, coarse ones for queueing.
_LATENCY_MS = [1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000, 5000]
_BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384]


class _Recorder:
    """Records metric points from a thread of its own, every `interval_s`.

    Recording one point through Ray costs a few microseconds of Python (tags merged and
    checked, then the native call), and a request makes several: it should not wait for them,
    nor hold the GIL for them. Points wait in a bounded queue; if the thread ever falls that far
    behind, the oldest are dropped rather than memory grown. Once a second is plenty: Ray
    exports the points on an interval of seconds, and Prometheus scrapes on one of many.
    """

    def __init__(self, interval_s: float = 1.0, max_points: int = 100_000) -> None:
        self._interval_s = interval_s
        self._points: collections.deque[tuple[Callable, float, dict]] = collections.deque(
            maxlen=max_points)
        self._failed = False
        threading.Thread(target=self._run, name="appliance-metrics", daemon=True).start()

    def add(self, record: Callable, value: float, tags: dict) -> None:
        self._points.append((record, value, tags))  # thread-safe, O(1)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_s)
            self.drain()

    def drain(self) -> None:
        while self._points:
            record, value, tags = self._points.popleft()
            try:
                record(value, tags=tags)
            except Exception:  # a bad point must not stop the others; say so once
                if not self._failed:
                    _log.exception("could not record a serving metric")
                    self._failed = True


_recorder: _Recorder | None = None
_recorder_lock = threading.Lock()


def _record(record: Callable, value: float, tags: dict) -> None:
    global _recorder
    if _recorder is None:
        with _recorder_lock:
            if _recorder is None:
                _recorder = _Recorder()
    _recorder.add(record, value, tags)


class IngressMetrics:
    """Requests, errors by code, and latency, per model, version and route."""

    def __init__(self) -> None:
        self._requests = metrics.Counter(
            "appliance_requests_total",
            description="OIP requests answered, by model, version, route and HTTP status.",
            tag_keys=("model", "version", "route", "code"),
        )
        self._latency = metrics.Histogram(
            "appliance_request_latency_ms",
            description="Time from the ingress receiving a request to its answer, in ms.",
            boundaries=_LATENCY_MS,
            tag_keys=("model", "version", "route"),
        )

    def done(self, model: str, route: str, reply, started: float) -> None:
        """Record the `reply` (a `Reply`) to a request on `route` begun at `started`."""
        version = (reply.headers or {}).get("x-model-version", "")
        tags = {"model": model, "version": version, "route": route}
        _record(self._requests.inc, 1, {**tags, "code": str(reply.status)})
        _record(self._latency.observe, (time.perf_counter() - started) * 1000.0, tags)


class ReplicaMetrics:
    """Batch sizes and prediction log backlog of one model replica."""

    def __init__(self, model: str, version: str) -> None:
        self._tags = {"model": model, "version": version}
        keys = ("model", "version")
        self._rows = metrics.Histogram(
            "appliance_batch_rows", description="Rows scored per model call.",
            boundaries=_BATCH, tag_keys=keys,
        )
        self._requests = metrics.Histogram(
            "appliance_batch_requests", description="Requests scored together per model call.",
            boundaries=_BATCH, tag_keys=keys,
        )
        self._backlog = metrics.Gauge(
            "appliance_log_backlog_rows",
            description="Prediction log rows logged but not yet published (fsync, rename).",
            tag_keys=keys,
        )
        self._refused = metrics.Counter(
            "appliance_log_refused_total",
            description="Requests refused with 503 because the prediction log was full.",
            tag_keys=keys,
        )

    def batch(self, requests: int, rows: int) -> None:
        _record(self._requests.observe, requests, self._tags)
        _record(self._rows.observe, rows, self._tags)

    def backlog(self, rows: int) -> None:
        self._backlog.set(rows, tags=self._tags)

    def refused(self) -> None:
        _record(self._refused.inc, 1, self._tags)
