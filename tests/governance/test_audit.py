"""The audit chain (`appliance.governance.audit`): it verifies, finds an edited or deleted
row, and stays one chain under concurrent writers; on SQLite and PostgreSQL. An attacker's
every move: test_audit_tamper.py."""

from __future__ import annotations

import governance_world as gw
from sqlalchemy import text

from appliance.governance import audit
from appliance.store import session_scope


def test_audit_chain_verifies_and_detects_edit_and_delete(db_url):
    gw.people(db_url)
    with session_scope(db_url) as s:
        for i in range(5):
            audit.record(s, "ops", "thing.done", "thing", i, {"n": i})
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert result.ok and result.events == 10
    with session_scope(db_url) as s:
        s.execute(text("UPDATE auditevent SET actor = 'mallory' WHERE id = 7"))
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert not result.ok and result.broken_at == 7 and "hash" in result.reason
    with session_scope(db_url) as s:
        s.execute(text("UPDATE auditevent SET actor = 'ops' WHERE id = 7"))
        assert audit.verify(s).ok
        s.execute(text("DELETE FROM auditevent WHERE id = 4"))
    with session_scope(db_url) as s:
        result = audit.verify(s)
        assert not result.ok and result.broken_at == 5


def test_concurrent_audit_writers_keep_one_chain(db_url):
    errors = gw.audit_concurrently(db_url, writers=3, events=15)
    assert not errors, errors
    with session_scope(db_url) as s:
        result = audit.verify(s)
    assert result.ok and result.events == 45
