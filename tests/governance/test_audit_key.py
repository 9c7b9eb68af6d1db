"""The audit chain's key file (`appliance.governance.audit_key`): created private, read back the
same, and refused when others may read it, when it is short, or when it is not a file."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest

from appliance.errors import InvalidInput
from appliance.governance.audit_key import fingerprint, load_key


def test_a_created_key_is_private_and_loads_back_the_same(tmp_path):
    path = tmp_path / "keys" / "audit.key"
    key = load_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key.secret) == 64 and key.key_id == fingerprint(key.secret)
    assert load_key(path, create=False) == key
    assert load_key(path, create=True) == key  # an existing key is never replaced
    assert key.sign(b"event") == hmac.new(key.secret, b"event", hashlib.sha256).hexdigest()
    assert key.secret.decode() not in repr(key)
    # No temporary file is left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]


def test_a_missing_key_without_create_is_none(tmp_path):
    assert load_key(tmp_path / "audit.key", create=False) is None


def test_fingerprints_tell_keys_apart_and_do_not_reveal_them():
    a, b = fingerprint(b"a" * 32), fingerprint(b"b" * 32)
    assert a != b and len(a) == 16
    assert a not in hashlib.sha256(b"a" * 32).hexdigest()


def _write(path, content: bytes, mode: int):
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def test_a_key_others_may_read_is_refused_with_the_fix(tmp_path):
    path = _write(tmp_path / "audit.key", b"k" * 64, 0o640)
    with pytest.raises(InvalidInput, match=r"has mode 0640; .* \(chmod 600 "):
        load_key(path, create=False)


def test_a_short_key_and_a_folder_are_refused(tmp_path):
    short = _write(tmp_path / "short.key", b"k" * 31 + b"\n", 0o600)
    with pytest.raises(InvalidInput, match="holds 31 bytes; at least 32"):
        load_key(short, create=False)
    folder = tmp_path / "dir.key"
    folder.mkdir()
    with pytest.raises(InvalidInput, match="is not a regular file"):
        load_key(folder, create=False)
