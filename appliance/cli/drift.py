"""`appliance drift`: data drift between two files, computed by the `kernels` engine.

    appliance drift compute --reference train.parquet --current window.csv --json

Every column of the reference file is a feature; text (string) columns are categorical, and
`--categorical` adds numeric-looking ones (ints that are classes, e.g. `prediction`). The
current file must hold the same columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from appliance.cli._json_fields import json_option
from appliance.cli._output import data_stream, emit_json
from appliance.cli._table import print_table
from appliance.errors import InvalidInput
from appliance.monitor.drift_record import DriftReportPublic
from appliance.tables import read_table

app = typer.Typer(help="Data and prediction drift between a reference and a current window.",
                  no_args_is_help=True)

def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _text_columns(table: Any) -> list[str]:
    import pyarrow.types as pat

    out = []
    for f in table.schema:
        t = f.type.value_type if pat.is_dictionary(f.type) else f.type
        if pat.is_string(t) or pat.is_large_string(t) or pat.is_boolean(t) or pat.is_binary(t):
            out.append(f.name)
    return out


def compute_report(
    reference: Path,
    current: Path,
    *,
    stats: str | None = None,
    categorical: str | None = None,
    backend: str | None = None,
    correction: str | None = None,
    bins: int = 10,
) -> Any:
    """Read both files and run the engine; kernels errors become InvalidInput (chained)."""
    import kernels  # deferred: the engine pulls numpy/scipy in only when a command runs

    ref = read_table(reference, role="reference")
    cur = read_table(current, role="current")
    cats = _split(categorical)
    for c in cats:
        if c not in ref.column_names:
            raise InvalidInput(
                f"--categorical names column '{c}', which the reference file '{reference}' "
                f"lacks (columns: {', '.join(ref.column_names)})"
            )
    cats = list(dict.fromkeys(cats + _text_columns(ref)))
    try:
        profile = kernels.fit_profile(ref, categorical=cats, bins=bins, backend=backend)
        return kernels.compare(
            profile, cur, stats=_split(stats) if stats else None, backend=backend,
            correction=correction,
        )
    except kernels.DriftError as exc:
        raise InvalidInput(f"{exc} (reference '{reference}', current '{current}')") from exc


_TABLE_COLUMNS = [
    ("KS", "ks", "statistic"),
    ("KS_P", "ks", "pvalue"),
    ("W1_NORMED", "wasserstein", "normed"),
    ("PSI", "psi", "value"),
    ("JS", "jensen_shannon", "value"),
    ("HELLINGER", "hellinger", "value"),
    ("MEAN_SHIFT", "mean_shift", "value"),
    ("STD_SHIFT", "std_shift", "value"),
    ("CHI2_P", "chi2", "pvalue"),
    ("TVD", "tvd", "value"),
    ("UNSEEN", "unseen_share", "value"),
]


def _print_table(report: Any) -> None:
    doc = report.to_dict()
    present = {s for f in doc["features"].values() for s in f}
    cols = [c for c in _TABLE_COLUMNS if c[1] in present]
    headers = ["NAME", "KIND", "DRIFTED", *(c[0] for c in cols), "MISSING_CHANGE"]
    rows = []
    for name, f in doc["features"].items():
        cells = [f.get(stat, {}).get(key) for _, stat, key in cols]
        rows.append([name, f["kind"], _yes_no(f["drifted"]), *cells,
                     f["missing_share"]["change"]])
    print_table(headers, rows)
    n = len(doc["features"])
    drifted = sum(f["drifted"] for f in doc["features"].values())
    line = (f"drifted features: {drifted}/{n} (share {doc['drifted_share']:.3f}); "
            f"dataset drifted: {_yes_no(doc['dataset_drifted'])}")
    pca = doc.get("multivariate", {}).get("pca")
    if pca:
        ratio = "<none>" if pca["ratio"] is None else f"{pca['ratio']:.4g}"
        line += f"; pca error ratio {ratio} (drifted: {_yes_no(pca['drifted'])})"
    out = data_stream()
    out.write(line + "\n")
    out.flush()


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


@app.command("compute")
def compute(
    reference: Path = typer.Option(
        ..., "--reference", help="Reference data: Parquet, CSV, TSV or Arrow."
    ),
    current: Path = typer.Option(
        ..., "--current", help="Current window: Parquet, CSV, TSV or Arrow."
    ),
    stats: str | None = typer.Option(
        None, "--stats",
        help="Comma-separated statistics (default: all): ks, wasserstein, psi, jensen_shannon, "
             "hellinger, mean_shift, std_shift, chi2, tvd, unseen_share, pca.",
    ),
    categorical: str | None = typer.Option(
        None, "--categorical",
        help="Comma-separated numeric-looking columns to treat as categorical (text columns "
             "always are).",
    ),
    backend: str | None = typer.Option(
        None, "--backend", help="numpy or cupy (default: cupy when a GPU is usable)."
    ),
    correction: str | None = typer.Option(
        None, "--correction", help="Multiple-testing correction across features: bh, bonferroni."
    ),
    bins: int = typer.Option(10, "--bins", help="Reference-quantile bins for PSI/JS/Hellinger."),
    as_json: bool = json_option(DriftReportPublic),
) -> None:
    """Compare CURRENT with REFERENCE feature by feature; print the statistics and verdicts."""
    report = compute_report(
        reference, current, stats=stats, categorical=categorical, backend=backend,
        correction=correction, bins=bins,
    )
    if as_json:
        emit_json(DriftReportPublic.of(report))
    else:
        _print_table(report)
