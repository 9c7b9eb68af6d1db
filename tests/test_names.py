"""Names that become folders, URLs and Serve applications are checked at one boundary."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import InvalidInput
from appliance.monitor.feedback import write_feedback
from appliance.names import check_name
from cluster.serve._prediction_log import PredictionLog


@pytest.mark.parametrize("name", ["credit", "credit-v2", "a.b_c", "9lives", "x" * 128])
def test_good_names(name):
    assert check_name("model name", name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-x", ".hidden", "x" * 129,
                                  "a b", "é", None, 3])
def test_bad_names_are_refused_naming_them(name):
    with pytest.raises(InvalidInput, match="deployment name"):
        check_name("deployment name", name)


def test_logs_never_escape_their_folders(tmp_path):
    with pytest.raises(InvalidInput, match="'../x'"):
        write_feedback(tmp_path, "../x", "r1", np.array([0]), np.array([1]))
    with pytest.raises(InvalidInput, match="'../x'"):
        PredictionLog(tmp_path, deployment="../x", model="m", version="1", features=["a"])
    assert not any(tmp_path.parent.glob("x"))
    assert list(tmp_path.rglob("*")) == []
