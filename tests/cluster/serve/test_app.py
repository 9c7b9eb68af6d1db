"""Deploying through `cluster.serve._app` refuses bad canary settings before it touches Ray,
naming the value. Deploys on a live Serve: tests/cluster/test_serve*.py."""

from __future__ import annotations

import math
import re

import pytest

from appliance.config import Config
from appliance.errors import InvalidInput
from cluster.serve import deploy_canary

BAD_SETTINGS = [
    ({"mode": "blue-green"}, "canary mode 'blue-green'"),
    ({"share": 0}, "canary share 0 "),
    ({"share": 1.0}, "canary share 1.0 "),
    ({"share": -0.1}, "canary share -0.1 "),
    ({"share": math.nan}, "canary share nan "),
    ({"share": True}, "canary share True "),
    ({"share": "0.1"}, "canary share '0.1' "),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_SETTINGS, ids=[m for _, m in BAD_SETTINGS])
def test_deploy_canary_rejects_bad_settings_before_touching_ray(tmp_path, kwargs, message):
    cfg = Config(home=tmp_path, db_url="sqlite://", artifacts=tmp_path)
    args = {
        "model": "m",
        "version": "2",
        "bundle_path": tmp_path / "absent.bundle",
        "deployment": "d",
        **kwargs,
    }
    with pytest.raises(InvalidInput, match=re.escape(message)):
        deploy_canary(cfg, **args)
