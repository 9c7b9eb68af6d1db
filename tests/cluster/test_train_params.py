"""The built-in kinds' training params (`cluster.train_params.resolve_params`), without Ray:
defaults filled in, each value coerced to its param's type, every bound (open or closed) held,
and every refusal naming the param; the custom kind's params checked for shape only. A bad
param is bad input (exit 2) because it is refused here, before a run is recorded."""

from __future__ import annotations

import math

import pytest

from appliance.errors import InvalidInput
from cluster.train_params import DEFAULT_PARAMS, KINDS, XGBOOST_PARAMS, resolve_params


def test_resolve_params_fills_defaults():
    assert resolve_params(None) == DEFAULT_PARAMS
    # What a run records (every default filled in) is accepted back as given: the retrain
    # loop and reruns pass it again.
    assert resolve_params(DEFAULT_PARAMS) == DEFAULT_PARAMS
    assert resolve_params({"epochs": 3, "lr": 1})["lr"] == 1.0
    assert resolve_params({"hidden": 64.0})["hidden"] == 64


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"epoch": 3}, "epoch"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": 2.5}, "hidden"),
        ({"layers": -1}, "layers"),
        ({"epochs": True}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"valid_fraction": 0.0, "early_stopping": 2}, "valid_fraction"),
        ({"valid_fraction": 0.9, "early_stopping": 2}, "valid_fraction"),
        ({"early_stopping": -1}, "early_stopping"),
    ],
)
def test_bad_params_name_the_param(params, named):
    with pytest.raises(InvalidInput, match=named):
        resolve_params(params)


def test_params_are_the_kinds_own():
    assert resolve_params(None, kind="xgboost") == XGBOOST_PARAMS
    assert resolve_params({"max_depth": 3.0}, kind="xgboost")["max_depth"] == 3
    with pytest.raises(InvalidInput, match=r"unknown training param\(s\) \['hidden'\] for kind"):
        resolve_params({"hidden": 8}, kind="xgboost")
    with pytest.raises(InvalidInput, match="'eta'"):
        resolve_params({"eta": 0}, kind="xgboost")
    with pytest.raises(InvalidInput, match="unknown model kind 'forest'"):
        resolve_params({}, kind="forest")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kinds_defaults_pass_its_own_rules(kind):
    defaults, rules = KINDS[kind]
    assert set(defaults) == set(rules)
    resolved = resolve_params(dict(defaults), kind=kind)
    assert resolved == defaults
    # Each default already has its rule's type, so a recorded run's params read back equal.
    assert all(type(resolved[k]) is rules[k][0] for k in rules)


def test_values_take_their_params_type_and_the_input_is_left_alone():
    given = {"hidden": 64.0, "lr": 1, "weight_decay": 0}
    out = resolve_params(given)
    assert type(out["hidden"]) is int and type(out["lr"]) is float
    assert type(out["weight_decay"]) is float
    assert given == {"hidden": 64.0, "lr": 1, "weight_decay": 0}
    # A new dict every time: a caller that edits it changes no default.
    out["epochs"] = 99
    assert resolve_params(None)["epochs"] == DEFAULT_PARAMS["epochs"] == 10


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        ("mlp", "layers", 0),  # closed low end
        ("mlp", "lr", 1.0),  # closed high end
        ("mlp", "hidden", 4096),
        ("mlp", "valid_fraction", 0.5),
        ("mlp", "early_stopping", 0),
        ("xgboost", "max_depth", 0),
        ("xgboost", "min_child_weight", 0.0),
        ("xgboost", "subsample", 1.0),
        ("xgboost", "num_boost_round", 1),
    ],
)
def test_each_bound_that_is_closed_is_accepted(kind, key, value):
    assert resolve_params({key: value}, kind=kind)[key] == value


@pytest.mark.parametrize(
    ("kind", "key", "value", "message"),
    [
        # An open low end is refused at the bound itself, and the message shows it open.
        ("mlp", "lr", 0, r"'lr' must be in \(0.0, 1.0\], got 0.0"),
        ("xgboost", "subsample", 0.0, r"'subsample' must be in \(0.0, 1.0\], got 0.0"),
        ("mlp", "valid_fraction", 0.0, r"'valid_fraction' must be in \(0.0, 0.5\]"),
        # A closed one shows closed.
        ("mlp", "hidden", 0, r"'hidden' must be in \[1, 4096\], got 0"),
        ("mlp", "hidden", 4097, r"'hidden' must be in \[1, 4096\], got 4097"),
        ("mlp", "lr", 1.0000001, r"'lr' must be in \(0.0, 1.0\]"),
        ("xgboost", "max_depth", 65, r"'max_depth' must be in \[0, 64\]"),
        ("xgboost", "min_child_weight", math.inf, r"'min_child_weight' must be in \[0.0, "),
        ("xgboost", "reg_lambda", -math.inf, r"'reg_lambda' must be in \[0.0, "),
        # Wrong types name the type the param wants.
        ("xgboost", "max_depth", True, r"'max_depth' must be int, got True"),
        ("xgboost", "num_boost_round", "10", r"'num_boost_round' must be int, got '10'"),
        ("xgboost", "eta", None, r"'eta' must be float, got None"),
        ("mlp", "layers", 1.5, r"'layers' must be int, got 1.5"),
        ("mlp", "lr", [0.1], r"'lr' must be float, got \[0.1\]"),
    ],
)
def test_out_of_range_or_mistyped_values_name_the_param_and_the_allowed(kind, key, value,
                                                                        message):
    with pytest.raises(InvalidInput, match=message):
        resolve_params({key: value}, kind=kind)


def test_an_unknown_key_lists_the_kinds_params_and_a_non_mapping_is_refused():
    with pytest.raises(InvalidInput, match=r"\['depth', 'epoch'\] for kind 'mlp'; known: "
                                           r"\['batch_size', 'early_stopping', 'epochs', "):
        resolve_params({"epoch": 3, "depth": 2, "lr": 0.1})
    for kind in ("mlp", "xgboost", "custom"):
        with pytest.raises(InvalidInput, match=r"params must be a mapping of name to value, "
                                               r"got \[\('epochs', 3\)\]"):
            resolve_params([("epochs", 3)], kind=kind)
    with pytest.raises(InvalidInput, match=r"built in: \['mlp', 'xgboost'\], or 'custom'"):
        resolve_params(None, kind="MLP")


def test_custom_params_pass_as_given_when_their_shape_is_plain():
    given = {"epochs": 5, "lr": 0.05, "note": "x", "shuffle": False}
    out = resolve_params(given, kind="custom")
    assert out == given and out is not given
    assert resolve_params(None, kind="custom") == {}
    # No defaults of the built-in kinds, and no range: the user's function owns its params.
    assert resolve_params({"hidden": -3}, kind="custom") == {"hidden": -3}


@pytest.mark.parametrize("value", [math.nan, math.inf, None, {"a": 1}, (1, 2), b"x"])
def test_custom_params_that_lineage_cannot_record_are_refused_naming_them(value):
    with pytest.raises(InvalidInput, match=r"training param 'depth' must be a finite number, "
                                           r"a string or a boolean"):
        resolve_params({"epochs": 3, "depth": value}, kind="custom")
