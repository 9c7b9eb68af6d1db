"""Serving's Prometheus metrics (`cluster.serve._metrics`) without Ray: the recorder thread that
takes metric points off the request path, and the points the ingress and the replicas record,
through Ray Serve's real metric objects (which check each point's tags against their keys).
Exported by a real Ray's metrics agent and scraped: tests/cluster/test_serve_hardening.py::
test_prometheus_metrics. (Named apart from tests/monitor/test_metrics.py, the live-accuracy
metrics.)"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from cluster.serve import _metrics
from cluster.serve._metrics import IngressMetrics, ReplicaMetrics, _Recorder
from cluster.serve._oip import Reply, error


class _Points:
    """A metric's record method as the recorder calls it: ``record(value, tags=...)``."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.seen: list[tuple[float, dict]] = []
        self.fail_on = fail_on
        self.thread: str | None = None

    def __call__(self, value: float, *, tags: dict) -> None:
        self.thread = threading.current_thread().name
        if value == self.fail_on:
            raise ValueError(f"bad point {value}")
        self.seen.append((value, tags))


@pytest.fixture
def recorder(monkeypatch) -> _Recorder:
    """The process's recorder, replaced by one whose thread never wakes during a test: the
    test drains it."""
    found = _Recorder(interval_s=3600)
    monkeypatch.setattr(_metrics, "_recorder", found)
    return found


def test_drain_records_in_order_and_a_bad_point_is_logged_once(caplog):
    points = _Points(fail_on=2)
    rec = _Recorder(interval_s=3600)
    for value in (1, 2, 3, 2, 4):
        rec.add(points, value, {"i": str(value)})
    with caplog.at_level(logging.ERROR, logger="cluster.serve._metrics"):
        rec.drain()
    assert points.seen == [(1, {"i": "1"}), (3, {"i": "3"}), (4, {"i": "4"})]
    assert [r.message for r in caplog.records] == ["could not record a serving metric"]


def test_a_recorder_that_falls_behind_drops_the_oldest_points():
    points = _Points()
    rec = _Recorder(interval_s=3600, max_points=3)
    for value in range(5):
        rec.add(points, value, {})
    rec.drain()
    assert [v for v, _ in points.seen] == [2, 3, 4]


def test_the_recorders_thread_records_on_its_interval():
    points = _Points()
    rec = _Recorder(interval_s=0.1)  # its thread lives on, as a replica's does
    rec.add(points, 1.5, {"model": "m"})
    deadline = time.monotonic() + 5
    while not points.seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert points.seen == [(1.5, {"model": "m"})]
    assert points.thread == "appliance-metrics"  # never the request's thread


def test_one_recorder_per_process_started_on_first_use(monkeypatch):
    monkeypatch.setattr(_metrics, "_recorder", None)
    points = _Points()
    _metrics._record(points, 1, {})
    first = _metrics._recorder
    _metrics._record(points, 2, {})
    assert first is not None and _metrics._recorder is first
    first.drain()
    assert [v for v, _ in points.seen] == [1, 2]


def test_the_ingress_counts_each_answer_by_code_and_times_it(recorder):
    metrics = IngressMetrics()
    assert metrics._requests._name == "appliance_requests_total"
    assert metrics._latency._name == "appliance_request_latency_ms"
    started = time.perf_counter() - 0.005
    metrics.done("credit", "infer", Reply(200, {}, {"x-model-version": "3"}), started)
    metrics.done("credit", "metadata", error(401, "no token"), time.perf_counter())
    points = list(recorder._points)
    assert [(p[0].__name__, p[2]) for p in points] == [
        ("inc", {"model": "credit", "version": "3", "route": "infer", "code": "200"}),
        ("observe", {"model": "credit", "version": "3", "route": "infer"}),
        # No model answered: the version is empty.
        ("inc", {"model": "credit", "version": "", "route": "metadata", "code": "401"}),
        ("observe", {"model": "credit", "version": "", "route": "metadata"}),
    ]
    assert points[0][1] == 1 and points[1][1] >= 5.0  # milliseconds
    recorder.drain()
    assert not recorder._failed  # Ray's metrics took every point's tags


def test_a_replica_records_its_batches_and_refusals_and_sets_its_backlog(recorder):
    metrics = ReplicaMetrics("credit", "2")
    metrics.batch(requests=3, rows=40)
    metrics.refused()
    metrics.backlog(17)  # a gauge, set at once on the health check's thread
    tags = {"model": "credit", "version": "2"}
    assert [(p[0].__self__._name, p[1], p[2]) for p in recorder._points] == [
        ("appliance_batch_requests", 3, tags),
        ("appliance_batch_rows", 40, tags),
        ("appliance_log_refused_total", 1, tags),
    ]
    recorder.drain()
    assert not recorder._failed
