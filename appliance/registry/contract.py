"""The data contract: a new dataset version must look like the last one that was good.

At ingest every version is profiled (`profile`: per column its type, missing share, numeric
range, mean and std, or the counts of its categories; the row count; the label's class shares
or mean and std) and the profile is stored with the version. A version n > 1 is compared with
the newest earlier version of the same name whose contract held or was accepted (`compare`),
profile to profile, so checking it never re-reads an earlier version's rows. The rules and
their default tolerances live in `Tolerances`:

    column_missing, column_added    the set of columns changed
    type                            a column's Arrow type changed (string flavours are one)
    missing_share                   null/NaN/inf share rose by more than `missing_share`
    range                           a value beyond the old [min, max] widened by `range_margin`
                                    of its span on each side
    category_new                    a string or bool column holds a value never seen before
    category_vanished               a value that held `vanished_category_share` of rows is gone
    row_count                       rows grew or shrank by more than `row_factor`
    row_count (retraining)          rows more than `row_factor` apart from the labelled rows
                                    the monitor's window index promised
    label_balance                   a class share moved by more than `label_share`
    label_collapse                  a class appeared or vanished, or its share fell below
                                    `label_collapse_factor` of what it was; a numeric label
                                    that varied became constant
    label_shift                     a numeric label's mean moved by more than `label_mean_shift`
                                    old stds, or its std changed by more than `label_std_factor`
    label_column                    the label column is another one than before

How severe a finding is depends on what the version is for (`Purpose`, `SEVERITY`): in a
person's upload every finding blocks; in a retraining set, which the monitor builds because
production drifted, drift itself (values beyond the old range, new categories, a label whose
balance or mean moved) is recorded as a warning, and only what says the data broke rather than
the world moved blocks. A version with a blocking finding fails and is blocked from training
until someone accepts it (`appliance.registry.datasets.accept_contract`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import SQLModel


class Purpose(str, enum.Enum):
    """What a dataset version is for, which decides how severe each finding is."""

    upload = "upload"  # registered by a person (`appliance data add`)
    retraining = "retraining"  # built by the monitor from labelled production windows


class Severity(str, enum.Enum):
    """A blocking finding fails the version; a warning is only recorded in its report."""

    block = "block"
    warn = "warn"


# The checks that only warn, per purpose (every other finding blocks). A retraining set exists
# BECAUSE production drifted: values beyond the range the champion learned, categories it never
# saw and a label whose balance or mean moved are exactly what it is built to teach, so blocking
# on them would stop the loop whenever it is needed. A column gone or added, a type change, a
# jump in missing values, a category that vanished, a row count far from what the windows
# promised and a label that collapsed (a class gone or new, a constant label) say that the pipe
# broke, not that the world moved: those block a retraining set too, and the retrain request
# waits for a person to accept it (`appliance data accept`).
SEVERITY: dict[Purpose, frozenset[str]] = {
    Purpose.upload: frozenset(),
    Purpose.retraining: frozenset({"range", "category_new", "label_balance", "label_shift"}),
}


class ContractStatus(str, enum.Enum):
    """Where a dataset version stands with its contract; only `failed` blocks training."""

    unchecked = "unchecked"  # registered before contracts existed: no profile
    baseline = "baseline"  # nothing earlier to compare with: it sets the contract
    passed = "passed"  # no blocking finding (warnings, if any, are in its report)
    failed = "failed"
    accepted = "accepted"  # failed, then accepted by someone with a reason


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """How far a new version may move from its baseline before it violates the contract."""

    missing_share: float = 0.05  # absolute rise of a column's missing share
    range_margin: float = 0.5  # share of the old span allowed beyond each end of the range
    # A new category is something no encoder fitted on the baseline has seen: any row counts.
    new_category_share: float = 0.0
    # A rare category may simply not be drawn again; one that held 1% of rows going is news.
    vanished_category_share: float = 0.01
    row_factor: float = 5.0  # rows may grow or shrink by this factor
    label_share: float = 0.10  # absolute move of one class's share
    # A class whose share fell below this factor of its baseline share has collapsed.
    label_collapse_factor: float = 0.2
    label_mean_shift: float = 0.5  # in baseline standard deviations
    label_std_factor: float = 2.0
    max_categories: int = 256  # more distinct strings than this: an id, not a category
    max_classes: int = 20  # an integer label with at most this many values is a class label


DEFAULT_TOLERANCES = Tolerances()


class Violation(SQLModel):
    """One rule a new version broke, and whether that blocks it (see `SEVERITY`)."""

    column: str | None
    check: str
    expected: Any
    found: Any
    message: str
    severity: Severity = Severity.block


class ContractReport(SQLModel):
    """The outcome of checking `dataset` against `baseline` (None: nothing to compare with);
    `passed` is false when any violation blocks."""

    dataset: str
    baseline: str | None
    purpose: Purpose = Purpose.upload
    passed: bool
    violations: list[Violation]

    def blocking(self) -> list[Violation]:
        """The violations that fail the version."""
        return [v for v in self.violations if v.severity == Severity.block]

    def warnings(self) -> list[Violation]:
        """The violations only recorded (drift a retraining set is expected to show)."""
        return [v for v in self.violations if v.severity == Severity.warn]

    def summary(self, severity: Severity = Severity.block) -> str:
        """The violations of `severity` (default the blocking ones) on one line."""
        return "; ".join(v.message for v in self.violations if v.severity == severity)


@dataclasses.dataclass(frozen=True)
class Reference:
    """What a version is checked against when it is not the last good version of its name:
    `ref` ("name:version") and its `profile`, and the rows expected (None: the reference's
    own row count, within `row_factor`)."""

    ref: str
    profile: dict[str, Any]
    expected_rows: int | None = None


# Profiling.


def _type_name(t: pa.DataType) -> str:
    # The same text read from CSV or Parquet may come as string, large_string or dictionary.
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return str(t)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "numeric"
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_boolean(t)):
        return "categorical"
    return "other"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Value -> rows, nulls left out; keys are text so that the profile is plain JSON."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counted = pc.value_counts(column)
    values = counted.field("values").to_pylist()
    counts = counted.field("counts").to_pylist()
    return {str(v): int(c) for v, c in zip(values, counts, strict=True) if v is not None}


def _column_profile(column: pa.ChunkedArray, rows: int, tol: Tolerances) -> dict[str, Any]:
    kind = _kind(column.type)
    missing = column.null_count
    doc: dict[str, Any] = {"type": _type_name(column.type), "kind": kind}
    if kind == "numeric":
        values = column
        if pa.types.is_floating(column.type):
            # NaN and inf are no more usable than a null: they count as missing.
            finite = pc.is_finite(column)
            values = column.filter(finite)
            missing = rows - len(values)
        present = len(values) - values.null_count
        if present:
            low_high = pc.min_max(values)
            doc.update(min=_float(low_high["min"].as_py()), max=_float(low_high["max"].as_py()),
                       mean=_float(pc.mean(values).as_py()),
                       std=_float(pc.stddev(values).as_py()))
        else:
            doc.update(min=None, max=None, mean=None, std=None)
    elif kind == "categorical":
        counts = _counts(column)
        doc["distinct"] = len(counts)
        doc["categories"] = counts if len(counts) <= tol.max_categories else None
    doc["missing"] = missing / rows if rows else 0.0
    return doc


def _label_profile(table: pa.Table, label: str, columns: dict[str, Any],
                   tol: Tolerances) -> dict[str, Any]:
    column = table.column(label)
    col_doc = columns[label]
    classes = col_doc["kind"] == "categorical" or (
        pa.types.is_integer(column.type) and pc.count_distinct(column).as_py() <= tol.max_classes)
    if classes:
        counts = _counts(column)
        total = sum(counts.values()) or 1
        return {"column": label, "kind": "classes",
                "shares": {k: v / total for k, v in sorted(counts.items())}}
    return {"column": label, "kind": "numeric", "mean": col_doc.get("mean"),
            "std": col_doc.get("std")}


def profile(table: pa.Table, label: str | None = None,
            tolerances: Tolerances = DEFAULT_TOLERANCES) -> dict[str, Any]:
    """What `compare` needs of `table`, as a small JSON document (vectorised, one pass per
    column).

    Args:
        table: the version's rows.
        label: its label column, if it has one (default None: no label balance is kept).
        tolerances: for `max_categories` and `max_classes` (default `DEFAULT_TOLERANCES`).
    """
    rows = table.num_rows
    columns = {name: _column_profile(table.column(name), rows, tolerances)
               for name in table.column_names}
    return {"rows": rows, "columns": columns,
            "label": _label_profile(table, label, columns, tolerances) if label else None}


def restrict(doc: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """Profile `doc` with only `columns` kept (the others are not part of the contract)."""
    keep = {k: v for k, v in doc["columns"].items() if k in columns}
    label = doc.get("label")
    return {**doc, "columns": keep,
            "label": label if label and label["column"] in columns else None}


# Comparing.


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def _schema(old: dict, new: dict) -> list[Violation]:
    out = []
    for name in old["columns"]:
        if name not in new["columns"]:
            out.append(Violation(column=name, check="column_missing", expected="present",
                                 found="absent", message=f"column {name!r} is gone"))
    for name in new["columns"]:
        if name not in old["columns"]:
            out.append(Violation(column=name, check="column_added", expected="absent",
                                 found="present", message=f"column {name!r} is new"))
    return out


def _range(name: str, was: dict, now: dict, tol: Tolerances) -> list[Violation]:
    if was.get("min") is None or now.get("min") is None:
        return []
    span = was["max"] - was["min"]
    # A constant column has no span: let it move by a share of its own size instead.
    margin = tol.range_margin * (span if span > 0 else max(abs(was["max"]), 1.0))
    low, high = was["min"] - margin, was["max"] + margin
    if now["min"] >= low and now["max"] <= high:
        return []
    return [Violation(
        column=name, check="range", expected=[low, high], found=[now["min"], now["max"]],
        message=f"column {name!r}: values span [{_fmt(now['min'])}, {_fmt(now['max'])}], "
                f"beyond the allowed [{_fmt(low)}, {_fmt(high)}] (previous range "
                f"[{_fmt(was['min'])}, {_fmt(was['max'])}] widened by "
                f"{tol.range_margin:.0%} of its span)",
    )]


def _categories(name: str, was: dict, now: dict, tol: Tolerances) -> list[Violation]:
    old, new = was.get("categories"), now.get("categories")
    if old is None or new is None:
        return []
    out = []
    new_rows, old_rows = sum(new.values()) or 1, sum(old.values()) or 1
    added = sorted(k for k in new if k not in old)
    if added and sum(new[k] for k in added) / new_rows > tol.new_category_share:
        out.append(Violation(
            column=name, check="category_new", expected=sorted(old), found=added,
            message=f"column {name!r}: new categories {added[:5]}"
                    + (f" and {len(added) - 5} more" if len(added) > 5 else ""),
        ))
    gone = sorted(k for k in old if k not in new
                  and old[k] / old_rows >= tol.vanished_category_share)
    if gone:
        out.append(Violation(
            column=name, check="category_vanished", expected=gone, found=sorted(new),
            message=f"column {name!r}: categories {gone[:5]} vanished"
                    + (f" and {len(gone) - 5} more" if len(gone) > 5 else ""),
        ))
    return out


def _columns(old: dict, new: dict, tol: Tolerances, *, by_kind: bool) -> list[Violation]:
    out = []
    for name, was in old["columns"].items():
        now = new["columns"].get(name)
        if now is None:
            continue
        key = "kind" if by_kind else "type"
        if now[key] != was[key]:
            out.append(Violation(column=name, check="type", expected=was[key],
                                 found=now[key],
                                 message=f"column {name!r}: type {now[key]}, "
                                         f"was {was[key]}"))
            continue
        if now["missing"] - was["missing"] > tol.missing_share:
            out.append(Violation(
                column=name, check="missing_share", expected=was["missing"],
                found=now["missing"],
                message=f"column {name!r}: {now['missing']:.1%} missing, was "
                        f"{was['missing']:.1%} (tolerance +{tol.missing_share:.0%})",
            ))
        if was["kind"] == "numeric":
            out += _range(name, was, now, tol)
        elif was["kind"] == "categorical":
            out += _categories(name, was, now, tol)
    return out


def _rows(old: dict, new: dict, tol: Tolerances, expected: int | None) -> list[Violation]:
    was, now = (old["rows"], "was") if expected is None else (expected, "expected")
    if was and new["rows"] and 1 / tol.row_factor <= new["rows"] / was <= tol.row_factor:
        return []
    return [Violation(column=None, check="row_count", expected=was, found=new["rows"],
                      message=f"{new['rows']} rows, {now} {was} (more than "
                              f"x{tol.row_factor:g} apart)")]


def _label(old: dict, new: dict, tol: Tolerances) -> list[Violation]:
    was, now = old.get("label"), new.get("label")
    if was is None or now is None:
        return []
    name = now["column"]
    if was["column"] != name:
        return [Violation(column=name, check="label_column", expected=was["column"], found=name,
                          message=f"the label column is {name!r}, was {was['column']!r}")]
    if was["kind"] != now["kind"]:
        return []  # the type check on the column already names this change
    if was["kind"] == "classes":
        old_s, new_s = was["shares"], now["shares"]
        moved = {k: (old_s.get(k, 0.0), new_s.get(k, 0.0)) for k in sorted({*old_s, *new_s})}

        def told(which: dict) -> str:
            return ", ".join(f"{k}: {a:.1%} -> {b:.1%}" for k, (a, b) in which.items())

        collapsed = {k: (a, b) for k, (a, b) in moved.items()
                     if a == 0 or b < tol.label_collapse_factor * a}
        if collapsed:
            return [Violation(column=name, check="label_collapse", expected=old_s, found=new_s,
                              message=f"label {name!r}: classes appeared, vanished or fell "
                                      f"below {tol.label_collapse_factor:.0%} of their share "
                                      f"({told(collapsed)})")]
        bad = {k: ab for k, ab in moved.items() if abs(ab[1] - ab[0]) > tol.label_share}
        if not bad:
            return []
        return [Violation(column=name, check="label_balance", expected=old_s, found=new_s,
                          message=f"label {name!r} class shares moved ({told(bad)}; tolerance "
                                  f"{tol.label_share:.0%})")]
    if was.get("mean") is None or now.get("mean") is None:
        return []
    if was["std"] and not now["std"]:
        return [Violation(column=name, check="label_collapse", expected=was["std"],
                          found=now["std"],
                          message=f"label {name!r} is constant ({_fmt(now['mean'])}), its std "
                                  f"was {_fmt(was['std'])}")]
    std = was["std"] or 0.0
    shift = abs(now["mean"] - was["mean"])
    ratio = (now["std"] or 0.0) / std if std else math.inf if now["std"] else 1.0
    if shift <= tol.label_mean_shift * std and \
            1 / tol.label_std_factor <= ratio <= tol.label_std_factor:
        return []
    return [Violation(
        column=name, check="label_shift", expected={"mean": was["mean"], "std": was["std"]},
        found={"mean": now["mean"], "std": now["std"]},
        message=f"label {name!r}: mean {_fmt(now['mean'])} std {_fmt(now['std'])}, was mean "
                f"{_fmt(was['mean'])} std {_fmt(was['std'])}",
    )]


def compare(old: dict[str, Any], new: dict[str, Any], *, dataset: str, baseline: str,
            purpose: Purpose = Purpose.upload, expected_rows: int | None = None,
            tolerances: Tolerances = DEFAULT_TOLERANCES) -> ContractReport:
    """Check profile `new` against profile `old` (both from `profile`); each finding's severity
    is the one `SEVERITY` gives it for `purpose`.

    Args:
        old: the baseline version's profile.
        new: the new version's profile.
        dataset: the new version's "name:version", for the report.
        baseline: the baseline's "name:version".
        purpose: what the new version is for (default `Purpose.upload`: everything blocks).
        expected_rows: the rows the new version should have (default None: about the
            baseline's).
        tolerances: the rules' limits (default `DEFAULT_TOLERANCES`).
    """
    # A retraining set is typed as the champion takes its features (numbers as float64,
    # categories as text), so for it only the kind of a column can change, not its width.
    by_kind = purpose == Purpose.retraining
    found = [*_schema(old, new), *_columns(old, new, tolerances, by_kind=by_kind),
             *_rows(old, new, tolerances, expected_rows), *_label(old, new, tolerances)]
    warn = SEVERITY[purpose]
    found = [v.model_copy(update={"severity": Severity.warn if v.check in warn
                                  else Severity.block}) for v in found]
    return ContractReport(dataset=dataset, baseline=baseline, purpose=purpose,
                          passed=not any(v.severity == Severity.block for v in found),
                          violations=found)
