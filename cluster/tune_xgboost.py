"""Gradient-boosted trees (XGBoost) as a Ray Tune trial: one configuration boosted in the
trial's own process, scored on the validation slice every few rounds.

As for the MLP (`cluster.tune_mlp`), a trial is one actor with one CPU and one XGBoost thread,
not an `XGBoostTrainer` (a Train controller, workers and Ray Data shards per trial), so
`max_concurrent_trials` trials boost side by side. One `xgboost.train` call boosts the whole
budget, and a callback reports to Ray Tune every `report_every` rounds, so ASHA can stop a
trial between two blocks of rounds. The booster's params are `cluster.train_xgboost`'s, and the
retrained best goes through `fit_xgboost` (Ray Train, checkpoints) like any training.
"""

from __future__ import annotations

import math
from typing import Any

from cluster.train_params import resolve_params
from cluster.train_xgboost import booster_params
from cluster.tune_trial import bundle_of, validation_report

# A trial reports about this many times over its budget of rounds.
REPORTS = 20


def report_every(rounds: int) -> int:
    """Rounds between two reports of a trial boosting `rounds` rounds (the last round always
    reports). ASHA judges a rung at the first report at or past it."""
    return max(1, math.ceil(rounds / REPORTS))


def trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    """Boost trees with the params in `config` for its "num_boost_round", reporting every
    `report_every` rounds the validation slice's metrics and the rounds done ("rounds") to
    Ray Tune, which may stop it at any report.

    Args:
        config: the trial's params (the spec's, the sampled ones and "num_boost_round").
        data: what `cluster.tune_trial.prepare` returned.
    """
    import xgboost
    from ray import tune

    params = resolve_params(config, kind="xgboost")
    rounds = params["num_boost_round"]
    every = report_every(rounds)
    # One CPU per trial: XGBoost's own threads would fight the other trials for the cores.
    booster = {**booster_params(params, data["task"], len(data["classes"] or ()),
                                data["seed"], use_gpu=False), "nthread": 1}

    class _Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            done = model.num_boosted_rounds()
            if done % every == 0 or done >= rounds:
                scored = validation_report(bundle_of(data, model, "xgboost"), data)
                tune.report({**scored, "rounds": done})
            return False

    xgboost.train(booster, xgboost.DMatrix(data["x"], label=data["y"], nthread=1),
                  num_boost_round=rounds, callbacks=[_Report()], verbose_eval=False)
