"""`appliance drift compute` on Parquet and CSV files: JSON, table, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from appliance.cli.main import app

_ROOT = str(Path(__file__).resolve().parents[2])


def _table(n: int, seed: int, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "income": rng.normal(50 + shift, 10, size=n),
        "age": rng.integers(18, 80, size=n),
        "region": rng.choice(["north", "south", "east"], size=n),
        "prediction": rng.integers(0, 2, size=n),
    })


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    ref, same, moved = _table(3_000, 0), _table(2_000, 1), _table(2_000, 2, shift=8.0)
    out = {
        "ref": tmp_path / "ref.parquet",
        "same": tmp_path / "same.csv",
        "moved": tmp_path / "moved.parquet",
        "bad": tmp_path / "bad.csv",
        "missing_col": tmp_path / "missing_col.parquet",
    }
    pq.write_table(ref, out["ref"])
    pacsv.write_csv(same, out["same"])
    pq.write_table(moved, out["moved"])
    bad = same.set_column(0, "income", pa.array(["high"] * same.num_rows))
    pacsv.write_csv(bad, out["bad"])
    pq.write_table(same.drop_columns(["age"]), out["missing_col"])
    return out


def _run(argv: list[str]) -> tuple[int, str, str]:
    """The real CLI in a subprocess: exit code, stdout, stderr (run() owns the process streams)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    res = subprocess.run([sys.executable, "-m", "appliance.cli", *argv], cwd=_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout, res.stderr


def test_json_on_parquet_vs_parquet(files):
    code, out, err = _run([
        "drift", "compute", "--reference", str(files["ref"]), "--current", str(files["moved"]),
        "--categorical", "prediction", "--json",
    ])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["rows"] == {"reference": 3_000, "current": 2_000}
    assert list(doc["features"]) == ["income", "age", "region", "prediction"]
    assert doc["features"]["prediction"]["kind"] == "categorical"
    assert doc["features"]["region"]["kind"] == "categorical"  # text: categorical by itself
    assert doc["features"]["income"]["drifted"] is True
    assert doc["features"]["age"]["drifted"] is False
    assert doc["drifted_share"] == 0.25 and doc["dataset_drifted"] is False


def test_csv_current_and_stats_subset(files):
    code, out, _ = _run([
        "drift", "compute", "--reference", str(files["ref"]), "--current", str(files["same"]),
        "--stats", "ks,psi", "--correction", "bh", "--json",
    ])
    assert code == 0
    doc = json.loads(out)
    assert set(doc["features"]["income"]) == {
        "kind", "drifted", "missing_share", "infinite_share", "ks", "psi"
    }
    assert "pvalue_adjusted" in doc["features"]["age"]["ks"]
    assert doc["drifted_share"] == 0.0


def test_table_output(files):
    result = CliRunner().invoke(app, [
        "drift", "compute", "--reference", str(files["ref"]), "--current", str(files["moved"]),
    ])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "KIND", "DRIFTED"]
    assert lines[1].split()[:3] == ["income", "numerical", "yes"]
    assert lines[-1].startswith("drifted features: 1/4")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--current", "{same}", "--reference", "{nowhere}"], "reference file '"),
        (["--reference", "{ref}", "--current", "{bad}"], "'income' holds text"),
        (["--reference", "{ref}", "--current", "{missing_col}"], "'age'"),
        (["--reference", "{ref}", "--current", "{same}", "--stats", "ks,bogus"], "'bogus'"),
        (["--reference", "{ref}", "--current", "{same}", "--categorical", "zzz"], "'zzz'"),
        (["--reference", "{ref}", "--current", "{same}", "--backend", "tpu"], "'tpu'"),
    ],
)
def test_errors_exit_2_with_one_line(files, tmp_path, args, message):
    paths = {k: str(v) for k, v in files.items()} | {"nowhere": str(tmp_path / "no.parquet")}
    code, out, err = _run(["drift", "compute", *[a.format(**paths) for a in args]])
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
