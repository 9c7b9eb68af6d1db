"""Columns a deployment logs without feeding them to the model (``log_columns``): the request
parser accepts them as text, the model's columns stay its features, and the prediction log keeps
them (null for a request that sent none)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from appliance.errors import InvalidInput
from appliance.serving import parse_serving
from cluster.serve._oip import parse_infer_request
from cluster.serve._prediction_log import PredictionLog


def _body(*extra):
    inputs = [{"name": "income", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
              {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["n", "s"]},
              *extra]
    return json.dumps({"inputs": inputs}).encode()


def test_logged_only_inputs_are_accepted_as_text_and_never_features():
    group = {"name": "group", "shape": [2], "datatype": "INT64", "data": [1, 2]}
    req = parse_infer_request(_body(group), features=["income", "region"],
                              categorical=["region"], extra=["group"])
    assert req.columns["group"].tolist() == ["1", "2"]
    assert req.columns["income"].tolist() == [1.0, 2.0]
    # Optional: a request without it is fine.
    assert "group" not in parse_infer_request(_body(), features=["income", "region"],
                                              categorical=["region"], extra=["group"]).columns
    # Without log_columns it is an unknown input, as before.
    with pytest.raises(InvalidInput, match="unknown input 'group'"):
        parse_infer_request(_body(group), features=["income", "region"], categorical=["region"])


def test_the_log_keeps_them_and_null_when_absent(tmp_path):
    log = PredictionLog(tmp_path, deployment="d", model="m", version="1",
                        features=["income", "region"], categorical=["region"], extra=["group"])
    assert log.schema.names[-3:] == ["group", "prediction", "score"]
    cols = {"income": np.array([1.0, 2.0]), "region": np.array(["n", "s"], dtype=object),
            "group": np.array(["a", "b"], dtype=object)}
    path = log.write("r1", cols, np.array([1, 0]), np.array([0.9, 0.1], np.float32))
    assert pq.read_table(path).column("group").to_pylist() == ["a", "b"]
    del cols["group"]
    path = log.write("r2", cols, np.array([1, 0]), np.array([0.9, 0.1], np.float32))
    assert pq.read_table(path).column("group").to_pylist() == [None, None]


def test_serving_options_validate_log_columns():
    assert parse_serving({"log_columns": ["group", " group "]}).log_columns == ("group",)
    with pytest.raises(InvalidInput, match="log_columns"):
        parse_serving({"log_columns": "group"})
    with pytest.raises(InvalidInput, match="clash"):
        PredictionLog("/tmp", deployment="d", model="m", version="1", features=["x"],
                      extra=["score"])
