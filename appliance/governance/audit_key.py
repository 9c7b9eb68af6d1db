"""The audit chain's HMAC key: a secret that lives outside the database.

A database administrator can rewrite every row of the audit table, but without this key cannot
compute the HMACs that make the rewritten rows verify. The key is a file readable by its owner
only (mode 0600): by default ``audit.key`` under the appliance home, created on first use; on a
cluster every node points at the same secret with ``audit_key_file`` in ``appliance.toml`` or
``APPLIANCE_AUDIT_KEY_FILE``. The key itself is never printed or logged; messages and
checkpoints name it by its fingerprint (`AuditKey.key_id`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from appliance.errors import InvalidInput

# Shorter keys are refused: 32 bytes is HMAC-SHA256's block-size-independent strength.
_MIN_KEY_BYTES = 32


@dataclasses.dataclass(frozen=True)
class AuditKey:
    """A loaded key: where it came from and its fingerprint; the secret is not in its repr."""

    path: Path
    key_id: str
    secret: bytes = dataclasses.field(repr=False)

    def sign(self, message: bytes) -> str:
        """Hex HMAC-SHA256 of `message` under this key."""
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()


def fingerprint(secret: bytes) -> str:
    """A short public name for a key: it tells keys apart without revealing them."""
    return hashlib.sha256(b"appliance-audit-key-id\0" + secret).hexdigest()[:16]


def _create(path: Path) -> None:
    # Written under a temporary name and hard-linked into place, so two processes creating the
    # key at once agree on one (the loser's link fails) and nobody ever reads a half-written
    # file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def load_key(path: Path, *, create: bool) -> AuditKey | None:
    """Read the key at `path`, refusing one that others may read.

    Args:
        path: the key file.
        create: make a new random key (mode 0600) when the file does not exist; without it a
            missing file gives None.

    Raises:
        InvalidInput: the file is group- or world-accessible, unreadable, or too short.
    """
    path = Path(path).expanduser()
    if create and not path.exists():
        try:
            _create(path)
        except OSError as exc:
            raise InvalidInput(
                f"cannot create the audit key file {str(path)!r}: {exc.strerror}"
            ) from exc
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"audit key file {str(path)!r} is not a regular file")
    if mode & 0o077:
        raise InvalidInput(
            f"audit key file {str(path)!r} has mode {stat.S_IMODE(mode):04o}; it must be "
            f"readable by its owner only (chmod 600 {path})"
        )
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise InvalidInput(f"cannot read the audit key file {str(path)!r}: {exc.strerror}") from exc
    if len(secret) < _MIN_KEY_BYTES:
        raise InvalidInput(
            f"audit key file {str(path)!r} holds {len(secret)} bytes; at least "
            f"{_MIN_KEY_BYTES} are needed (e.g. `openssl rand -hex 32`)"
        )
    return AuditKey(path=path, key_id=fingerprint(secret), secret=secret)
