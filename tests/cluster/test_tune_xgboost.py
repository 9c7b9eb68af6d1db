"""Gradient-boosted trees as a tuning trial (`cluster.tune_xgboost`): how often a trial reports
over its budget of rounds, its params checked as a fit's are, and on a real Ray Tune a report
every few rounds and at the last one, with the validation slice's metrics of the task (here
multiclass). Sweeps with ASHA:
tests/pipelines/test_tuning.py."""

from __future__ import annotations

import math

import pytest
from trial_helpers import LABELS, rows, run_trials

from appliance.errors import InvalidInput
from cluster.tune_trial import prepare
from cluster.tune_xgboost import REPORTS, report_every, trial

ROUNDS = 50


@pytest.mark.parametrize(("rounds", "every"), [
    (1, 1), (19, 1), (20, 1), (21, 2), (40, 2), (41, 3), (50, 3), (100, 5), (1001, 51),
])
def test_rounds_between_two_reports(rounds, every):
    assert report_every(rounds) == every


def test_a_trial_reports_about_twenty_times_whatever_its_budget():
    for rounds in range(1, 2_000):
        every = report_every(rounds)
        # Every `every` rounds, and at the last round when it falls between two.
        reports = math.ceil(rounds / every)
        assert reports <= REPORTS, rounds
        if rounds <= REPORTS:
            assert reports == rounds
        else:
            assert reports > REPORTS // 2, rounds


@pytest.fixture(scope="module")
def data():
    return prepare(rows("multiclass", 300, seed=1), rows("multiclass", 100, seed=2),
                   label=LABELS["multiclass"], categorical=["c"], task="multiclass", seed=3)


def test_a_bad_param_is_refused_before_any_boosting(data):
    with pytest.raises(InvalidInput, match=r"unknown training param\(s\) \['hidden'\] for kind "
                                           r"'xgboost'"):
        trial({"num_boost_round": 10, "hidden": 8}, data)
    with pytest.raises(InvalidInput, match="'max_depth'"):
        trial({"num_boost_round": 10, "max_depth": -1}, data)


@pytest.fixture(scope="module")
def reports(ray_session, data, tmp_path_factory):
    config = {"num_boost_round": ROUNDS, "max_depth": 2}
    [mine] = run_trials(trial, data, config, tmp_path_factory.mktemp("tune_xgboost"))
    return mine


def test_a_trial_reports_every_few_rounds_and_at_the_last(reports):
    # Every 3 rounds, then round 50, which is not a multiple of 3.
    assert [r["rounds"] for r in reports] == [*range(3, ROUNDS, 3), ROUNDS]
    assert all(set(r) == {"rounds", "accuracy", "macro_f1", "log_loss", "pid"} for r in reports)
    # Scored as the booster stands at each report: more rounds, a better fit.
    assert reports[-1]["log_loss"] < reports[0]["log_loss"]
    assert reports[-1]["macro_f1"] > 0.8, reports[-1]
