"""What every tuning trial shares (`cluster.tune_trial`), without Ray: the sweep's design
matrix made once, a trial's model wrapped as a bundle with the sweep's preprocessing, and its
validation report in numbers the scheduler can rank (NaN, never None)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc
import pytest
import torch

from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import InvalidInput
from cluster.bundle import build_mlp
from cluster.tune_trial import bundle_of, prepare, validation_report

TRAIN, VALID = generate(300, seed=1), generate(100, seed=2)


def _data(task="binary", valid=VALID, label=LABEL):
    return prepare(TRAIN, valid, label=label, categorical=CATEGORICAL, task=task, seed=3)


def _model(data):
    torch.manual_seed(0)
    module = build_mlp(data["pre"].width, hidden=4, layers=1, outputs=data["outputs"])
    return bundle_of(data, module, "mlp", hidden=4, layers=1)


def test_the_sweep_prepares_every_training_row_once():
    data = _data()
    assert data["x"].shape == (300, data["pre"].width) and len(data["y"]) == 300
    assert set(np.unique(data["y"])) <= {0.0, 1.0}
    assert (data["label"], data["task"], data["seed"], data["outputs"]) == (LABEL, "binary", 3, 1)
    assert data["valid"] is VALID and data["classes"] is None


def test_a_trials_report_ranks_numbers_and_nan_for_an_undefined_metric():
    data = _data()
    report = validation_report(_model(data), data)
    assert {"auc", "accuracy", "log_loss"} <= set(report) and "rows" not in report
    assert all(isinstance(v, float) for v in report.values())
    assert 0.0 <= report["accuracy"] <= 1.0
    # A validation slice of one class has no AUC: NaN, which the scheduler ranks last.
    one_class = VALID.filter(pc.equal(VALID[LABEL], 0))
    assert math.isnan(validation_report(_model(data), _data(valid=one_class))["auc"])


def test_bad_labels_are_refused_naming_them():
    with pytest.raises(InvalidInput, match="'nope'"):
        _data(label="nope")
