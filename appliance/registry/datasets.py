"""Dataset versions: immutable, content-addressed tables.

A file (Parquet, CSV, TSV or Arrow: `appliance.tables.read_table`) is read into Arrow and
re-encoded as an uncompressed Arrow IPC file with schema metadata dropped; the sha256 of those
canonical bytes is the dataset's identity, so the same rows registered from CSV or Parquet are
the same version.

Each version is profiled at ingest and checked against the last good version of its name, or
against the reference its builder names (a retraining set: the champion's training data), with
the severities of its purpose (`appliance.registry.contract`); a version that fails is
registered all the same but blocked from training (`check_trainable`) until someone accepts it
(`accept_contract`).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from sqlmodel import Session, SQLModel, col, func, select

from appliance.artifacts import ArtifactStore, check_digest, sha256_bytes
from appliance.errors import CheckFailed, ConflictError, InvalidInput, NotFound
from appliance.governance import audit
from appliance.governance.operations import operation
from appliance.governance.users import require
from appliance.names import check_name
from appliance.registry import contract
from appliance.registry.contract import ContractReport, ContractStatus, Purpose, Reference
from appliance.store.models import Dataset, User, utcnow
from appliance.tables import read_table

# A version whose contract held, was accepted, or set it can be the next one's baseline.
_GOOD = (ContractStatus.baseline.value, ContractStatus.passed.value,
         ContractStatus.accepted.value)


def canonical_bytes(table: pa.Table) -> bytes:
    table = table.replace_schema_metadata(None)
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _label(table: pa.Table, label: str | None, baseline: Dataset | None) -> str | None:
    """The label column: the one named, else the baseline's, else "label", else none."""
    if label is not None:
        if label not in table.column_names:
            raise InvalidInput(f"label column {label!r} is not in the data; it has "
                               f"{table.column_names}")
        return label
    if baseline is not None and baseline.label in table.column_names:
        return baseline.label
    return "label" if "label" in table.column_names else None


def _baseline(session: Session, name: str) -> Dataset | None:
    """The newest version of `name` whose contract is good and whose profile is kept."""
    return session.exec(
        select(Dataset).where(Dataset.name == name, col(Dataset.contract_status).in_(_GOOD),
                              col(Dataset.profile).is_not(None))
        .order_by(col(Dataset.version).desc())
    ).first()


def add_table(
    session: Session, store: ArtifactStore, table: pa.Table, name: str, *, actor: str,
    source: str | None = None, label: str | None = None, purpose: Purpose = Purpose.upload,
    against: Reference | None = None,
) -> Dataset:
    """Register `table` as the next version of dataset `name` (or return the identical one).

    The version is profiled and checked against `against`, else its baseline (the newest
    earlier version whose contract held or was accepted), with the severities of `purpose`; a
    blocking finding still registers it, with status "failed", which blocks training on it.

    Args:
        session: the caller's transaction.
        store: where the canonical bytes go.
        table: the rows.
        name: the dataset's name.
        actor: who registers it.
        source: where the rows came from (default None).
        label: the label column whose class balance the contract keeps (default: the
            baseline's label column if the table has it, else "label" if it has one, else
            none).
        purpose: what the version is for (default `Purpose.upload`: every finding blocks).
        against: the reference to check it against instead of its name's baseline (default
            None).

    Raises:
        InvalidInput: no rows, a bad name, or a `label` the table lacks.
    """
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
    if against is None:
        baseline = _baseline(session, name)
        if baseline is not None:
            against = Reference(f"{name}:{baseline.version}", baseline.profile)
        label = _label(table, label, baseline)
    else:
        label = _label(table, label, None)
    profile = contract.profile(table, label)
    store.put_bytes(data)
    latest = session.exec(select(func.max(Dataset.version)).where(Dataset.name == name)).one()
    version = (latest or 0) + 1
    if against is None:
        report = ContractReport(dataset=f"{name}:{version}", baseline=None, purpose=purpose,
                                passed=True, violations=[])
        status = ContractStatus.baseline
    else:
        report = contract.compare(against.profile, profile, dataset=f"{name}:{version}",
                                  baseline=against.ref, purpose=purpose,
                                  expected_rows=against.expected_rows)
        status = ContractStatus.passed if report.passed else ContractStatus.failed
    ds = Dataset(
        name=name, version=version, digest=digest, rows=table.num_rows,
        columns=[{"name": f.name, "type": str(f.type)} for f in table.schema],
        source=source, created_by=actor, label=label, profile=profile,
        contract=report.model_dump(mode="json"), contract_status=status.value,
    )
    session.add(ds)
    session.flush()
    audit.record(session, actor, "dataset.added", "dataset", f"{name}:{ds.version}",
                 {"digest": digest, "rows": ds.rows, "source": source, "label": label,
                  "contract": status.value, "baseline": report.baseline,
                  "purpose": report.purpose.value,
                  "violations": [v.check for v in report.blocking()],
                  "warnings": [v.check for v in report.warnings()]})
    return ds


