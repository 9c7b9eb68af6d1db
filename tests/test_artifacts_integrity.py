"""Every artifact is re-hashed when loaded (`appliance.artifacts`): a changed byte is refused
with both digests named (real files, SQLite and PostgreSQL). The alert it raises:
tests/monitor/test_integrity.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import loop_world as lw
import pyarrow as pa
import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore, read_artifact_file, sha256_bytes
from appliance.errors import (
    ArtifactIntegrityError,
    CheckFailed,
    ExitCode,
    NotFound,
    exit_code_for,
)
from appliance.monitor import windows
from appliance.monitor.windows import WindowPolicy
from appliance.registry import datasets
from appliance.store import session_scope
from appliance.store.models import PredictionWindow


def _flip(path) -> None:
    """Change one byte of the file at `path`, as bit rot or an attacker would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_a_changed_object_is_refused_naming_both_digests(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    digest = store.put_bytes(b"model bytes " * 100)
    assert store.get_bytes(digest) == b"model bytes " * 100
    assert store.verify(digest) == store.path_for(digest)
    _flip(store.path_for(digest))
    actual = sha256_bytes(store.path_for(digest).read_bytes())
    with pytest.raises(ArtifactIntegrityError) as refused:
        store.get_bytes(digest, what="model bundle credit:1", model="credit")
    message = str(refused.value)
    assert "model bundle credit:1" in message and digest in message and actual in message
    assert isinstance(refused.value, CheckFailed)
    assert exit_code_for(refused.value) == ExitCode.CHECK_FAILED
    with pytest.raises(ArtifactIntegrityError, match="reference profile"):
        store.verify(digest, what="reference profile")
    # An explicit opt-out still reads (for tools that inspect a damaged store).
    assert store.get_bytes(digest, verify=False) != b"model bytes " * 100


def test_a_missing_object_is_named_as_what_was_asked_for(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    digest = "d" * 64
    where = f"is not in the store at {str(tmp_path / 'a')!r}"
    with pytest.raises(NotFound) as bare:
        store.path(digest)
    assert str(bare.value) == f"artifact dddddddddddd {where}"
    for read in (store.get_bytes, store.verify):
        with pytest.raises(NotFound) as named:
            read(digest, what="model bundle credit:1")
        assert str(named.value) == f"model bundle credit:1 (artifact dddddddddddd) {where}"


def test_a_bundle_path_handed_to_serving_is_checked_against_its_name(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    digest = store.put_bytes(b"bundle")
    assert read_artifact_file(store.path_for(digest), "model bundle") == b"bundle"
    _flip(store.path_for(digest))
    with pytest.raises(ArtifactIntegrityError, match="model bundle"):
        read_artifact_file(store.path_for(digest), "model bundle")
    # A file outside the content store has no digest to check against.
    loose = tmp_path / "bundle.bin"
    loose.write_bytes(b"anything")
    assert read_artifact_file(loose, "model bundle") == b"anything"


def test_a_changed_dataset_is_refused_on_load(db_url, tmp_path):
    store = ArtifactStore(tmp_path / "a")
    with session_scope(db_url) as s:
        ds = datasets.add_table(s, store, pa.table({"x": list(range(100))}), "loans",
                                actor="ops")
    assert datasets.load(store, ds).num_rows == 100
    _flip(store.path_for(ds.digest))
    with pytest.raises(ArtifactIntegrityError, match="dataset loans:1"):
        datasets.load(store, ds)


def test_a_closed_window_records_its_digest_and_a_changed_file_is_refused(db_url, tmp_path):
    art = tmp_path / "art"
    t0 = lw.T0
    for i in range(3):
        lw.log_rows(art, "d", f"r{i}", 100, at=t0 + dt.timedelta(seconds=i))
    (window,) = lw.close_all(db_url, art / "predictions", "d",
                             WindowPolicy(rows=300, seconds=None),
                             now=t0 + dt.timedelta(seconds=10))
    with session_scope(db_url) as s:
        window = s.exec(select(PredictionWindow)).one()
    assert window.sha256 and len(window.sha256) == 64
    assert window.sha256 == sha256_bytes(Path(window.path).read_bytes())
    assert windows.read_window(window, ["request_id"]).num_rows == 300
    # A window closed before digests were recorded has nothing to be checked against.
    legacy = PredictionWindow(**{**window.model_dump(), "sha256": None})
    assert windows.read_window(legacy).num_rows == 300
    _flip(Path(window.path))
    with pytest.raises(ArtifactIntegrityError, match="prediction window d#1"):
        windows.read_window(window)
