"""Dataset versions: immutable, content-addressed tables.

A file (Parquet or CSV) is read into Arrow and re-encoded as an uncompressed Arrow IPC file with
schema metadata dropped; the sha256 of those canonical bytes is the dataset's identity, so the
same rows registered from CSV or Parquet are the same version.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from sqlmodel import Session, func, select

from appliance.artifacts import ArtifactStore, check_digest, sha256_bytes
from appliance.errors import InvalidInput, NotFound
from appliance.governance import audit
from appliance.names import check_name, check_path
from appliance.store.models import Dataset


def read_table(path: Path) -> pa.Table:
    """Read a Parquet, Arrow IPC or CSV file; InvalidInput naming the file otherwise."""
    path = Path(check_path("file", path))
    if not path.is_file():
        raise InvalidInput(f"file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pq.read_table(path)
        if suffix == ".csv":
            return pacsv.read_csv(path)
        if suffix in {".arrow", ".feather", ".ipc"}:
            return ipc.open_file(path).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(f"cannot read {str(path)!r}: {exc}") from exc
    raise InvalidInput(f"file {str(path)!r}: unsupported type {suffix!r}; use .parquet or .csv")


def canonical_bytes(table: pa.Table) -> bytes:
    table = table.replace_schema_metadata(None)
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def add_table(
    session: Session, store: ArtifactStore, table: pa.Table, name: str, *, actor: str,
    source: str | None = None,
) -> Dataset:
    """Register `table` as the next version of dataset `name` (or return the identical one)."""
    check_name("dataset name", name)
    if table.num_rows == 0:
        raise InvalidInput(f"dataset {name!r} has no rows")
    data = canonical_bytes(table)
    digest = sha256_bytes(data)
    same = session.exec(
        select(Dataset).where(Dataset.name == name, Dataset.digest == digest)
    ).first()
    if same:
        return same
    store.put_bytes(data)
    latest = session.exec(select(func.max(Dataset.version)).where(Dataset.name == name)).one()
    ds = Dataset(
        name=name, version=(latest or 0) + 1, digest=digest, rows=table.num_rows,
        columns=[{"name": f.name, "type": str(f.type)} for f in table.schema],
        source=source, created_by=actor,
    )
    session.add(ds)
    session.flush()
    audit.record(session, actor, "dataset.added", "dataset", f"{name}:{ds.version}",
                 {"digest": digest, "rows": ds.rows, "source": source})
    return ds


def add_file(session: Session, store: ArtifactStore, path: Path, name: str, *, actor: str):
    """Register the file at `path` as a version of dataset `name`."""
    return add_table(session, store, read_table(path), name, actor=actor, source=str(path))


def resolve(session: Session, ref: str) -> Dataset:
    """``name`` (latest) or ``name:version`` -> the Dataset row."""
    name, _, ver = ref.partition(":")
    check_name("dataset name", name)
    query = select(Dataset).where(Dataset.name == name)
    if ver:
        if not ver.isdigit():
            raise InvalidInput(f"dataset version in {ref!r} must be a number")
        query = query.where(Dataset.version == int(ver))
    ds = session.exec(query.order_by(Dataset.version.desc())).first()
    if ds is None:
        raise NotFound(f"no dataset {ref!r}; list them with `appliance data list`")
    return ds


def load(store: ArtifactStore, ds: Dataset) -> pa.Table:
    """The dataset's rows, memory-mapped from the artifact store and re-hashed first.

    Raises:
        NotFound: the store lacks the dataset's object.
        ArtifactIntegrityError: its bytes no longer hash to the dataset's digest.
    """
    path = store.path(ds.digest)
    with pa.memory_map(str(path)) as source:
        # The mapped bytes are the ones checked and then read: no window to swap the file.
        buffer = source.read_buffer()
    check_digest(buffer, ds.digest, f"dataset {ds.name}:{ds.version}", path=path)
    return ipc.open_file(pa.BufferReader(buffer)).read_all()
