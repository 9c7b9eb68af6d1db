"""Alert delivery from the outbox: a real store (SQLite and PostgreSQL), a real HTTP receiver on
loopback, real httpx clients; only the backoff's sleep is injected."""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlmodel import select

from appliance.errors import InvalidInput
from appliance.governance import audit
from appliance.monitor import notify
from appliance.store import session_scope, utcnow
from appliance.store.models import Alert, AlertDelivery, AuditEvent


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers the scripted
    statuses in order, then 200."""

    def __init__(self, statuses=(), *, port: int = 0, delay_s: float = 0.0) -> None:
        self.requests: list[dict] = []
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append({
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "json": json.loads(body),
                    })
                    status = receiver._statuses.pop(0) if receiver._statuses else 200
                if delay_s:
                    time.sleep(delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/alerts?token=s3cret"
        # A short poll: shutdown() waits up to one poll interval (default 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def keys(self) -> list[str]:
        return [r["headers"]["idempotency-key"] for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver():
    """Start receivers with `receiver(statuses, port=..., delay_s=...)`; all close afterwards."""
    started: list[Receiver] = []

    def start(statuses=(), **kwargs) -> Receiver:
        started.append(Receiver(statuses, **kwargs))
        return started[-1]

    yield start
    for r in started:
        r.close()


@pytest.fixture
def store(db_url):
    """The test's database; afterwards its audit chain must still verify."""
    yield db_url
    with session_scope(db_url) as session:
        result = audit.verify(session)
    assert result.ok, result


