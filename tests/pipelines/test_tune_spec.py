"""`appliance.pipelines.tune_spec`: every bad [tune] table is refused with its key named."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidInput
from appliance.pipelines.tune_spec import parse_tuning


def _doc(tune=None, **over):
    doc = {"model": "credit", "dataset": "d", "label": "y", "params": {"hidden": 8},
           "tune": {"space": {"lr": {"loguniform": [1e-3, 0.3]}}} if tune is None else tune}
    doc.update(over)
    return doc


def test_defaults_follow_the_task_and_the_params():
    spec, t = parse_tuning(_doc(params={"epochs": 5}))
    assert (t.kind, t.metric, t.mode, t.max_epochs) == ("mlp", "auc", "max", 5)
    assert (t.num_samples, t.grace_period, t.reduction_factor) == (8, 1, 2.0)
    assert t.max_concurrent_trials == 1 and t.space == {"lr": ("loguniform", [1e-3, 0.3])}
    _, t = parse_tuning(_doc(task="regression"))
    assert (t.metric, t.mode) == ("rmse", "min")
    _, t = parse_tuning(_doc(task="multiclass", resources={"max_concurrent_trials": 3}))
    assert (t.metric, t.mode, t.max_concurrent_trials) == ("macro_f1", "max", 3)
    _, t = parse_tuning(_doc(tune={"metric": "log_loss", "num_samples": 6, "max_epochs": 8,
                                   "space": {"layers": {"randint": [1, 3]},
                                             "weight_decay": {"uniform": [0, 0.01]},
                                             "batch_size": {"choice": [32, 64]}}}))
    assert (t.metric, t.mode, t.num_samples, t.max_epochs) == ("log_loss", "min", 6, 8)
    assert t.to_dict()["space"]["layers"] == {"randint": [1, 3]}


@pytest.mark.parametrize(("tune", "needle"), [
    (None, "a [tune] table with a [tune.space] is required"),
    ({"space": {"lr": {"uniform": [0.1]}}}, "'tune.space.lr' uniform needs [low, high]"),
    ({"space": {"lr": {"uniform": [0.3, 0.1]}}}, "'tune.space.lr' uniform needs [low, high]"),
    ({"space": {"lr": {"loguniform": [0, 0.1]}}}, "'tune.space.lr' loguniform needs low > 0"),
    ({"space": {"lr": {"normal": [0, 1]}}}, "'tune.space.lr' must be one of"),
    ({"space": {"lr": 0.1}}, "'tune.space.lr' must be one of"),
    ({"space": {"lr": {"choice": []}}}, "'tune.space.lr' choice needs a non-empty list"),
    ({"space": {"lr": {"choice": [0.1, 2.0]}}}, "'tune.space.lr' holds 2.0, which the mlp"),
    ({"space": {"layers": {"randint": [1.5, 3]}}}, "'tune.space.layers' randint needs integer"),
    ({"space": {"layers": {"randint": [0, 99]}}}, "'tune.space.layers' holds 99"),
    ({"space": {"hidden": {"choice": [4]}}}, "'tune.space.hidden' is also fixed in [params]"),
    ({"space": {"layers": {"uniform": [1, 3]}}}, "'tune.space.layers' is an integer param"),
    ({"space": {"dropout": {"choice": [0.1]}}}, "'tune.space.dropout' is not a param of the mlp"),
    ({"space": {"epochs": {"choice": [3]}}}, "'tune.space.epochs' cannot be tuned"),
    ({"space": {}}, "'tune.space' must be a table with at least one param"),
    ({"space": {"lr": {"choice": [0.1]}}, "metric": "rmse"},
     "'tune.metric' must be one of ['accuracy', 'auc', 'log_loss'] for a binary task"),
    ({"space": {"lr": {"choice": [0.1]}}, "mode": "up"}, "'tune.mode' must be 'min' or 'max'"),
    ({"space": {"lr": {"choice": [0.1]}}, "num_samples": 0}, "'tune.num_samples' must be"),
    ({"space": {"lr": {"choice": [0.1]}}, "max_epochs": 4, "grace_period": 5},
     "'tune.grace_period' must be an integer in [1, 4]"),
    ({"space": {"lr": {"choice": [0.1]}}, "reduction_factor": 1},
     "'tune.reduction_factor' must be a number > 1"),
    ({"space": {"lr": {"choice": [0.1]}}, "valid_fraction": 0.9}, "'tune.valid_fraction'"),
    ({"space": {"lr": {"choice": [0.1]}}, "sampler": "grid"}, "unknown tune key(s) ['sampler']"),
])
def test_a_bad_tune_table_names_its_key(tune, needle):
    doc = _doc(tune=tune) if tune is not None else {**_doc(), "tune": {}}
    with pytest.raises(InvalidInput) as err:
        parse_tuning(doc)
    assert needle in str(err.value)


def test_resources_and_params_are_checked_first():
    with pytest.raises(InvalidInput, match="max_concurrent_trials' must be >= 1"):
        parse_tuning(_doc(resources={"max_concurrent_trials": 0}))
    with pytest.raises(InvalidInput, match="unknown training param"):
        parse_tuning(_doc(params={"nope": 1}))


def test_each_kind_has_its_own_space_and_budget():
    xgb = {"kind": "xgboost", "params": {"max_depth": 3}}
    _, t = parse_tuning(_doc(tune={"space": {"eta": {"loguniform": [0.01, 0.5]},
                                             "min_child_weight": {"uniform": [0.5, 4]}}}, **xgb))
    # The trees' budget is boosting rounds: [params] num_boost_round, else the default.
    assert (t.kind, t.max_epochs) == ("xgboost", 100)
    _, t = parse_tuning(_doc(tune={"max_rounds": 40, "grace_period": 4,
                                   "space": {"subsample": {"uniform": [0.5, 1.0]}}}, **xgb))
    assert (t.max_epochs, t.grace_period) == (40, 4)
    custom = {"kind": "custom", "function": "custom_training:train_small_net",
              "params": {"epochs": 6, "report_every": 1}}
    # The user's function takes any param it reads: a name is not checked, a value's shape is.
    _, t = parse_tuning(_doc(tune={"space": {"dropout": {"uniform": [0.0, 0.5]},
                                             "optimizer": {"choice": ["adam", "sgd"]}}},
                             **custom))
    assert (t.kind, t.max_epochs) == ("custom", 6)
    assert t.space["optimizer"] == ("choice", ["adam", "sgd"])


@pytest.mark.parametrize(("kind", "tune", "needle"), [
    ("xgboost", {"space": {"lr": {"choice": [0.1]}}},
     "'tune.space.lr' is not a param of the xgboost model; its params: ['colsample_bytree'"),
    ("xgboost", {"space": {"num_boost_round": {"choice": [5]}}},
     "'tune.space.num_boost_round' cannot be tuned: the sweep boosts up to [tune] max_rounds"),
    ("xgboost", {"space": {"max_depth": {"uniform": [1, 4]}}},
     "'tune.space.max_depth' is an integer param"),
    ("xgboost", {"space": {"eta": {"choice": [0.1, 0.0]}}},
     "'tune.space.eta' holds 0.0, which the xgboost model refuses"),
    ("xgboost", {"space": {"eta": {"choice": [0.1]}}, "max_epochs": 10},
     "'tune.max_epochs' is not for the xgboost model, whose budget counts rounds: set "
     "'tune.max_rounds'"),
    ("mlp", {"space": {"lr": {"choice": [0.1]}}, "max_rounds": 10},
     "'tune.max_rounds' is not for the mlp model, whose budget counts epochs"),
    ("mlp", {"space": {"eta": {"choice": [0.1]}}}, "'tune.space.eta' is not a param of the mlp"),
    ("custom", {"space": {"epochs": {"choice": [3]}}},
     "'tune.space.epochs' cannot be tuned: the sweep passes [tune] max_epochs as params.epochs"),
    ("custom", {"space": {"sizes": {"choice": [[8, 16]]}}},
     "'tune.space.sizes' holds [8, 16], which the custom model refuses"),
])
def test_a_space_is_checked_against_its_kind(kind, tune, needle):
    extra = {"function": "custom_training:train_small_net"} if kind == "custom" else {}
    with pytest.raises(InvalidInput) as err:
        parse_tuning(_doc(tune=tune, kind=kind, params={}, **extra))
    assert needle in str(err.value)
