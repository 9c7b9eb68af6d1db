"""Monitoring policies' pure core (`appliance.monitor.policy`): settings parsed and validated,
and a policy built from the defaults, the configuration's and a model's own keys. Stored
policies: test_policy_store.py."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.errors import InvalidInput
from appliance.monitor import policy as policy_mod
from appliance.monitor.policy import DEFAULTS


def test_parse_settings_and_build_are_the_pure_core():
    assert policy_mod.parse_settings({"triggers": " drift , schedule,drift "}) == {
        "triggers": ("drift", "schedule")}
    assert policy_mod.parse_settings({"window_seconds": 60, "max_rows": None}) == {
        "window_seconds": 60.0, "max_rows": None}
    with pytest.raises(InvalidInput, match=r"^where: policy 'window_rows'"):
        policy_mod.parse_settings({"window_rows": -1}, "where")
    with pytest.raises(InvalidInput, match="must be a table"):
        policy_mod.parse_settings(["window_rows"])
    built = policy_mod.build({"window_rows": 10}, {"window_rows": 20, "retrain": False})
    assert built == dataclasses.replace(DEFAULTS, window_rows=20, retrain=False)
    assert built.to_dict()["triggers"] == ["drift", "accuracy"]
    with pytest.raises(InvalidInput):
        policy_mod.build({"window_rows": None, "window_seconds": None})
