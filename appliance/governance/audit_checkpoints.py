"""Audit checkpoints: signed notes of the chain's length and head, kept outside the database.

A checkpoint says "database D had N events and its head hash was H at time T", with an HMAC
under the audit key over all of it. Deleting the last rows of the chain, or swapping the table
for an older backup, leaves a table shorter than (or with another head than) the latest
checkpoint, which `audit.verify` reports. Each line of the sink names its database, so one home
may hold the checkpoints of several stores.

The sink that `verify` reads is an append-only JSONL file (``audit-checkpoints.jsonl`` under the
home, or ``audit_checkpoints``/``APPLIANCE_AUDIT_CHECKPOINTS``), opened with O_APPEND, locked
while a line is written and fsynced. Copies may go to syslog and to a webhook (``audit_syslog``,
``audit_webhook``) for a collector that the database's administrator cannot reach.

An ``anchor`` line is the explicit re-anchoring of events written before the chain was keyed:
it says that the first N unkeyed events, with head H, are accepted as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
from hmac import compare_digest
from pathlib import Path

from sqlalchemy.engine import make_url

from appliance.governance.audit_key import AuditKey

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
ANCHOR = "anchor"
_WEBHOOK_TIMEOUT_S = 5.0


def database_identity(url: object) -> str:
    """The name under which a store's checkpoints are kept: no user and no password.

    SQLite is named by its file's absolute path, other backends by host, port and database, so
    every node that reaches the same database names it the same way.
    """
    parsed = make_url(str(url)) if not hasattr(url, "get_backend_name") else url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return "sqlite::memory:"
        return f"sqlite:{Path(parsed.database).expanduser().resolve()}"
    port = parsed.port or {"postgresql": 5432}.get(backend, "")
    return f"{backend}://{parsed.host or 'localhost'}:{port}/{parsed.database or ''}"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One signed line of the sink.

    Args:
        kind: ``checkpoint`` (the chain's state) or ``anchor`` (accepted unkeyed prefix).
        db: `database_identity` of the store.
        events: how many events the chain had (for an anchor: how many unkeyed ones).
        head_hash: the hash of event number `events`.
        ts: when it was taken (UTC, ISO 8601).
        key_id: fingerprint of the key that signed it.
        hmac: HMAC-SHA256 over all the fields above.
    """

    kind: str
    db: str
    events: int
    head_hash: str
    ts: str
    key_id: str
    hmac: str = ""

    def _message(self) -> bytes:
        body = dataclasses.asdict(self)
        body.pop("hmac")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: AuditKey) -> Checkpoint:
        """This checkpoint with its HMAC under `key`."""
        unsigned = dataclasses.replace(self, key_id=key.key_id, hmac="")
        return dataclasses.replace(unsigned, hmac=key.sign(unsigned._message()))

    def valid(self, key: AuditKey) -> bool:
        """Whether the HMAC is `key`'s over these fields."""
        return self.key_id == key.key_id and compare_digest(
            self.hmac, key.sign(self._message()))

    def line(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))


def make(key: AuditKey, kind: str, db: str, events: int, head_hash: str,
         now: dt.datetime | None = None) -> Checkpoint:
    """A signed checkpoint (or anchor) taken at `now` (default: the current time)."""
    ts = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).isoformat()
    return Checkpoint(kind=kind, db=db, events=events, head_hash=head_hash, ts=ts,
                      key_id=key.key_id).signed(key)


def append(path: Path, checkpoint: Checkpoint) -> None:
    """Append `checkpoint` as one line to the file sink and fsync it.

    Raises:
        OSError: the file cannot be created or written.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (checkpoint.line() + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        # O_APPEND alone keeps lines whole on a local file system; the lock also keeps them
        # whole on network file systems, where appends are not atomic.
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(checkpoint: Checkpoint, *, syslog: bool, webhook: str | None) -> None:
    """Send copies of `checkpoint` to syslog and/or a webhook; failures are logged, not raised
    (the file sink is the record; these are extra witnesses)."""
    if syslog:
        import syslog as _syslog  # deferred: Unix only, and only when configured

        _syslog.openlog("appliance-audit", 0, _syslog.LOG_AUTH)
        _syslog.syslog(_syslog.LOG_NOTICE, checkpoint.line())
    if webhook:
        import httpx  # deferred: only when a webhook is configured

        try:
            httpx.post(webhook, content=checkpoint.line(), timeout=_WEBHOOK_TIMEOUT_S,
                       headers={"content-type": "application/json"}).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("audit checkpoint webhook failed: %s", exc)


@dataclasses.dataclass
class SinkContents:
    """What the file sink holds for one database.

    Args:
        checkpoints: valid ``checkpoint`` lines for it, in file order.
        anchors: valid ``anchor`` lines for it.
        problems: lines that are not valid checkpoints (forged, garbled, another key).
    """

    checkpoints: list[Checkpoint]
    anchors: list[Checkpoint]
    problems: list[str]

    @property
    def latest(self) -> Checkpoint | None:
        """The checkpoint of the longest chain (lines from concurrent writers may interleave)."""
        return max(self.checkpoints, key=lambda c: c.events, default=None)


def read(path: Path, key: AuditKey | None, db: str) -> SinkContents:
    """The valid checkpoints and anchors for `db` in the file sink, and every bad line.

    A line that does not parse is reported whatever database it names, since its name cannot
    be trusted; a parsed line with a wrong HMAC is reported when it claims to be for `db`.
    """
    found = SinkContents([], [], [])
    path = Path(path).expanduser()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return found
    fields = {f.name for f in dataclasses.fields(Checkpoint)}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"checkpoint line {number} of {str(path)!r}"
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or set(doc) != fields:
                raise ValueError("fields")
            cp = Checkpoint(**doc)
            if cp.kind not in (CHECKPOINT, ANCHOR) or not isinstance(cp.events, int):
                raise ValueError("kind")
        except (ValueError, TypeError):
            found.problems.append(f"{where} is not a checkpoint (garbled or forged)")
            continue
        if cp.db != db:
            continue
        if key is None or not cp.valid(key):
            why = ("was signed with another key" if key is not None and cp.key_id != key.key_id
                   else "has an HMAC that does not match (forged)")
            found.problems.append(f"{where} {why}")
            continue
        (found.anchors if cp.kind == ANCHOR else found.checkpoints).append(cp)
    return found
