"""The synthetic credit stream: determinism, schema, and that each kind of drift does its job."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from appliance.data import synthetic
from appliance.data.synthetic import CATEGORICAL, FEATURES, LABEL, NUMERICAL, generate
from appliance.errors import InvalidInput


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    return {f: _col(table, f) for f in FEATURES}


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, x, side="right") / len(a)
    cdf_b = np.searchsorted(b, x, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def test_feature_lists_are_consistent():
    assert [*NUMERICAL, *CATEGORICAL] == FEATURES
    assert CATEGORICAL == ["employment", "home_ownership"]
    assert 6 <= len(NUMERICAL) <= 8
    assert LABEL == "default" and LABEL not in FEATURES


def test_schema_and_ranges():
    table = generate(3000, seed=7)
    assert table.num_rows == 3000
    assert table.column_names == [*FEATURES, LABEL]
    for name in NUMERICAL:
        assert table.schema.field(name).type == pa.float64(), name
        assert table.column(name).null_count == 0
    for name in CATEGORICAL:
        assert table.schema.field(name).type == pa.string(), name
    assert table.schema.field(LABEL).type == pa.int64()

    c = _columns(table)
    assert set(np.unique(_col(table, LABEL))) == {0, 1}
    assert c["age"].min() >= 18 and c["age"].max() <= 80
    assert (c["income"] > 0).all() and (c["loan_amount"] > 0).all()
    for ratio in ("debt_to_income", "credit_utilization"):
        assert ((c[ratio] > 0) & (c[ratio] < 1)).all(), ratio
    for count in ("open_accounts", "late_payments_12m", "credit_history_months"):
        assert (c[count] >= 0).all() and (c[count] == np.round(c[count])).all(), count
    assert (c["credit_history_months"] <= (c["age"] - 18) * 12).all()
    assert set(c["employment"]) == set(synthetic.EMPLOYMENT)
    assert set(c["home_ownership"]) == set(synthetic.HOME_OWNERSHIP)
    # A credit book, not a coin: roughly a third default when nothing has drifted.
    assert 0.25 < _col(table, LABEL).mean() < 0.42


def test_same_seed_same_table_other_seed_other_table():
    assert generate(500, seed=11, covariate=0.3, concept=0.6).equals(
        generate(500, seed=11, covariate=0.3, concept=0.6)
    )
    assert not generate(500, seed=11).equals(generate(500, seed=12))


def test_concept_drift_keeps_features_and_changes_labels():
    # Common random numbers: the same applicants, only the rule deciding default changes.
    before, after = generate(5000, seed=3), generate(5000, seed=3, concept=1.0)
    assert before.select(FEATURES).equals(after.select(FEATURES))
    changed = np.mean(_col(before, LABEL) != _col(after, LABEL))
    assert changed > 0.25


def test_covariate_drift_moves_marginals_but_not_the_rule():
    ref = generate(20_000, seed=1)
    same = generate(2000, seed=2)
    drifted = generate(2000, seed=2, covariate=1.0)
    moved = [f for f in NUMERICAL if _ks(_col(ref, f), _col(drifted, f)) > 0.1]
    assert len(moved) >= 5, moved
    assert all(_ks(_col(ref, f), _col(same, f)) < 0.05 for f in NUMERICAL)
    assert np.median(_col(drifted, "income")) < 0.8 * np.median(_col(ref, "income"))
    assert (
        np.mean(_col(drifted, "home_ownership") == "rent")
        > np.mean(_col(ref, "home_ownership") == "rent") + 0.1
    )
    assert (
        np.mean(_col(drifted, "employment") == "contract")
        > np.mean(_col(ref, "employment") == "contract") + 0.08
    )
    # P(default | x) is a fixed function of the applicant under covariate drift alone.
    cols = _columns(drifted)
    np.testing.assert_allclose(
        synthetic.default_probability(cols), synthetic.default_probability(cols, concept=0.0)
    )


def test_drift_strength_is_graded():
    ref = _col(generate(20_000, seed=1), "income")
    ks = [_ks(ref, _col(generate(4000, seed=2, covariate=s), "income")) for s in (0.0, 0.5, 1.0)]
    assert ks[0] < ks[1] < ks[2]


def test_bayes_accuracy_equal_across_regimes_and_old_rule_fails_under_concept_drift():
    table = generate(100_000, seed=5)
    cols = _columns(table)
    p0 = synthetic.default_probability(cols, concept=0.0)
    p1 = synthetic.default_probability(cols, concept=1.0)
    bayes0 = np.mean(np.maximum(p0, 1 - p0))
    bayes1 = np.mean(np.maximum(p1, 1 - p1))
    assert 0.85 < bayes0 < 0.92
    assert abs(bayes0 - bayes1) < 0.01
    # The best possible concept-0 model, scored on concept-1 labels.
    y1 = _col(generate(100_000, seed=5, concept=1.0), LABEL)
    assert np.mean((p0 >= 0.5) == y1) < bayes1 - 0.2
    assert abs(np.corrcoef(p0, p1)[0, 1]) < 0.2


def test_risk_score_has_unit_variance_at_every_concept_strength():
    z = synthetic._risk_terms(_columns(generate(50_000, seed=9)))
    for c in (0.0, 0.25, 0.5, 1.0):
        assert math.isclose(float(np.std(z @ synthetic.coefficients(c))), 1.0, rel_tol=0.02), c


@pytest.mark.parametrize("n", [0, -5, 1.5, "10", True, None])
def test_bad_row_count(n):
    with pytest.raises(InvalidInput, match="n must be"):
        generate(n, seed=1)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_bad_seed(seed):
    with pytest.raises(InvalidInput, match="seed"):
        generate(10, seed=seed)


@pytest.mark.parametrize("arg", ["covariate", "concept"])
@pytest.mark.parametrize("value", [-0.1, 1.01, float("nan"), "strong", None])
def test_bad_strength(arg, value):
    with pytest.raises(InvalidInput, match=arg):
        generate(10, seed=1, **{arg: value})


def test_imports_neither_torch_nor_ray():
    code = (
        "import sys, appliance.data.synthetic as s; s.generate(10, seed=1); "
        "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_protected_attribute_is_extra_and_tracks_income_not_the_label_rule():
    plain = generate(20_000, seed=5)
    table = generate(20_000, seed=5, protected=True)
    # The same applicants and labels, with the group after the label.
    assert table.column_names == [*FEATURES, LABEL, synthetic.PROTECTED]
    assert table.drop_columns([synthetic.PROTECTED]).equals(plain)
    group = np.array(table.column(synthetic.PROTECTED).to_pylist())
    assert set(group) == {"a", "b"}
    assert 0.32 < (group == "b").mean() < 0.36
    corr = np.corrcoef(group == "b", np.log(_col(table, "income")))[0, 1]
    assert -0.5 < corr < -0.4
    # Covariate drift moves incomes, not the membership rule.
    drifted = generate(20_000, seed=5, covariate=1.0, protected=True)
    assert drifted.column(synthetic.PROTECTED).equals(table.column(synthetic.PROTECTED))
