"""An attacker with database access, on SQLite and PostgreSQL: every way of tampering with the
audit chain is caught by `verify`, which names the first bad event.

The attacker works through a connection of their own (raw SQL), as a database administrator
would; they can read everything in the database but not the key or the checkpoint file, which
live under the appliance home.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os

import governance_world as gw
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlmodel import Session, select

from appliance.config import load_config
from appliance.errors import CheckFailed, ConflictError, InvalidInput, PermissionDenied
from appliance.governance import audit
from appliance.governance.users import create_user, get_user
from appliance.store import session_scope
from appliance.store.models import AuditEvent

EVENTS = 8


@pytest.fixture
def cfg(tmp_path):
    """A home of this test's own: its key and checkpoint file, configured for the process."""
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path / "home")})
    with audit.configured(cfg):
        yield cfg


@pytest.fixture
def chain(db_url, cfg):
    """`db_url` with EVENTS events, each committed (and so checkpointed) on its own."""
    for i in range(1, EVENTS + 1):
        with session_scope(db_url) as s:
            audit.record(s, "ops", "thing.done", "thing", i, {"n": i})
    return db_url


def _attack(url: str, *statements: tuple[str, dict]) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for sql, params in statements:
                conn.execute(text(sql), params)
    finally:
        engine.dispose()


def _hash(url: str, event_id: int) -> str:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT hash FROM auditevent WHERE id = :i"),
                                {"i": event_id}).scalar_one()
    finally:
        engine.dispose()


def _verify(url: str) -> audit.VerifyResult:
    with session_scope(url) as s:
        return audit.verify(s)


