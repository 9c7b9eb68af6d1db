"""Content-addressed artifact store.

Every object lives at ``{root}/sha256/{digest[:2]}/{digest}``. Writes go to a temporary name in
the same folder and are renamed into place, so a crash never leaves a half-written object where a
registry row could point at it, and writing the same content twice is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from appliance.errors import NotFound

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Objects addressed by the sha256 of their bytes.

    Args:
        root: the store's folder; created on first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def _publish(self, tmp: Path, digest: str) -> str:
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
        return digest

    def _tmp(self) -> tuple[int, Path]:
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=staging, prefix=".tmp-")
        return fd, Path(name)

    def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its sha256 hex digest."""
        fd, tmp = self._tmp()
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return self._publish(tmp, sha256_bytes(data))

    def put_file(self, source: Path) -> str:
        """Copy the file at `source` in, hashing while copying; return its digest."""
        h = hashlib.sha256()
        fd, tmp = self._tmp()
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return self._publish(tmp, h.hexdigest())

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def path(self, digest: str) -> Path:
        """Path of an existing object; NotFound if the store lacks it."""
        p = self.path_for(digest)
        if not p.is_file():
            raise NotFound(f"artifact {digest[:12]} is not in the store at {str(self.root)!r}")
        return p

    def get_bytes(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()
