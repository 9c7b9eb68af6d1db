"""The audit checkpoint sink (`appliance.governance.audit_checkpoints`) as files: signed lines
read back for their own database only, every forged, garbled or foreign-key line reported, and
stores named without their credentials. The chain against the sink: test_audit_tamper.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import stat

from appliance.governance.audit_checkpoints import (
    ANCHOR,
    CHECKPOINT,
    append,
    database_identity,
    make,
    read,
)
from appliance.governance.audit_key import load_key

T = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.timezone.utc)
DB = "postgresql://db.example:5432/appliance"


def _key(tmp_path, name="audit.key"):
    return load_key(tmp_path / name, create=True)


def test_stores_are_named_without_user_or_password(tmp_path):
    assert database_identity("postgresql://ops:s3cret@db.example/appliance") == DB
    assert database_identity("postgresql+psycopg://ops:pw@db.example:6543/x") == (
        "postgresql://db.example:6543/x")
    assert database_identity(f"sqlite:///{tmp_path}/a/../m.db") == f"sqlite:{tmp_path / 'm.db'}"
    assert database_identity("sqlite://") == "sqlite::memory:"


def test_signed_lines_are_read_back_for_their_database_only(tmp_path):
    key, sink = _key(tmp_path), tmp_path / "home" / "audit-checkpoints.jsonl"
    first = make(key, CHECKPOINT, DB, 3, "h3", now=T)
    append(sink, first)
    append(sink, make(key, ANCHOR, DB, 2, "h2", now=T))
    append(sink, make(key, CHECKPOINT, DB, 9, "h9", now=T))
    append(sink, make(key, CHECKPOINT, "sqlite:/other.db", 50, "x", now=T))
    append(sink, make(key, CHECKPOINT, DB, 5, "h5", now=T))  # a slower writer's older line
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600
    found = read(sink, key, DB)
    assert [c.events for c in found.checkpoints] == [3, 9, 5]
    assert [a.events for a in found.anchors] == [2]
    assert found.latest.head_hash == "h9" and found.problems == []
    assert first.ts == "2026-05-01T08:00:00+00:00" and first.valid(key)
    assert read(tmp_path / "absent.jsonl", key, DB).latest is None


def test_forged_garbled_and_foreign_lines_are_each_reported(tmp_path):
    key, other = _key(tmp_path), _key(tmp_path, "other.key")
    sink = tmp_path / "sink.jsonl"
    good = make(key, CHECKPOINT, DB, 4, "h4", now=T)
    append(sink, good)
    append(sink, dataclasses.replace(good, events=40))  # edited after signing
    append(sink, make(other, CHECKPOINT, DB, 4, "h4", now=T))  # signed with another key
    with sink.open("a") as fh:
        fh.write("not json\n\n")
        fh.write(json.dumps({**json.loads(good.line()), "kind": "note"}) + "\n")
    found = read(sink, key, DB)
    assert [c.events for c in found.checkpoints] == [4]
    assert [p.split(" of ")[0] for p in found.problems] == [
        "checkpoint line 2", "checkpoint line 3", "checkpoint line 4", "checkpoint line 6"]
    assert "HMAC that does not match (forged)" in found.problems[0]
    assert "was signed with another key" in found.problems[1]
    assert found.problems[2].endswith("is not a checkpoint (garbled or forged)")
    # Without the key nothing can be trusted.
    assert read(sink, None, DB).checkpoints == []