def _recompute(url: str, digest, key_id: str | None) -> None:
    """Rewrite the whole chain as the attacker can: every link and hash, with `digest`."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with Session(engine) as s:
            rows = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
            prev, updates = "0" * 64, []
            for e in rows:
                body = {"id": e.id, "ts": e.ts.astimezone(dt.timezone.utc).isoformat(),
                        "actor": e.actor, "action": e.action, "object_type": e.object_type,
                        "object_id": e.object_id, "details": e.details, "prev_hash": prev}
                if key_id is not None:
                    body["key_id"] = key_id
                new = digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
                updates.append({"i": e.id, "p": prev, "h": new, "k": key_id})
                prev = new
        with engine.begin() as conn:
            for u in updates:
                conn.execute(text("UPDATE auditevent SET prev_hash = :p, hash = :h, key_id = :k "
                                  "WHERE id = :i"), u)
    finally:
        engine.dispose()


def _broken(result: audit.VerifyResult, at: int | None, needle: str) -> None:
    assert not result.ok, result
    assert result.broken_at == at, result
    assert needle in result.reason, result.reason


def test_an_intact_chain_verifies_against_its_checkpoint(chain, cfg):
    result = _verify(chain)
    assert result.ok and result.events == EVENTS and result.findings == []
    assert result.checkpoint_events == EVENTS and result.head == _hash(chain, EVENTS)
    key = cfg.home / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # The key is never in the database nor in the checkpoints.
    secret = key.read_text().strip()
    assert secret not in (cfg.home / "audit-checkpoints.jsonl").read_text()


def test_an_edited_row(chain):
    _attack(chain, ("UPDATE auditevent SET actor = 'mallory' WHERE id = 4", {}))
    _broken(_verify(chain), 4, "does not match its hash (HMAC)")


def test_a_deleted_middle_row(chain):
    _attack(chain, ("DELETE FROM auditevent WHERE id = 4", {}))
    _broken(_verify(chain), 5, "event 4 is missing")


def test_a_forged_row_appended(chain):
    _attack(chain, (
        "INSERT INTO auditevent (id, ts, actor, action, object_type, object_id, details, "
        "prev_hash, hash, key_id) SELECT :i, ts, 'mallory', 'model.promote.approved', "
        "object_type, object_id, details, hash, :h, key_id FROM auditevent WHERE id = :last",
        {"i": EVENTS + 1, "h": "f" * 64, "last": EVENTS}))
    _broken(_verify(chain), EVENTS + 1, "HMAC")


def test_a_forged_row_inserted_in_the_middle(chain):
    shifts = [("UPDATE auditevent SET id = :n WHERE id = :o", {"n": i + 1, "o": i})
              for i in range(EVENTS, 4, -1)]
    # The forged row links into the chain: the row after it now names it as its previous.
    _attack(chain, *shifts,
            ("UPDATE auditevent SET prev_hash = :h WHERE id = 6", {"h": "e" * 64}), (
        "INSERT INTO auditevent (id, ts, actor, action, object_type, object_id, details, "
        "prev_hash, hash, key_id) SELECT 5, ts, 'mallory', action, object_type, object_id, "
        "details, hash, :h, key_id FROM auditevent WHERE id = 4", {"h": "e" * 64}))
    _broken(_verify(chain), 5, "HMAC")


def test_two_rows_swapped(chain):
    _attack(chain,
            ("UPDATE auditevent SET id = -1 WHERE id = 3", {}),
            ("UPDATE auditevent SET id = 3 WHERE id = 4", {}),
            ("UPDATE auditevent SET id = 4 WHERE id = -1", {}))
    _broken(_verify(chain), 3, "previous-hash link broken")


def test_the_last_rows_deleted(chain):
    _attack(chain, ("DELETE FROM auditevent WHERE id > 5", {}))
    result = _verify(chain)
    _broken(result, 6, f"recorded {EVENTS} events, the table has 5")
    assert result.checkpoint_events == EVENTS


def test_every_row_deleted(chain):
    _attack(chain, ("DELETE FROM auditevent", {}))
    _broken(_verify(chain), 1, "the last rows were deleted")


def test_the_chain_recomputed_with_the_old_unkeyed_algorithm(chain, cfg):
    _recompute(chain, lambda body: hashlib.sha256(body).hexdigest(), key_id=None)
    _broken(_verify(chain), 1, "written without the audit key")
    # Caught by the key alone: without any checkpoint too.
    (cfg.home / "audit-checkpoints.jsonl").unlink()
    _broken(_verify(chain), 1, "written without the audit key")


def test_the_chain_recomputed_with_a_wrong_key(chain, cfg):
    ours = _verify(chain).key_id  # the fingerprint is no secret: it is in every row

    def mallory(body: bytes) -> str:
        return hmac.new(b"m" * 32, body, hashlib.sha256).hexdigest()

    _recompute(chain, mallory, key_id=ours)
    _broken(_verify(chain), 1, "does not match its hash (HMAC)")
    _recompute(chain, mallory, key_id="0123456789abcdef")
    _broken(_verify(chain), 1, "not with the configured key")


def test_a_forged_checkpoint_line_is_reported(chain, cfg):
    sink = cfg.home / "audit-checkpoints.jsonl"
    lines = sink.read_text().splitlines()
    forged = json.loads(lines[-1]) | {"events": 3, "head_hash": _hash(chain, 3)}
    with sink.open("a") as f:
        f.write(json.dumps(forged) + "\n")
    result = _verify(chain)
    assert not result.ok and result.broken_at is None
    assert f"checkpoint line {len(lines) + 1}" in result.reason and "forged" in result.reason
    # The forged line does not hide a truncation: the latest valid checkpoint still counts.
    _attack(chain, ("DELETE FROM auditevent WHERE id > 3", {}))
    _broken(_verify(chain), 4, f"recorded {EVENTS} events")
    with sink.open("a") as f:
        f.write("{not json\n")
    assert "garbled" in _verify(chain).findings[-1]


def test_concurrent_writers_leave_valid_checkpoints(db_url, cfg):
    errors = gw.audit_concurrently(db_url, writers=2, events=10)
    assert not errors, errors
    result = _verify(db_url)
    assert result.ok and result.events == 20 and result.checkpoint_events == 20
    assert result.findings == []


def test_a_rolled_back_event_is_never_checkpointed(db_url, cfg):
    with session_scope(db_url) as s:
        audit.record(s, "ops", "thing.done", "thing", 1)
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        audit.record(s, "ops", "thing.done", "thing", 2)
        raise RuntimeError("the action failed after its audit event")
    with session_scope(db_url) as s:
        with s.begin_nested() as savepoint:
            audit.record(s, "ops", "thing.done", "thing", 3)
            savepoint.rollback()
        audit.record(s, "ops", "thing.done", "thing", 4)
    result = _verify(db_url)
    assert result.ok and result.events == 2 and result.checkpoint_events == 2, result
    # The next writer takes the ids the rolled-back events had: no false alarm either.
    with session_scope(db_url) as s:
        audit.record(s, "ops", "thing.done", "thing", 5)
    assert _verify(db_url).ok


def test_health_reports_a_missing_checkpoint(chain, cfg):
    with session_scope(chain) as s:
        assert audit.health(s).ok
    (cfg.home / "audit-checkpoints.jsonl").unlink()
    with session_scope(chain) as s:
        assert audit.verify(s).ok
        result = audit.health(s, cfg)
    assert not result.ok and "no checkpoint yet" in result.reason


def test_the_key_must_be_private_and_present(chain, cfg):
    key = cfg.home / "audit.key"
    os.chmod(key, 0o644)
    with pytest.raises(InvalidInput, match="has mode 0644; it must be readable by its owner"):
        _verify(chain)
    with pytest.raises(InvalidInput, match="mode 0644"), session_scope(chain) as s:
        audit.record(s, "ops", "thing.done", "thing", 99)
    key.unlink()
    _broken(_verify(chain), 1, "does not exist")


def test_a_key_file_from_the_environment(db_url, tmp_path, monkeypatch):
    key = tmp_path / "secrets" / "audit.key"
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("APPLIANCE_AUDIT_KEY_FILE", str(key))
    with session_scope(db_url) as s:
        audit.record(s, "ops", "thing.done", "thing", 1)
    assert key.is_file() and not (tmp_path / "home" / "audit.key").exists()
    assert _verify(db_url).ok and (tmp_path / "home" / "audit-checkpoints.jsonl").is_file()


def _legacy(url: str, count: int) -> None:
    # What a version before the keyed chain wrote: plain sha256, key_id NULL.
    prev = "0" * 64
    for i in range(1, count + 1):
        ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
        body = {"id": i, "ts": ts.isoformat(), "actor": "old", "action": "thing.done",
                "object_type": "thing", "object_id": str(i), "details": {}, "prev_hash": prev}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                .encode()).hexdigest()
        with session_scope(url) as s:
            s.add(AuditEvent(id=i, ts=ts, actor="old", action="thing.done", object_type="thing",
                             object_id=str(i), details={}, prev_hash=prev, hash=digest))
        prev = digest


def test_unkeyed_events_verify_only_once_anchored(db_url, cfg):
    _legacy(db_url, 3)
    _broken(_verify(db_url), 1, "appliance audit anchor")
    with session_scope(db_url) as s:
        root = create_user(s, "root", "admin", actor="root")
        viewer = create_user(s, "v", "viewer", actor="root")
    _broken(_verify(db_url), 1, "no anchor covers it")
    with pytest.raises(PermissionDenied), session_scope(db_url) as s:
        audit.anchor(s, viewer)
    with session_scope(db_url) as s:
        cp = audit.anchor(s, root)
    assert cp.events == 3 and cp.head_hash == _hash(db_url, 3)
    result = _verify(db_url)
    assert result.ok and result.events == 6 and result.checkpoint_events == 6, result
    # An anchored unkeyed event edited is caught as before.
    _attack(db_url, ("UPDATE auditevent SET actor = 'mallory' WHERE id = 2", {}))
    _broken(_verify(db_url), 2, "does not match its hash")
    _attack(db_url, ("UPDATE auditevent SET actor = 'old' WHERE id = 2", {}))
    # The keyed part rewritten as unkeyed: caught, and it cannot be anchored.
    _recompute(db_url, lambda body: hashlib.sha256(body).hexdigest(), key_id=None)
    result = _verify(db_url)
    assert not result.ok and result.broken_at in (1, 4), result
    with pytest.raises(ConflictError, match="refusing to anchor 6 unkeyed events"), \
            session_scope(db_url) as s:
        audit.anchor(s, get_user(s, "root"))


def test_anchor_refuses_a_broken_unkeyed_chain(db_url, cfg):
    _legacy(db_url, 3)
    _attack(db_url, ("UPDATE auditevent SET actor = 'mallory' WHERE id = 2", {}))
    with session_scope(db_url) as s:
        root = create_user(s, "root", "admin", actor="root")
    with pytest.raises(CheckFailed, match="unkeyed audit event 2 does not verify"), \
            session_scope(db_url) as s:
        audit.anchor(s, root)


def test_a_keyed_chain_has_nothing_to_anchor(chain, cfg):
    with session_scope(chain) as s:
        root = create_user(s, "root", "admin", actor="root")
    with pytest.raises(ConflictError, match="nothing|no unkeyed"), session_scope(chain) as s:
        audit.anchor(s, root)


def test_export_since(chain):
    with session_scope(chain) as s:
        everything = list(audit.export(s))
        cut = everything[4].ts
        later = list(audit.export(s, cut))
        with pytest.raises(InvalidInput, match="no time zone"):
            list(audit.export(s, cut.replace(tzinfo=None)))
    assert [e.id for e in everything] == list(range(1, EVENTS + 1))
    assert [e.id for e in later] == list(range(5, EVENTS + 1))
    assert later[0].prev_hash == everything[3].hash and later[0].key_id
