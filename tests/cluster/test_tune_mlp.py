"""The MLP as a tuning trial (`cluster.tune_mlp.trial`): its params checked as a fit's are, and
on a real Ray Tune one report per epoch, numbered from 1, with the validation slice's metrics
and the training loss, the same for the same config and seed even where the trial before it
left its process's random state elsewhere. Sweeps with ASHA:
tests/pipelines/test_tuning.py."""

from __future__ import annotations

import pytest
from trial_helpers import LABELS, rows, run_trials

from appliance.errors import InvalidInput
from cluster.tune_mlp import trial
from cluster.tune_trial import prepare

EPOCHS = 4


@pytest.fixture(scope="module")
def data():
    return prepare(rows("binary", 300, seed=1), rows("binary", 100, seed=2),
                   label=LABELS["binary"], categorical=["c"], task="binary", seed=3)


@pytest.fixture(scope="module")
def reports(ray_session, data, tmp_path_factory):
    """Two trials of one config, the second in the process the first ran in."""
    config = {"epochs": EPOCHS, "hidden": 8, "layers": 1, "batch_size": 64, "lr": 0.01}
    return run_trials(trial, data, config, tmp_path_factory.mktemp("tune_mlp"), samples=2)


def test_a_bad_param_is_refused_before_any_training(data):
    with pytest.raises(InvalidInput, match=r"unknown training param\(s\) \['depth'\]"):
        trial({"epochs": 2, "depth": 3}, data)
    with pytest.raises(InvalidInput, match="'lr'"):
        trial({"epochs": 2, "lr": 0}, data)


def test_a_trial_reports_after_every_epoch(reports):
    for mine in reports:
        assert [r["epoch"] for r in mine] == list(range(1, EPOCHS + 1))
        assert all(set(r) == {"epoch", "loss", "accuracy", "auc", "log_loss", "pid"}
                   for r in mine)
        assert all(0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["auc"] <= 1.0 for r in mine)
        # It learns: the training loss and the validation loss both fall over its epochs.
        assert mine[-1]["loss"] < mine[0]["loss"]
        assert mine[-1]["log_loss"] < mine[0]["log_loss"]


def test_the_same_config_and_seed_train_the_same_trial(reports):
    first, second = reports
    # One process (a sweep's actor serves its next trial), whose torch random state the first
    # trial moved on: the trial seeds its own.
    assert len({r["pid"] for r in [*first, *second]}) == 1
    assert first == second