class Sleeps(list):
    """An injected `sleep` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _raise_alert(url, log_path, webhook, **fields) -> int:
    values = dict(kind="drift", rule="drift", severity="warning", model_name="credit",
                  deployment="credit-prod", version=3, value=0.4, threshold=0.3,
                  message="credit: data drift in window 7", owner="ana", team="risk",
                  runbook_url="https://wiki.example/runbooks/credit")
    values.update(fields)
    with session_scope(url) as session:
        alert = Alert(**values)
        session.add(alert)
        session.flush()
        notify.enqueue(session, alert, "raised", log_path=log_path, webhook=webhook)
        return alert.id


def _resolve_alert(url, alert_id, log_path, webhook) -> None:
    with session_scope(url) as session:
        alert = session.get(Alert, alert_id)
        alert.status, alert.resolved_by, alert.resolved_at = "resolved", "ana", utcnow()
        alert.resolution = "retrained"
        session.add(alert)
        notify.enqueue(session, alert, "resolved", log_path=log_path, webhook=webhook)


def _rows(url, alert_id) -> dict[tuple[str, str], AlertDelivery]:
    with session_scope(url) as session:
        rows = session.exec(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id))
        return {(r.event, r.channel): r for r in rows}


def _alert(url, alert_id) -> Alert:
    with session_scope(url) as session:
        return session.get(Alert, alert_id)


def _audit(url, action) -> list[dict]:
    with session_scope(url) as session:
        rows = session.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return [r.details for r in rows]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _set(url, delivery_id, **values) -> None:
    with session_scope(url) as session:
        row = session.get(AlertDelivery, delivery_id)
        for key, value in values.items():
            setattr(row, key, value)
        session.add(row)


def test_document_holds_the_alert_with_a_stable_event_id(store, tmp_path):
    alert_id = _raise_alert(store, tmp_path / "alerts.log", None, window_id=None)
    alert = _alert(store, alert_id)
    doc = notify.alert_document(alert, "raised")
    assert doc["event_id"] == f"alert-{alert_id}-raised" == notify.event_id(alert_id, "raised")
    assert doc == notify.alert_document(_alert(store, alert_id), "raised")
    assert set(doc) == {
        "event_id", "event", "id", "kind", "rule", "severity", "status", "model", "deployment",
        "version", "window_id", "value", "threshold", "occurrences", "message", "owner",
        "team", "runbook_url", "created_at", "acknowledged_by", "acknowledged_at",
        "resolved_by", "resolved_at", "resolution",
    }
    assert (doc["event"], doc["model"], doc["owner"], doc["version"]) == (
        "raised", "credit", "ana", 3)
    created = dt.datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
    assert created == alert.created_at
    assert doc["resolved_at"] is None
    assert json.loads(json.dumps(doc)) == doc
    with pytest.raises(InvalidInput, match="'fired'"):
        notify.alert_document(alert, "fired")


def test_enqueue_is_idempotent_and_events_are_separate(store, tmp_path):
    log = tmp_path / "alerts.log"
    alert_id = _raise_alert(store, log, "http://127.0.0.1:9/hook")
    with session_scope(store) as session:
        alert = session.get(Alert, alert_id)
        again = notify.enqueue(session, alert, "raised", log_path=log,
                               webhook="http://127.0.0.1:9/hook")
        assert [(r.channel, r.target) for r in again] == [
            ("log", str(log)), ("webhook", "http://127.0.0.1:9/hook")]
    assert set(_rows(store, alert_id)) == {("raised", "log"), ("raised", "webhook")}
    assert [r.id for r in again] == [
        _rows(store, alert_id)[("raised", c)].id for c in ("log", "webhook")]
    _resolve_alert(store, alert_id, log, None)
    _resolve_alert(store, alert_id, log, None)
    rows = _rows(store, alert_id)
    assert set(rows) == {("raised", "log"), ("raised", "webhook"), ("resolved", "log")}
    assert {r.status for r in rows.values()} == {"pending"}
    with session_scope(store) as session, pytest.raises(InvalidInput, match="no id"):
        notify.enqueue(session, Alert(kind="x", model_name="m", message="", owner="o"),
                       "raised", log_path=log, webhook=None)


def test_flaky_receiver_gets_each_event_once_after_backoff(store, tmp_path, receiver):
    hook = receiver([503, 503, 200])
    log = tmp_path / "logs" / "nested" / "alerts.log"  # the folder does not exist yet
    alert_id = _raise_alert(store, log, hook.url)
    sleeps = Sleeps()
    now = utcnow()
    stats = notify.deliver_pending(store, holder="h1", now=now, sleep=sleeps)
    assert stats == notify.DeliveryStats(delivered=2, retried=0, failed=0)
    assert sleeps == [0.25, 0.5]
    rows = _rows(store, alert_id)
    webhook, logged = rows[("raised", "webhook")], rows[("raised", "log")]
    assert (webhook.status, webhook.attempts, webhook.claimed_by) == ("delivered", 3, None)
    assert (logged.status, logged.attempts) == ("delivered", 1)
    assert webhook.delivered_at >= now
    doc = notify.alert_document(_alert(store, alert_id), "raised")
    assert hook.keys() == [doc["event_id"]] * 3
    assert all(r["json"] == doc for r in hook.requests)
    assert hook.requests[0]["path"] == "/hooks/alerts?token=s3cret"
    assert hook.requests[0]["headers"]["user-agent"].startswith("appliance/")
    assert sorted(_alert(store, alert_id).notified) == ["log", "webhook"]
    assert _lines(log) == [doc]

    _resolve_alert(store, alert_id, log, hook.url)
    stats = notify.deliver_pending(store, holder="h1", sleep=sleeps)
    assert stats.delivered == 2
    assert [line["event_id"] for line in _lines(log)] == [
        f"alert-{alert_id}-raised", f"alert-{alert_id}-resolved"]
    assert hook.keys()[3:] == [f"alert-{alert_id}-resolved"]
    assert hook.requests[3]["json"]["status"] == "resolved"
    assert sorted(_alert(store, alert_id).notified) == ["log", "webhook"]
    assert sorted((d["event"], d["channel"], d["attempts"])
                  for d in _audit(store, "alert.notified")) == [
        ("raised", "log", 1), ("raised", "webhook", 3),
        ("resolved", "log", 1), ("resolved", "webhook", 1)]
    # Nothing is due any more.
    assert notify.deliver_pending(store, holder="h1", sleep=sleeps) == notify.DeliveryStats()
    assert len(hook.requests) == 4


def test_down_receiver_stays_pending_then_delivers_when_up(store, tmp_path, receiver):
    down = receiver()
    port, url = down.port, down.url
    down.close()  # nothing listens on the port now: connections are refused
    alert_id = _raise_alert(store, tmp_path / "alerts.log", url)
    now = utcnow()
    sleeps = Sleeps()
    stats = notify.deliver_pending(store, holder="h1", now=now, sleep=sleeps)
    assert stats == notify.DeliveryStats(delivered=1, retried=1, failed=0)  # the log took it
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts, row.claimed_by, row.claimed_until) == (
        "pending", 3, None, None)
    assert row.next_attempt_at >= now + dt.timedelta(seconds=0.25 * 2**3)
    assert "ConnectError" in row.last_error
    assert "s3cret" not in row.last_error and "/hooks" not in row.last_error
    assert _alert(store, alert_id).notified == ["log"]

    # Not due yet: the next call leaves it alone.
    assert notify.deliver_pending(store, holder="h1", now=now, sleep=sleeps).retried == 0
    assert _rows(store, alert_id)[("raised", "webhook")].attempts == 3

    up = receiver(port=port)
    later = row.next_attempt_at + dt.timedelta(seconds=1)
    stats = notify.deliver_pending(store, holder="h1", now=later, sleep=sleeps)
    assert stats == notify.DeliveryStats(delivered=1)
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts) == ("delivered", 4)
    assert up.keys() == [f"alert-{alert_id}-raised"]
    assert sorted(_alert(store, alert_id).notified) == ["log", "webhook"]
    assert [d["attempts"] for d in _audit(store, "alert.notified")
            if d["channel"] == "webhook"] == [4]


@pytest.mark.parametrize(("code", "status", "attempts"), [
    (400, "failed", 1),
    (404, "failed", 1),
    (410, "failed", 1),
    (408, "pending", 3),
    (429, "pending", 3),
    (500, "pending", 3),
    (503, "pending", 3),
    (302, "failed", 1),
])
def test_status_codes_are_permanent_or_retryable(store, tmp_path, receiver, code, status,
                                                 attempts):
    hook = receiver([code] * 3)
    alert_id = _raise_alert(store, tmp_path / "alerts.log", hook.url)
    notify.deliver_pending(store, holder="h1", sleep=Sleeps())
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts, len(hook.requests)) == (status, attempts, attempts)
    assert row.last_error.startswith(f"HTTP {code}")


def test_permanent_4xx_fails_at_once_with_its_audit_event(store, tmp_path, receiver):
    hook = receiver([400])
    alert_id = _raise_alert(store, tmp_path / "alerts.log", hook.url)
    sleeps = Sleeps()
    stats = notify.deliver_pending(store, holder="h1", sleep=sleeps)
    assert stats == notify.DeliveryStats(delivered=1, failed=1)
    assert sleeps == []
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "HTTP 400 Bad Request")
    assert _audit(store, "alert.notify_failed") == [
        {"channel": "webhook", "event": "raised", "attempts": 1, "error": "HTTP 400 Bad Request"}]
    assert _alert(store, alert_id).notified == ["log"]
    # A failed delivery is never tried again.
    assert notify.deliver_pending(store, holder="h1", now=utcnow() + dt.timedelta(days=1),
                                  sleep=sleeps) == notify.DeliveryStats()
    assert len(hook.requests) == 1


def test_attempts_used_up_fail_with_their_audit_event(store, tmp_path, receiver):
    hook = receiver([503] * 10)
    alert_id = _raise_alert(store, tmp_path / "alerts.log", hook.url)
    sleeps = Sleeps()
    now = utcnow()
    stats = notify.deliver_pending(store, holder="h1", now=now, max_attempts=4, sleep=sleeps)
    assert stats == notify.DeliveryStats(delivered=1, retried=1)
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts) == ("pending", 3)
    stats = notify.deliver_pending(store, holder="h1", now=row.next_attempt_at, max_attempts=4,
                                   sleep=sleeps)
    assert stats == notify.DeliveryStats(failed=1)
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts, row.last_error) == (
        "failed", 4, "HTTP 503 Service Unavailable")
    assert len(hook.requests) == 4
    assert sleeps == [0.25, 0.5]  # the fourth try was the only one of its call
    assert _audit(store, "alert.notify_failed") == [{
        "channel": "webhook", "event": "raised", "attempts": 4,
        "error": "HTTP 503 Service Unavailable"}]


def test_expired_claim_is_sent_again_with_the_same_key(store, tmp_path, receiver):
    hook = receiver()
    alert_id = _raise_alert(store, tmp_path / "alerts.log", hook.url)
    notify.deliver_pending(store, holder="h1", sleep=Sleeps())
    # The state a sender leaves when it dies between the receiver's 2xx and its own commit.
    row = _rows(store, alert_id)[("raised", "webhook")]
    now = utcnow()
    _set(store, row.id, status="sending", attempts=0, delivered_at=None,
         claimed_by="dead-host:1:1", claimed_until=now - dt.timedelta(seconds=1))
    stats = notify.deliver_pending(store, holder="h2", now=now, sleep=Sleeps())
    assert stats == notify.DeliveryStats(delivered=1)
    assert hook.keys() == [f"alert-{alert_id}-raised"] * 2
    assert hook.requests[0]["json"] == hook.requests[1]["json"]
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts, row.claimed_by) == ("delivered", 1, None)
    assert sorted(_alert(store, alert_id).notified) == ["log", "webhook"]


def test_unexpired_claim_is_left_alone(store, tmp_path, receiver):
    hook = receiver()
    alert_id = _raise_alert(store, tmp_path / "alerts.log", hook.url)
    row = _rows(store, alert_id)[("raised", "webhook")]
    now = utcnow()
    until = now + dt.timedelta(seconds=30)
    _set(store, row.id, status="sending", claimed_by="alive:2:2", claimed_until=until)
    stats = notify.deliver_pending(store, holder="h2", now=now, sleep=Sleeps())
    assert stats == notify.DeliveryStats(delivered=1)  # the log row only
    assert hook.requests == []
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.claimed_by, row.claimed_until, row.attempts) == (
        "sending", "alive:2:2", until, 0)


def test_two_senders_at_once_send_each_event_once(store, tmp_path, receiver):
    hook = receiver(delay_s=0.005)
    log = tmp_path / "alerts.log"
    alert_ids = [_raise_alert(store, log, hook.url, message=f"alert {i}") for i in range(6)]
    for alert_id in alert_ids:
        _resolve_alert(store, alert_id, log, hook.url)
    expected = sorted(f"alert-{a}-{e}" for a in alert_ids for e in notify.EVENTS)
    senders = 3
    barrier = threading.Barrier(senders)
    results: list[notify.DeliveryStats] = []
    errors: list[BaseException] = []

    def send(holder: str) -> None:
        try:
            barrier.wait()
            results.append(notify.deliver_pending(store, holder=holder, sleep=Sleeps()))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(f"h{i}",)) for i in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(hook.keys()) == expected
    assert sorted(line["event_id"] for line in _lines(log)) == expected
    assert sum(s.delivered for s in results) == 2 * len(expected)
    assert sum(s.retried + s.failed for s in results) == 0
    for alert_id in alert_ids:
        rows = _rows(store, alert_id).values()
        assert {(r.status, r.attempts) for r in rows} == {("delivered", 1)}
        assert sorted(_alert(store, alert_id).notified) == ["log", "webhook"]
    assert collections.Counter(d["channel"] for d in _audit(store, "alert.notified")) == {
        "log": len(expected), "webhook": len(expected)}


def test_unwritable_log_is_retried_not_raised(store, tmp_path):
    log = tmp_path / "alerts.log"
    log.mkdir()  # a folder where the file should be
    alert_id = _raise_alert(store, log, None)
    stats = notify.deliver_pending(store, holder="h1", sleep=Sleeps())
    assert stats == notify.DeliveryStats(retried=1)
    row = _rows(store, alert_id)[("raised", "log")]
    assert (row.status, row.attempts) == ("pending", 3)
    assert row.last_error.startswith("IsADirectoryError")


def test_unusable_webhook_url_fails_at_once(store, tmp_path):
    alert_id = _raise_alert(store, tmp_path / "alerts.log", "ftp://example.invalid/hook")
    stats = notify.deliver_pending(store, holder="h1", sleep=Sleeps())
    assert stats == notify.DeliveryStats(delivered=1, failed=1)
    row = _rows(store, alert_id)[("raised", "webhook")]
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("UnsupportedProtocol")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"holder": ""}, "holder"),
    ({"now": dt.datetime(2026, 1, 1)}, "naive"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"tries_per_call": 0}, "tries_per_call"),
    ({"base_delay_s": -1}, "base_delay_s"),
    ({"claim_s": 0}, "claim_s"),
])
def test_bad_arguments_are_programming_errors(tmp_path, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        notify.deliver_pending(f"sqlite:///{tmp_path}/never.db", **{"holder": "h", **kwargs})
