"""The sweep's pure parts (`cluster.tune`): the spec's distributions as Ray Tune's (randint's
upper bound inclusive), how a trial's progress and end are read from its reports, and the
kinds a sweep can try. Sweeps on a real Ray: tests/pipelines/test_tuning.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cluster.tune import KINDS, TUNE_KEYS, clean, search_space, status_of, steps_of


def _samples(domain, n=400):
    return list(domain.sample(size=n, random_state=np.random.default_rng(0)))


def test_each_distribution_samples_within_its_bounds():
    space = search_space({
        "lr": ("loguniform", [1e-4, 1e-1]), "dropout": ("uniform", [0.0, 0.5]),
        "hidden": ("choice", [8, 16, 32]), "layers": ("randint", [1, 3]),
    })
    lr = _samples(space["lr"])
    assert min(lr) >= 1e-4 and max(lr) <= 1e-1
    # Log-uniform: about a third of the draws in each decade.
    assert 0.2 < np.mean(np.array(lr) < 1e-3) < 0.45
    assert all(0.0 <= d <= 0.5 for d in _samples(space["dropout"]))
    assert set(_samples(space["hidden"])) == {8, 16, 32}
    # The spec's randint includes its upper bound; Ray's alone would not.
    assert set(_samples(space["layers"])) == {1, 2, 3}


def test_progress_is_the_kinds_metric_or_tunes_iteration_count():
    mlp, xgb = KINDS["mlp"], KINDS["xgboost"]
    assert steps_of(mlp, {"epoch": 4, "training_iteration": 9}) == 4
    assert steps_of(xgb, {"rounds": 40, "training_iteration": 2}) == 40
    assert steps_of(mlp, {"training_iteration": 3}) == 3
    assert steps_of(mlp, {}) == 0


@pytest.mark.parametrize(("steps", "failed", "status"), [
    (10, False, "finished"), (12, False, "finished"), (3, False, "stopped"), (10, True, "failed"),
])
def test_how_a_trial_ended(steps, failed, status):
    assert status_of(steps, 10, failed) == status


def test_report_values_become_json():
    assert clean(np.float32(0.5)) == 0.5 and type(clean(np.int64(3))) is int
    assert clean(math.nan) is None and clean(np.float64("inf")) is None
    assert clean("x") == "x" and clean(None) is None


def test_every_kind_has_its_budget_among_its_params_and_never_samples_it():
    assert set(KINDS) == {"mlp", "xgboost", "custom"}
    for kind in KINDS.values():
        assert kind.budget in kind.defaults and kind.budget in kind.fixed
        assert f"max_{kind.unit}s" in kind.fixed[kind.budget]
        assert kind.progress not in TUNE_KEYS
    assert (KINDS["xgboost"].progress, KINDS["xgboost"].unit) == ("rounds", "round")
    assert KINDS["custom"].open_params and not KINDS["mlp"].open_params
