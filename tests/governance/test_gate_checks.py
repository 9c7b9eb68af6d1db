"""The gate's configured checks: the spec's [gate] table, its validation, how measurements are
judged, and the checks stored with a version on SQLite and PostgreSQL
(`appliance.governance.gate_checks`). The same checks on real models are in
tests/pipelines/test_gating.py.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from appliance.artifacts import ArtifactStore
from appliance.errors import InvalidInput
from appliance.governance import approvals, gate_checks
from appliance.governance.gate_checks import (
    DEFAULT_CHECKS,
    FunctionOutcome,
    GateChecks,
    Limit,
    SegmentCheck,
    SegmentMeasure,
    direction,
    from_stored,
    judge,
    parse_gate,
)
from appliance.pipelines.spec import TrainSpec, load_spec
from appliance.registry import datasets, models
from appliance.store import session_scope
from appliance.store.models import ModelVersion

SPEC = """
model = "credit"
dataset = "loans"
label = "default"
categorical = ["employment"]

[gate.thresholds]
auc = { min = 0.8 }
log_loss = { max = 0.5 }

[gate.tolerance]
auc = 0.01
rmse = 0.5

[[gate.segments]]
column = "employment"
metric = "accuracy"
min = 0.7
min_rows = 50

[gate]
functions = ["my_checks.fairness:no_group_collapses"]
"""


def test_a_spec_without_gate_gets_todays_gate():
    assert parse_gate(None) == DEFAULT_CHECKS
    assert DEFAULT_CHECKS.thresholds == {"accuracy": Limit(min=0.7), "auc": Limit(min=0.7)}
    assert DEFAULT_CHECKS.tolerance == {"accuracy": 0.01, "auc": 0.01}
    assert TrainSpec(model="m", dataset="d", label="y").gate == DEFAULT_CHECKS.to_dict()


def test_the_gate_table_of_a_toml_spec(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    spec = load_spec(path)
    checks = GateChecks.model_validate(spec.gate)
    assert checks.thresholds == {"auc": Limit(min=0.8), "log_loss": Limit(max=0.5)}
    assert checks.tolerance == {"auc": 0.01, "rmse": 0.5}
    assert checks.segments == [SegmentCheck(column="employment", metric="accuracy", min=0.7,
                                            min_rows=50)]
    assert checks.functions == ["my_checks.fairness:no_group_collapses"]
    # What a run records (its spec) rebuilds the same spec: the retrain loop relies on it.
    assert TrainSpec(**spec.to_dict()) == spec


@pytest.mark.parametrize(("gate", "named"), [
    ([], "'gate' must be a table"),
    ({"threshold": {}}, "'gate' has unknown key(s) ['threshold']"),
    ({"thresholds": []}, "'gate.thresholds' must be a table"),
    ({"thresholds": {"auc": 0.8}}, "'gate.thresholds.auc' must be a table"),
    ({"thresholds": {"auc": {"minimum": 0.8}}}, "'gate.thresholds.auc' has unknown key"),
    ({"thresholds": {"auc": {}}}, "'gate.thresholds.auc' needs min or max"),
    ({"thresholds": {"auc": {"min": "high"}}}, "'gate.thresholds.auc.min' must be a finite"),
    ({"thresholds": {"auc": {"min": True}}}, "'gate.thresholds.auc.min' must be a finite"),
    ({"thresholds": {"auc": {"min": 0.9, "max": 0.8}}}, "'gate.thresholds.auc' has min 0.9"),
    ({"thresholds": {"a b": {"min": 1}}}, "'gate.thresholds.a b' must name a metric"),
    ({"tolerance": {"weirdness": 0.1}}, "'gate.tolerance.weirdness' names a metric whose"),
    ({"tolerance": {"auc": -0.1}}, "'gate.tolerance.auc' must be a non-negative number"),
    ({"segments": {"column": "employment"}}, "'gate.segments' must be an array"),
    ({"segments": [{"column": "colour", "metric": "accuracy", "min": 0.5}]},
     "'gate.segments[0].column' must be one of the spec's categorical columns"),
    ({"segments": [{"column": "employment", "metric": "accuracy"}]},
     "'gate.segments[0]' needs exactly one of min or max"),
    ({"segments": [{"column": "employment", "metric": "accuracy", "min": 0.5, "min_rows": 0}]},
     "'gate.segments[0].min_rows' must be a positive integer"),
    ({"segments": [{"column": "employment", "metric": "accuracy", "min": 0.5, "rows": 9}]},
     "'gate.segments[0]' has unknown key(s) ['rows']"),
    ({"functions": "checks:f"}, "'gate.functions' must be a list"),
    ({"functions": ["checks.f"]}, "'gate.functions[0]' must be 'module:function'"),
    ({"functions": ["checks:f", "checks:f"]}, "'gate.functions' names a function twice"),
])
def test_a_bad_gate_table_names_the_key(gate, named):
    with pytest.raises(InvalidInput) as bad:
        parse_gate(gate, "'spec.toml'", ["employment"])
    assert str(bad.value).startswith("spec 'spec.toml': ")
    assert named in str(bad.value)


def test_a_bad_gate_in_a_spec_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.replace("min = 0.8", "min = 'high'"))
    with pytest.raises(InvalidInput, match=r"spec '.*spec.toml': 'gate.thresholds.auc.min'"):
        load_spec(path)


def test_directions_cover_every_task():
    for metric in ("accuracy", "auc", "r2", "macro_f1"):
        assert direction(metric) == "higher"
    for metric in ("log_loss", "rmse", "mae"):
        assert direction(metric) == "lower"
    assert direction("weirdness") is None


CANDIDATE = {"accuracy": 0.82, "auc": 0.88, "log_loss": 0.41, "rows": 400}


@pytest.mark.parametrize(("checks", "passed", "names"), [
    (GateChecks(thresholds={"auc": Limit(min=0.8)}), True, ["auc >= 0.8"]),
    (GateChecks(thresholds={"auc": Limit(min=0.9)}), False, ["auc >= 0.9"]),
    (GateChecks(thresholds={"log_loss": Limit(max=0.5)}), True, ["log_loss <= 0.5"]),
    (GateChecks(thresholds={"log_loss": Limit(max=0.4)}), False, ["log_loss <= 0.4"]),
    (GateChecks(thresholds={"accuracy": Limit(min=0.8, max=0.81)}), False,
     ["accuracy >= 0.8", "accuracy <= 0.81"]),
])
def test_thresholds(checks, passed, names):
    result = approvals.gate(CANDIDATE, checks=checks)
    assert result.passed is passed
    assert [c.name for c in result.checks] == names
    assert all(c.kind == "threshold" and c.measured is not None for c in result.checks)


@pytest.mark.parametrize(("metric", "tol", "theirs", "passed", "limit"), [
    ("auc", 0.01, 0.885, True, 0.875),     # a little below the incumbent, within tolerance
    ("auc", 0.01, 0.90, False, 0.89),      # more than the tolerance below
    ("log_loss", 0.02, 0.40, True, 0.42),  # lower is better: a little above, within
    ("log_loss", 0.02, 0.38, False, 0.40),
])
def test_tolerance_follows_each_metrics_direction(metric, tol, theirs, passed, limit):
    [check] = judge(GateChecks(tolerance={metric: tol}), CANDIDATE, {**CANDIDATE, metric: theirs})
    assert check.passed is passed and check.judged and check.kind == "tolerance"
    assert check.limit == pytest.approx(limit) and check.measured == CANDIDATE[metric]


def test_tolerance_without_an_incumbent_is_reported_not_judged():
    [check] = judge(GateChecks(tolerance={"auc": 0.01}), CANDIDATE, None)
    assert check.passed and not check.judged and check.measured == 0.88


def test_a_metric_the_evaluation_did_not_produce_or_could_not_define_fails():
    checks = GateChecks(thresholds={"rmse": Limit(max=1.0)}, tolerance={"auc": 0.01})
    rmse, auc = judge(checks, {**CANDIDATE, "auc": None}, CANDIDATE)
    assert not rmse.passed and "produced no metric 'rmse'" in rmse.detail
    assert "accuracy, auc, log_loss" in rmse.detail
    assert not auc.passed and "auc is undefined" in auc.detail


def test_todays_gate_is_the_default():
    assert approvals.gate({"accuracy": 0.9, "auc": 0.9}).passed
    worse = approvals.gate({"accuracy": 0.85, "auc": 0.9}, {"accuracy": 0.9, "auc": 0.9})
    assert [c.name for c in worse.failed] == ["accuracy >= incumbent - 0.01"]


SEGMENTS = GateChecks(segments=[SegmentCheck(column="employment", metric="accuracy", min=0.7,
                                             min_rows=50)])


def _segment(value, rows, accuracy):
    return SegmentMeasure("employment", value, rows, {"accuracy": accuracy, "rows": rows})


def test_a_segment_below_its_minimum_fails_and_a_small_one_is_not_judged():
    result = approvals.gate(CANDIDATE, checks=SEGMENTS, segments=[
        _segment("salaried", 300, 0.85), _segment("contract", 60, 0.6),
        _segment("unemployed", 12, 0.4)])
    by_name = {c.name: c for c in result.checks}
    assert by_name["segment employment=salaried: accuracy >= 0.7"].passed
    contract = by_name["segment employment=contract: accuracy >= 0.7"]
    assert not contract.passed and contract.measured == 0.6 and contract.detail == "60 rows"
    small = by_name["segment employment=unemployed: accuracy >= 0.7"]
    assert small.passed and not small.judged and small.measured == 0.4
    assert small.detail == "12 rows, fewer than min_rows 50: reported, not judged"
    assert not result.passed and [c.name for c in result.failed] == [contract.name]


def test_a_segment_check_with_nothing_measured_fails():
    [check] = judge(SEGMENTS, CANDIDATE, segments=[])
    assert not check.passed and "no segment of 'employment' was measured" in check.detail


def test_function_outcomes_become_checks_and_a_missing_one_fails():
    checks = GateChecks(functions=["a:ok", "a:no", "a:lost"])
    ok, no, lost = judge(checks, CANDIDATE, functions=[
        FunctionOutcome("a:ok", True, "fine"), FunctionOutcome("a:no", False, "too biased")])
    assert ok.passed and ok.detail == "fine" and ok.name == "function a:ok"
    assert not no.passed and no.detail == "too biased"
    assert not lost.passed and lost.detail == "was not run"


def test_a_stored_verdict_reads_back_even_in_the_old_shape():
    result = approvals.gate(CANDIDATE, checks=SEGMENTS, segments=[_segment("a", 80, 0.9)])
    assert approvals.GateResult.from_dict(result.to_dict()) == result
    old = approvals.GateResult.from_dict(
        {"passed": True, "checks": [{"check": "accuracy >= 0.7", "value": 0.9, "passed": True}]})
    assert old.checks[0].name == "accuracy >= 0.7" and old.checks[0].measured == 0.9


def test_checks_stored_with_a_version_round_trip(db_url, tmp_path):
    checks = GateChecks(thresholds={"auc": Limit(min=0.8)}, tolerance={"rmse": 0.5},
                        segments=SEGMENTS.segments, functions=["my_checks:f"])
    store = ArtifactStore(tmp_path / "artifacts")
    with session_scope(db_url) as s:
        ds = datasets.add_table(s, store, pa.table({"x": [1.0, 2.0], "y": [0, 1]}), "loans",
                                actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="credit")
        ids = []
        for stored in (checks.to_dict(), None):
            run = models.start_run(s, model="credit", dataset=ds, spec={}, params={}, seed=1,
                                   actor="ops")
            ids.append(models.register_version(
                s, run=run, digest="d" * 64, profile_digest=None, metrics={}, features=["x"],
                categorical=[], label="y", actor="ops", gate_checks=stored).id)
    with session_scope(db_url) as s:
        configured, legacy = (s.get(ModelVersion, i) for i in ids)
        assert from_stored(configured.gate_checks) == checks
        assert configured.gate_checks["thresholds"] == {"auc": {"min": 0.8}}
        # A version that stored nothing (registered before 0007) gets today's gate.
        assert legacy.gate_checks is None and from_stored(legacy.gate_checks) == DEFAULT_CHECKS


def test_each_task_has_its_default_gate_in_its_metrics_directions():
    def gate(task, candidate, incumbent=None):
        return approvals.gate(candidate, incumbent, checks=gate_checks.default_checks(task))

    # Regression: r2 >= 0 (better than answering the mean), and r2 no more than 0.01 below the
    # champion's; rmse, in label units, has no natural tolerance and is not judged.
    reg = {"rmse": 1.0, "mae": 0.8, "r2": 0.6}
    assert gate("regression", reg, {**reg, "r2": 0.605, "rmse": 0.5}).passed
    worse = gate("regression", {**reg, "r2": 0.55}, reg)
    assert [c.name for c in worse.failed] == ["r2 >= incumbent - 0.01"]
    assert not gate("regression", {**reg, "r2": -0.1}).passed
    # Multiclass: macro F1 floor, and neither accuracy nor macro F1 more than 0.01 below.
    mc = {"accuracy": 0.5, "macro_f1": 0.7, "log_loss": 0.9}
    assert gate("multiclass", mc, {**mc, "macro_f1": 0.705}).passed
    assert not gate("multiclass", mc, {**mc, "macro_f1": 0.75}).passed
    assert not gate("multiclass", mc, {**mc, "accuracy": 0.6}).passed
    assert not gate("multiclass", {**mc, "macro_f1": 0.4}).passed
    # A spec without [gate] gets its task's default; an unknown task the binary one.
    assert parse_gate(None, task="regression") == gate_checks.default_checks("regression")
    assert gate_checks.from_stored(None, "multiclass") == gate_checks.default_checks("multiclass")
    assert gate_checks.default_checks("what") == gate_checks.DEFAULT_CHECKS