def add_file(session: Session, store: ArtifactStore, path: Path, name: str, *, actor: str,
             label: str | None = None) -> Dataset:
    """Register the file at `path` as a version of dataset `name` (see `add_table`)."""
    return add_table(session, store, read_table(path), name, actor=actor, source=str(path),
                     label=label)


@operation("data.add")
def register_file(session: Session, user: User, store: ArtifactStore, path: Path, name: str, *,
                  label: str | None = None) -> DatasetPublic:
    """Register the file at `path` as the next version of dataset `name`, as `user` (needs
    "operate"; checked before the file is read); the rest as `add_table`.

    Returns:
        The version, new or the identical one registered before.
    """
    require(user, "operate")
    return to_public(add_file(session, store, path, name, actor=user.name, label=label))


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


def list_versions(session: Session) -> list[Dataset]:
    """Every dataset version, by name then version."""
    return list(session.exec(select(Dataset).order_by(Dataset.name, Dataset.version)).all())


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


def report(ds: Dataset) -> ContractReport | None:
    """The version's contract report (None: registered before contracts existed)."""
    return ContractReport.model_validate(ds.contract) if ds.contract else None


def check_trainable(ds: Dataset) -> None:
    """Refuse a version whose data contract failed and was not accepted.

    Raises:
        CheckFailed: naming each violation and how to accept the version.
    """
    if ds.contract_status != ContractStatus.failed.value:
        return
    ref, got = f"{ds.name}:{ds.version}", report(ds)
    raise CheckFailed(
        f"dataset {ref} failed its data contract against {got.baseline} "
        f"({len(got.blocking())} violation(s)): {got.summary()}; training on it is refused; "
        f"if the data are right, accept it: appliance data accept {ref} --reason '...'"
    )


@operation("data.accept")
def accept_contract(session: Session, user: User, ref: str, reason: str,
                    now: dt.datetime | None = None) -> Dataset:
    """Accept version `ref` ("name:version") whose contract failed, so it can be trained on,
    recording who and why on the version and in the audit log (the caller commits).

    Args:
        session: the caller's transaction.
        user: who accepts (needs "operate").
        ref: the version, "name:version"; the version must be named.
        reason: why the violations are fine; must not be empty.
        now: the time recorded (default `utcnow()`).

    Raises:
        PermissionDenied: `user` may not operate.
        InvalidInput: no version in `ref`, or an empty `reason`.
        NotFound: no such version.
        ConflictError: its contract did not fail, or it was accepted already.
    """
    require(user, "operate")
    if ":" not in ref:
        raise InvalidInput(f"name the version to accept, as NAME:VERSION (got {ref!r})")
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidInput("--reason must say why the contract's violations are acceptable")
    ds = resolve(session, ref)
    where = f"dataset {ds.name}:{ds.version}"
    if ds.contract_status == ContractStatus.accepted.value:
        raise ConflictError(f"{where} was accepted already by {ds.contract_accepted_by}: "
                            f"{ds.contract_accepted_reason!r}")
    if ds.contract_status != ContractStatus.failed.value:
        raise ConflictError(f"{where} did not fail its data contract (status "
                            f"{ds.contract_status!r}); there is nothing to accept")
    ds.contract_status = ContractStatus.accepted.value
    ds.contract_accepted_by, ds.contract_accepted_reason = user.name, reason
    ds.contract_accepted_at = now or utcnow()
    session.add(ds)
    got = report(ds)
    audit.record(session, user.name, "dataset.contract_accepted", "dataset",
                 f"{ds.name}:{ds.version}",
                 {"reason": reason, "baseline": got.baseline,
                  "violations": [v.check for v in got.blocking()]})
    return ds


class DatasetPublic(SQLModel):
    """A dataset version as `appliance data` shows it, with its contract."""

    name: str
    version: int
    digest: str
    rows: int
    columns: list[dict[str, Any]]
    source: str | None
    label: str | None
    contract_status: str
    contract: ContractReport | None
    contract_accepted_by: str | None
    contract_accepted_reason: str | None
    contract_accepted_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime


def to_public(ds: Dataset) -> DatasetPublic:
    return DatasetPublic(
        name=ds.name, version=ds.version, digest=ds.digest, rows=ds.rows, columns=ds.columns,
        source=ds.source, label=ds.label, contract_status=ds.contract_status,
        contract=report(ds), contract_accepted_by=ds.contract_accepted_by,
        contract_accepted_reason=ds.contract_accepted_reason,
        contract_accepted_at=ds.contract_accepted_at, created_by=ds.created_by,
        created_at=ds.created_at,
    )
