"""The promotion gate on real trained models: the checks a version stored from its spec judge it,
on its own holdout, against the real alias holder; segments are scored on real predictions and
user functions get the real bundles (`appliance.pipelines.promotion.run_gate`, `gating`).

v1 is a tiny model trained once on a real local Ray, from a spec with a [gate] table; v2 is an
untrained network of the same data (see `_untrained`), clearly worse than v1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.config import load_config
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import GateFailed
from appliance.governance import approvals, audit
from appliance.governance.gate_checks import (
    GateChecks,
    Limit,
    SegmentCheck,
    from_stored,
    parse_gate,
)
from appliance.governance.users import create_user, get_user, issue_token
from appliance.pipelines import loop, promotion, training
from appliance.pipelines.spec import parse_spec
from appliance.registry import datasets, models
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import AuditEvent, ModelVersion, RetrainRequest

MODEL = "scorer"
TESTS = Path(__file__).resolve().parents[1]
GATE = {
    "thresholds": {"auc": {"min": 0.6}, "log_loss": {"max": 1.0}},
    "tolerance": {"auc": 0.02},
    # 240 holdout rows: salaried (~60%) is judged, the smaller employment segments are not.
    "segments": [{"column": "employment", "metric": "accuracy", "min": 0.5, "min_rows": 60}],
    "functions": ["gate_functions:scores_are_probabilities"],
}


@pytest.fixture(scope="module")
def world(ray_session, tmp_path_factory):
    home = tmp_path_factory.mktemp("gating")
    cfg = load_config({"APPLIANCE_HOME": str(home)})
    migrate(cfg.db_url)
    with audit.configured(cfg), session_scope(cfg.db_url) as s:
        create_user(s, "admin", "admin", actor="admin")
        ops = create_user(s, "ops", "operator", actor="admin", team="risk")
        create_user(s, "risk", "approver", actor="admin")
        token = issue_token(s, "ops", "cli", actor="admin")
        ds = datasets.add_table(s, ArtifactStore(cfg.artifacts), generate(1200, seed=5),
                                "loans", actor="ops")
    base = {"model": MODEL, "dataset": f"{ds.name}:{ds.version}", "label": LABEL,
            "categorical": CATEGORICAL, "seed": 1}
    with audit.configured(cfg):
        v1 = training.train(cfg, ops, parse_spec(
            {**base, "params": {"epochs": 6, "hidden": 16}, "gate": GATE}))
        v2 = _untrained(cfg, ops, parse_spec(base))
    yield {"cfg": cfg, "home": home, "ops": ops, "token": token, "v1": v1.version, "v2": v2}
    dispose_all()


def _untrained(cfg, user, spec):
    """A version whose network was never trained (a real bundle with seeded random weights),
    registered as one was before versions stored their gate: it gets the default gate.

    Cheaper than a second Ray Train run, and certainly worse than v1."""
    import torch

    from appliance.tables import table_columns
    from cluster.bundle import ModelBundle, Preprocessor, build_mlp

    store = ArtifactStore(cfg.artifacts)
    with session_scope(cfg.db_url) as s:
        ds = datasets.resolve(s, spec.dataset)
        table = datasets.load(store, ds)
        features = [c for c in table.column_names if c != spec.label]
        pre = Preprocessor.fit(table_columns(table, features, spec.categorical),
                               spec.categorical)
        torch.manual_seed(0)
        bundle = ModelBundle(pre, build_mlp(pre.width, 4, 1), 4, 1, spec.label)
        run = models.start_run(s, model=MODEL, dataset=ds, spec=spec.to_dict(), params={},
                               seed=spec.seed, actor=user.name)
        models.finish_run(s, run, metrics={}, device="cpu")
        return models.register_version(
            s, run=run, digest=store.put_bytes(bundle.to_bytes()), profile_digest=None,
            metrics={}, features=features, categorical=spec.categorical, label=spec.label,
            actor=user.name)


def _v1_is_champion(world) -> None:
    """Promote v1 (its gate passes) unless it holds the alias already: the tests that compare
    with a champion need one, whichever of them runs first."""
    cfg = world["cfg"]
    with session_scope(cfg.db_url) as s:
        holder = approvals.alias_holder(s, MODEL, "champion")
    if holder is None:
        with audit.configured(cfg):
            approval, _ = promotion.request(cfg, world["ops"], f"{MODEL}:1", "champion")
            with session_scope(cfg.db_url) as s:
                approvals.approve(s, get_user(s, "risk"), approval.id)


def _by_kind(result, kind):
    return [c for c in result.checks if c.kind == kind]


def test_each_version_stores_the_gate_of_its_spec(world):
    with session_scope(world["cfg"].db_url) as s:
        v1, v2 = (s.get(ModelVersion, world[v].id) for v in ("v1", "v2"))
        assert from_stored(v1.gate_checks) == parse_gate(GATE, categorical=CATEGORICAL)
        assert v1.gate_checks["functions"] == ["gate_functions:scores_are_probabilities"]
        # v2 stored no gate, as versions registered before 0007: today's floors and tolerance.
        assert v2.gate_checks is None
        assert from_stored(v2.gate_checks) == from_stored({"thresholds": {
            "accuracy": {"min": 0.7}, "auc": {"min": 0.7}},
            "tolerance": {"accuracy": 0.01, "auc": 0.01}})


def test_the_first_promotion_is_judged_by_the_versions_own_gate(world):
    cfg = world["cfg"]
    with audit.configured(cfg):
        approval, result = promotion.request(cfg, world["ops"], f"{MODEL}:1", "champion")
    assert result.passed, approvals.describe_failures(result)
    assert {c.name for c in _by_kind(result, "threshold")} == {"auc >= 0.6", "log_loss <= 1"}
    [tol] = _by_kind(result, "tolerance")
    assert not tol.judged and tol.detail == "no alias holder to compare with"
    segments = {c.name.split(":")[0]: c for c in _by_kind(result, "segment")}
    assert segments["segment employment=salaried"].judged
    small = segments["segment employment=unemployed"]
    assert not small.judged and small.passed and "fewer than min_rows 60" in small.detail
    [fn] = _by_kind(result, "function")
    assert fn.passed and fn.name == "function gate_functions:scores_are_probabilities"
    assert "240 of 240 rows scored" in fn.detail
    with audit.configured(cfg), session_scope(cfg.db_url) as s:
        row = approvals.get_approval(s, approval.id)
        assert row.gate["checks"] == result.to_dict()["checks"]
        approvals.approve(s, get_user(s, "risk"), approval.id)


def test_a_worse_candidate_fails_the_tolerance_against_the_real_champion(world):
    cfg, v1, v2 = world["cfg"], world["v1"], world["v2"]
    checks = GateChecks(tolerance={"auc": 0.02})
    worse = promotion.run_gate(cfg, v2, v1, checks=checks)
    [tol] = worse.result.checks
    assert not worse.result.passed and tol.judged
    assert tol.measured == worse.candidate["auc"] < worse.incumbent["auc"] - 0.02
    assert tol.limit == pytest.approx(worse.incumbent["auc"] - 0.02)
    # The same check, the other way round, on v1's own holdout: v1 is no worse than v2.
    better = promotion.run_gate(cfg, v1, v2, checks=checks)
    assert better.result.passed and better.result.checks[0].judged


def test_a_segment_below_its_minimum_fails(world):
    checks = GateChecks(segments=[SegmentCheck(column="employment", metric="accuracy",
                                               min=0.99, min_rows=1)])
    result = promotion.run_gate(world["cfg"], world["v1"], None, checks=checks).result
    assert not result.passed
    assert {c.name.split(":")[0] for c in result.failed} >= {"segment employment=salaried"}
    assert all(c.judged and c.limit == 0.99 for c in result.checks)


def test_a_metric_the_evaluation_did_not_produce_fails_naming_it(world):
    checks = GateChecks(thresholds={"rmse": Limit(max=0.3)})
    [check] = promotion.run_gate(world["cfg"], world["v1"], None, checks=checks).result.checks
    assert not check.passed and "produced no metric 'rmse'" in check.detail
    assert "accuracy, auc, log_loss" in check.detail


@pytest.mark.parametrize(("function", "passed", "detail"), [
    ("agrees_with_champion", False, "agrees with v1 on"),
    ("reads_a_missing_column", False, "gate_functions:reads_a_missing_column raised KeyError"),
    ("returns_a_score", False, "returned float"),
    ("NOT_A_FUNCTION", False, "is a int, not a function"),
    ("scores_are_probabilities", True, "rows scored"),
])
def test_user_functions_pass_fail_and_never_crash_the_gate(world, function, passed, detail):
    checks = GateChecks(functions=[f"gate_functions:{function}"])
    result = promotion.run_gate(world["cfg"], world["v2"], world["v1"], checks=checks).result
    [check] = result.checks
    assert check.passed is passed and result.passed is passed
    assert detail in check.detail and check.name == f"function gate_functions:{function}"


def test_a_function_whose_module_is_missing_fails_naming_it(world):
    checks = GateChecks(functions=["no_such_gate_module:check"])
    [check] = promotion.run_gate(world["cfg"], world["v1"], None, checks=checks).result.checks
    assert not check.passed
    assert "no_such_gate_module:check raised ModuleNotFoundError" in check.detail


def test_promote_shows_a_failed_verdict_and_exits_1(world):
    _v1_is_champion(world)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(APPLIANCE_HOME=str(world["home"]), APPLIANCE_TOKEN=world["token"],
               PYTHONPATH=os.pathsep.join([str(TESTS.parent), str(TESTS)]))
    res = subprocess.run([sys.executable, "-m", "appliance.cli", "promote", MODEL, "2",
                          "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{MODEL}:2 failed the promotion gate" in lines[0], res.stderr
    doc = json.loads(res.stdout)
    assert doc["status"] == "gate_failed" and doc["approval"] is None
    assert not doc["gate"]["passed"]
    failed = {c["name"] for c in doc["gate"]["checks"] if not c["passed"]}
    # v2 stored the default gate: the floors, and no worse than the champion v1 by 0.01.
    assert "auc >= incumbent - 0.01" in failed
    assert set(doc["gate"]["checks"][0]) == {"name", "kind", "measured", "limit", "passed",
                                             "judged", "detail"}
    with session_scope(world["cfg"].db_url) as s:
        event = s.exec(select(AuditEvent).where(AuditEvent.action == "model.gate.failed")
                       ).all()[-1]
        assert event.details["gate"]["checks"] == doc["gate"]["checks"]
    # Without --json: one table row per check on stdout, the failure on stderr.
    res = subprocess.run([sys.executable, "-m", "appliance.cli", "promote", MODEL, "2"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    header, *rows = res.stdout.strip().splitlines()
    assert header.split() == ["CHECK", "KIND", "MEASURED", "LIMIT", "RESULT", "DETAIL"]
    assert len(rows) == len(doc["gate"]["checks"])
    assert any(r.startswith("auc >= incumbent - 0.01") and " failed " in r for r in rows)


def test_the_request_names_its_failures(world):
    _v1_is_champion(world)
    cfg = world["cfg"]
    with audit.configured(cfg), pytest.raises(GateFailed, match="auc >= incumbent - 0.01") \
            as failed:
        promotion.request(cfg, world["ops"], f"{MODEL}:2", "champion")
    assert not failed.value.verdict.passed


def test_the_loops_gating_step_judges_the_challenger_against_the_champion(world):
    """The retrain loop's `gating` step: v2 (the challenger) by its stored gate against v1."""
    cfg = world["cfg"]
    _v1_is_champion(world)
    with session_scope(cfg.db_url) as s:
        request = RetrainRequest(
            model_name=MODEL, deployment=MODEL, active_key=MODEL, trigger="drift",
            since_window=1, state="gating", champion_version_id=world["v1"].id,
            version_id=world["v2"].id, created_by="ops")
        s.add(request)
        s.flush()
        rid = request.id
    with audit.configured(cfg):
        [step] = loop.advance(cfg, world["ops"], model=MODEL, budget=1)
    assert (step.before, step.after) == ("gating", "gate_failed")
    assert "auc >= incumbent - 0.01 (incumbent" in step.note
    with session_scope(cfg.db_url) as s:
        request = s.get(RetrainRequest, rid)
        verdict = approvals.GateResult.from_dict(request.gate)
        assert not verdict.passed and request.gate["champion_version"] == 1
        assert {c.name for c in verdict.failed} >= {"auc >= incumbent - 0.01", "auc >= 0.7"}
        assert request.gate["champion"]["auc"] > request.gate["candidate"]["auc"]
