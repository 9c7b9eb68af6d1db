"""The JSON record of a drift report (`appliance.monitor.drift_record.DriftReportPublic`): the
document `kernels` computes, typed, whether fresh from `kernels.compute` or stored by the
monitor for a closed window; ``multivariate`` only where PCA ran; non-finite numbers as null;
and a module light enough for `appliance drift compute`, which needs no store."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys

import loop_world as lw
import numpy as np
import pytest
from pydantic import ValidationError
from sqlmodel import select

import kernels
from appliance.artifacts import ArtifactStore
from appliance.monitor import windows
from appliance.monitor.drift_record import DriftReportPublic
from appliance.monitor.window_stats import close_stats
from appliance.store import session_scope
from appliance.store.models import DriftReport, PredictionWindow

FIELDS = ["rows", "features", "drifted_share", "dataset_drifted", "multivariate"]


def _columns(n: int, seed: int, shift: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"income": rng.normal(shift, 1.0, n), "age": rng.normal(40.0, 5.0, n),
            "region": np.where(rng.random(n) < 0.5 + shift / 4, "north", "south").astype(object)}


def _report(stats: str | None = None) -> kernels.DriftReport:
    return kernels.compute(_columns(300, 1, 0.0), _columns(300, 2, 1.0), categorical=["region"],
                           stats=stats, backend="numpy")


def test_a_kernels_report_is_its_json_document_typed():
    report = _report()
    public = DriftReportPublic.of(report)
    # Exactly what kernels says, key for key; JSON through the record reads back the same.
    assert public.model_dump(mode="json") == report.to_dict()
    assert json.loads(public.model_dump_json()) == json.loads(json.dumps(report.to_dict()))
    assert list(public.model_dump()) == FIELDS
    assert public.rows == {"reference": 300, "current": 300}
    assert set(public.features) == {"income", "age", "region"}
    assert public.features["income"]["kind"] == "numerical"
    assert public.features["region"]["kind"] == "categorical"
    # The shifted feature drifted, the steady one did not; the verdicts are kernels'.
    assert public.features["income"]["drifted"] and not public.features["age"]["drifted"]
    assert public.drifted_share == pytest.approx(len(report.drifted_features) / 3)
    assert public.dataset_drifted == report.dataset_drifted
    assert set(public.multivariate) == {"pca"}


def test_multivariate_appears_only_where_pca_was_computed():
    public = DriftReportPublic.of(_report("ks,chi2,psi"))
    assert public.multivariate is None
    assert "multivariate" not in public.model_dump()
    assert "multivariate" not in json.loads(public.model_dump_json())
    assert set(public.features["income"]) >= {"ks", "psi"}
    assert "wasserstein" not in public.features["income"]
    assert set(public.features["region"]) >= {"chi2", "psi"}


def test_the_schema_is_the_records_whatever_the_serializer_leaves_out():
    # `drift compute --json`'s golden file is this schema (tests/cli/test_json_schemas.py):
    # it must describe the fields, not just "an object".
    schema = DriftReportPublic.model_json_schema(mode="serialization")
    assert list(schema["properties"]) == FIELDS
    assert schema["required"] == FIELDS[:-1]


def test_numbers_json_cannot_hold_are_null():
    nan = float("nan")
    feature = kernels.FeatureDrift(
        name="income", kind="numerical", drifted=False,
        missing_share={"reference": 0.0, "current": 1.0, "change": 1.0, "drifted": True},
        stats={"ks": {"statistic": nan, "pvalue": nan, "drifted": False},
               "wasserstein": {"value": math.inf, "normed": nan, "drifted": False}})
    report = kernels.DriftReport(rows={"reference": 10, "current": 0},
                                 features={"income": feature}, drifted_share=0.0,
                                 dataset_drifted=False,
                                 multivariate={"pca": {"ratio": nan, "drifted": False}})
    text = DriftReportPublic.of(report).model_dump_json()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["features"]["income"]["ks"] == {"statistic": None, "pvalue": None,
                                               "drifted": False}
    assert doc["features"]["income"]["wasserstein"]["value"] is None
    assert doc["multivariate"] == {"pca": {"ratio": None, "drifted": False}}


@pytest.mark.parametrize(("change", "field"), [
    ({"dataset_drifted": None}, "dataset_drifted"),
    ({"rows": {"reference": "many"}}, "rows"),
    ({"features": ["income"]}, "features"),
])
def test_a_document_that_is_no_drift_report_is_refused_naming_the_field(change, field):
    doc = {**_report("ks").to_dict(), **change}
    with pytest.raises(ValidationError, match=field):
        DriftReportPublic.model_validate(doc)
    doc = _report("ks").to_dict()
    del doc["drifted_share"]
    with pytest.raises(ValidationError, match="drifted_share"):
        DriftReportPublic.model_validate(doc)


def test_the_report_the_monitor_stored_for_a_window_reads_back_as_the_record(tmp_path):
    # The monitor's own path: traffic shifted from the training data, logged, its window
    # closed and judged; the stored report (a JSON column) is the record's document.
    world = lw.make_world(tmp_path)
    world.serve("w", requests=4, rows_per_request=100, seed=5, at=lw.T0, shift=2.0)
    [window] = lw.close_all(world.cfg.db_url, world.cfg.predictions_dir, world.deployment,
                            windows.WindowPolicy(rows=400, seconds=None),
                            lw.T0 + dt.timedelta(minutes=1))
    with session_scope(world.cfg.db_url) as s:
        row = s.get(PredictionWindow, window.id)
        close_stats(s, ArtifactStore(world.cfg.artifacts), row, windows.read_window(row),
                    {"1": world.version}, min_drift_rows=100)
    with session_scope(world.cfg.db_url) as s:
        stored = s.exec(select(DriftReport)).one()
    public = DriftReportPublic.model_validate(stored.report)
    assert public.model_dump(mode="json") == stored.report
    assert public.rows["current"] == stored.rows == 400
    assert public.dataset_drifted and stored.dataset_drifted
    assert public.drifted_share == pytest.approx(stored.drifted_share)
    assert sorted(n for n, f in public.features.items() if f["drifted"]) == \
        stored.drifted_features
    # Features and the model's outputs, each against the version's own reference profile.
    assert set(public.features) == {*lw.FEATURES, "score", "prediction"}


def test_the_module_imports_neither_the_store_nor_the_drift_engine():
    code = ("import sys, appliance.monitor.drift_record\n"
            "print([m for m in ('sqlmodel', 'sqlalchemy', 'appliance.store', 'kernels',"
            " 'numpy', 'pyarrow') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
