"""Segments and fairness gaps (`appliance.monitor.fairness`), checked against values worked out
by hand, and the alert rules that read them (`appliance.monitor.rules`)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from appliance.errors import InvalidInput
from appliance.monitor import fairness
from appliance.monitor.policy import build, parse_settings
from appliance.monitor.rules import parse_rule, window_value


def _groups():
    # Group a: 100 rows, 50 predicted 1; of its 40 labelled positives, 30 predicted 1.
    # Group b: 50 rows, 15 predicted 1; of its 20 labelled positives, 8 predicted 1.
    # Group c: 10 rows (below min_group_rows 30), all predicted 1: reported, not in the gaps.
    groups = ["a"] * 100 + ["b"] * 50 + ["c"] * 10
    pred = [1] * 50 + [0] * 50 + [1] * 15 + [0] * 35 + [1] * 10
    labels = ([1] * 30 + [0] * 20 + [1] * 10 + [0] * 40
              + [1] * 8 + [0] * 7 + [1] * 12 + [-1] * 23
              + [1] * 10)
    return groups, pred, labels


def test_gaps_match_hand_computed_values():
    groups, pred, labels = _groups()
    got = fairness.fairness_gaps(groups, pred, labels, min_group_rows=30)
    # PR_a = 50/100 = 0.5, PR_b = 15/50 = 0.3.
    assert got["groups"]["a"]["positive_rate"] == pytest.approx(0.5)
    assert got["groups"]["b"]["positive_rate"] == pytest.approx(0.3)
    assert got["demographic_parity_difference"] == pytest.approx(0.2)
    # 0.3 / 0.5 = 0.6 < 0.8: the four-fifths rule fails.
    assert got["disparate_impact_ratio"] == pytest.approx(0.6)
    assert got["four_fifths"] is False
    # TPR_a = 30/40 = 0.75, TPR_b = 8/20 = 0.4.
    assert got["groups"]["a"]["tpr"] == pytest.approx(0.75)
    assert got["groups"]["b"]["tpr"] == pytest.approx(0.4)
    assert got["equal_opportunity_difference"] == pytest.approx(0.35)
    # Group c is reported (PR 1.0) but too small to count.
    assert got["groups"]["c"] == {"rows": 10, "positive_rate": 1.0, "labelled_positives": 10,
                                  "tpr": 1.0}


def test_four_fifths_passes_at_the_boundary_and_gaps_need_two_groups():
    # 40/100 against 50/100: 0.8 exactly passes.
    got = fairness.fairness_gaps(["x"] * 100 + ["y"] * 100,
                                 [1] * 40 + [0] * 60 + [1] * 50 + [0] * 50, min_group_rows=1)
    assert got["disparate_impact_ratio"] == pytest.approx(0.8)
    assert got["four_fifths"] is True
    assert got["equal_opportunity_difference"] is None  # no labels
    one = fairness.fairness_gaps(["x"] * 10, [1] * 10, min_group_rows=1)
    assert one["demographic_parity_difference"] is None and one["four_fifths"] is None


def test_segments_carry_live_metrics_once_labelled():
    values = ["n"] * 4 + ["s"] * 4
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 0, -1, 1, 1, -1, -1])
    got = fairness.segment_stats("binary", values, pred, scores, labels)
    assert got["n"]["rows"] == 4 and got["n"]["positive_rate"] == pytest.approx(0.5)
    # n: labelled rows 0..2 -> predictions 1,1,0 vs labels 1,0,0: 2 of 3 right.
    assert got["n"]["labelled_rows"] == 3 and got["n"]["accuracy"] == pytest.approx(2 / 3)
    # s: labelled rows 4,5 -> predictions 1,0 vs labels 1,1: 1 of 2.
    assert got["s"]["accuracy"] == pytest.approx(0.5)
    assert got["s"]["mean_score"] == pytest.approx(0.4)


def test_many_values_pool_the_rarest_as_other():
    values = [str(i) for i in range(30)] + ["0"] * 10
    pooled = fairness.group_values(values, limit=5)
    assert len(set(pooled)) == 5 and "other" in set(pooled) and "0" in set(pooled)


def test_rules_read_fairness_and_the_worst_segment():
    stats = types.SimpleNamespace(
        rows=500, labelled_rows=200, drift_status="ok", metrics={}, estimated={},
        fairness={"disparate_impact_ratio": 0.6, "equal_opportunity_difference": 0.35},
        importance={"importance_shift": 0.3},
        segments={"region": {"n": {"rows": 300, "labelled_rows": 150, "accuracy": 0.9,
                                   "positive_rate": 0.2},
                             "s": {"rows": 200, "labelled_rows": 50, "accuracy": 0.7,
                                   "positive_rate": 0.5}}})
    di = parse_rule({"name": "di", "metric": "disparate_impact_ratio", "op": "<",
                     "threshold": 0.8}, "r")
    assert di.kind == "fairness" and window_value(di, stats, None) == pytest.approx(0.6)
    assert di.breached(0.6, None)
    eod = parse_rule({"name": "eo", "metric": "equal_opportunity_difference", "op": ">",
                      "threshold": 0.1, "min_rows": 300}, "r")
    assert window_value(eod, stats, None) is None  # 200 labelled rows < 300
    shift = parse_rule({"name": "imp", "metric": "importance_shift", "op": ">=",
                        "threshold": 0.25}, "r")
    assert shift.kind == "importance" and window_value(shift, stats, None) == 0.3
    worst = parse_rule({"name": "seg", "metric": "accuracy", "segment": "region",
                        "drop": 0.1}, "r")
    assert worst.kind == "segment" and window_value(worst, stats, None) == 0.7
    high = parse_rule({"name": "rate", "metric": "positive_rate", "segment": "region",
                       "op": ">", "threshold": 0.4}, "r")
    assert window_value(high, stats, None) == 0.5
    one = parse_rule({"name": "n", "metric": "accuracy", "segment": "region=n", "op": "<",
                      "threshold": 0.8, "min_rows": 100}, "r")
    assert window_value(one, stats, None) == 0.9
    small = parse_rule({"name": "s", "metric": "accuracy", "segment": "region", "op": "<",
                        "threshold": 0.8, "min_rows": 100}, "r")
    assert window_value(small, stats, None) == 0.9  # segment s has 50 labelled rows only


@pytest.mark.parametrize("doc, says", [
    ({"name": "x", "metric": "mean_score", "op": "<", "threshold": 1}, "unknown metric"),
    ({"name": "x", "metric": "estimated_auc", "segment": "r", "op": "<", "threshold": 1},
     "for a segment"),
    ({"name": "x", "metric": "disparate_impact_ratio", "drop": 0.1}, "'drop'/'rise'"),
    ({"name": "x", "metric": "accuracy", "segment": 3, "op": "<", "threshold": 1}, "'segment'"),
])
def test_bad_rules_are_refused(doc, says):
    with pytest.raises(InvalidInput, match=says):
        parse_rule(doc, "alert_rules[0]")


def test_policy_takes_segments_and_a_protected_attribute():
    got = parse_settings({"segments": "region, channel", "protected_attribute": "group",
                          "fairness_min_rows": 50})
    policy = build(got)
    assert policy.segments == ("region", "channel") and policy.protected_attribute == "group"
    assert policy.to_dict()["segments"] == ["region", "channel"]
    with pytest.raises(InvalidInput, match="protected_attribute"):
        parse_settings({"protected_attribute": 5})
