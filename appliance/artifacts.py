"""Content-addressed artifact store.

Every object lives at ``{root}/sha256/{digest[:2]}/{digest}``. Writes go to a temporary name in
the same folder and are renamed into place, so a crash never leaves a half-written object where a
registry row could point at it, and writing the same content twice is a no-op.

Reads are re-hashed: `get_bytes` checks the bytes it returns, `verify` streams a large file
through sha256, and `check_digest` checks bytes already in memory (a memory map), so what is
checked is what is used. A mismatch raises `ArtifactIntegrityError` (and is logged, for the
callers with no store session to raise an alert in; see `appliance.monitor.integrity`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from appliance.errors import ArtifactIntegrityError, NotFound

_CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
log = logging.getLogger(__name__)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 hex of the file at `path`, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_digest(
    data: Any, expected: str, what: str, *, path: Path | None = None, model: str | None = None,
) -> None:
    """Raise ArtifactIntegrityError unless `data` (bytes or any buffer) hashes to `expected`.

    Args:
        data: the bytes about to be used.
        expected: the sha256 hex digest they were recorded under.
        what: the artifact, for the message ("model bundle credit:3").
        path: where they were read from (default None: not named).
        model: the model they belong to, for the alert's owner (default None).
    """
    actual = hashlib.sha256(memoryview(data)).hexdigest()
    if actual != expected:
        _refuse(what, expected, actual, path, model)


def _refuse(what: str, expected: str, actual: str, path: Path | None, model: str | None):
    exc = ArtifactIntegrityError(what, expected, actual, path, model)
    # Logged here as well: some readers (a serving replica) have no store to raise an alert in.
    log.critical("%s", exc)
    raise exc


def read_artifact_file(path: Path, what: str, *, model: str | None = None) -> bytes:
    """The bytes of `path`, checked against its name when it is a content-store object (its
    name is its sha256); a file outside the store is returned as it is.

    Raises:
        NotFound: no file at `path`.
        ArtifactIntegrityError: the bytes do not hash to the name.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"no file at {str(path)!r}") from exc
    if _DIGEST.match(path.name) and path.parent.name == path.name[:2]:
        check_digest(data, path.name, what, path=path, model=model)
    return data


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

    def path(self, digest: str, what: str = "artifact") -> Path:
        """Path of an existing object; NotFound, naming `what` it is, if the store lacks it."""
        p = self.path_for(digest)
        if not p.is_file():
            name = f"artifact {digest[:12]}"
            if what != "artifact":
                name = f"{what} ({name})"
            raise NotFound(f"{name} is not in the store at {str(self.root)!r}")
        return p

    def get_bytes(
        self, digest: str, *, what: str = "artifact", model: str | None = None,
        verify: bool = True,
    ) -> bytes:
        """The object's bytes, re-hashed against `digest` unless `verify` is False.

        Args:
            digest: the object's sha256.
            what: what it is, for an error ("reference profile of credit:3").
            model: the model it belongs to, for the alert (default None).
            verify: check the bytes (default True).

        Raises:
            NotFound: the store lacks it. ArtifactIntegrityError: its bytes changed.
        """
        p = self.path(digest, what)
        data = p.read_bytes()
        if verify:
            check_digest(data, digest, what, path=p, model=model)
        return data

    def verify(self, digest: str, *, what: str = "artifact", model: str | None = None) -> Path:
        """Stream the object through sha256 and return its path when it matches `digest`.

        For large objects handed on by path (a bundle a serving replica loads); the reader
        should still check what it reads where it can (`read_artifact_file`).

        Raises:
            NotFound: the store lacks it. ArtifactIntegrityError: its bytes changed.
        """
        p = self.path(digest, what)
        actual = sha256_file(p)
        if actual != digest:
            _refuse(what, digest, actual, p, model)
        return p
