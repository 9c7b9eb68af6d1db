"""Training specs (`appliance.pipelines.spec`): defaults, every refusal naming the file and the
key, and TOML and JSON files read alike."""

from __future__ import annotations

import json

import pytest

from appliance.errors import InvalidInput
from appliance.governance.gate_checks import default_checks
from appliance.pipelines.spec import TrainSpec, load_spec, parse_spec, read_spec_doc

MINIMAL = {"model": "credit", "dataset": "loans:2", "label": "default"}


def test_a_minimal_spec_gets_the_documented_defaults():
    spec = parse_spec(MINIMAL)
    assert spec == TrainSpec(model="credit", dataset="loans:2", label="default")
    assert (spec.task, spec.kind, spec.seed, spec.holdout, spec.split) == (
        "binary", "mlp", 0, 0.2, "random")
    assert (spec.num_workers, spec.use_gpu, spec.max_failures, spec.checkpoints_to_keep) == (
        1, None, 2, 2)
    assert spec.to_dict()["gate"] == default_checks("binary").to_dict()


def test_every_setting_is_read():
    doc = {
        **MINIMAL, "task": "regression", "kind": "xgboost", "categorical": ["region"],
        "seed": 7, "holdout": 0.1, "split": "latest", "params": {"max_depth": 3},
        "resources": {"num_workers": 2, "use_gpu": False, "max_concurrent_trials": 2},
        "fault_tolerance": {"max_failures": 0, "checkpoints_to_keep": 5}, "tune": {},
    }
    spec = parse_spec(doc)
    assert (spec.task, spec.kind, spec.categorical, spec.seed, spec.holdout, spec.split) == (
        "regression", "xgboost", ["region"], 7, 0.1, "latest")
    assert (spec.params, spec.num_workers, spec.use_gpu) == ({"max_depth": 3}, 2, False)
    assert (spec.max_failures, spec.checkpoints_to_keep) == (0, 5)
    # A regression's default gate, not the binary one.
    assert spec.gate == default_checks("regression").to_dict()
    custom = parse_spec({**MINIMAL, "kind": "custom", "function": "pkg.mod:train"})
    assert custom.function == "pkg.mod:train"


BAD = [
    ([], "must be a table/object"),
    ({**MINIMAL, "epochs": 3}, "unknown key(s) ['epochs']"),
    ({"dataset": "d", "label": "y"}, "'model' is required"),
    ({**MINIMAL, "label": ""}, "'label' is required"),
    ({**MINIMAL, "task": "ranking"}, "'task' must be one of"),
    ({**MINIMAL, "kind": "svm"}, "'kind' must be one of"),
    ({**MINIMAL, "kind": "custom"}, "'function' (\"module:function\") is required"),
    ({**MINIMAL, "function": "m:f"}, "is required with kind = \"custom\", and only then"),
    ({**MINIMAL, "kind": "custom", "function": 3}, "'function' must be a string"),
    ({**MINIMAL, "categorical": "region"}, "'categorical' must be a list"),
    ({**MINIMAL, "seed": -1}, "'seed' must be a non-negative integer, got -1"),
    ({**MINIMAL, "seed": True}, "'seed' must be a non-negative integer, got True"),
    ({**MINIMAL, "holdout": 0.9}, "'holdout' must be between 0.05 and 0.5, got 0.9"),
    ({**MINIMAL, "split": "oldest"}, "'split' must be one of"),
    ({**MINIMAL, "params": []}, "'params' must be a table"),
    ({**MINIMAL, "resources": {"gpus": 1}}, "unknown resources key(s) ['gpus']"),
    ({**MINIMAL, "resources": {"num_workers": 0}}, "'resources.num_workers' must be >= 1"),
    ({**MINIMAL, "resources": {"max_concurrent_trials": 0}}, "max_concurrent_trials' must be"),
    ({**MINIMAL, "resources": {"use_gpu": "yes"}}, "'resources.use_gpu' must be auto"),
    ({**MINIMAL, "tune": 3}, "'tune' must be a table"),
    ({**MINIMAL, "fault_tolerance": {"retries": 1}}, "unknown fault_tolerance key(s)"),
    ({**MINIMAL, "fault_tolerance": {"checkpoints_to_keep": 0}}, "in [1, 100], got 0"),
    ({**MINIMAL, "fault_tolerance": {"max_failures": 101}}, "in [0, 100], got 101"),
]


@pytest.mark.parametrize(("doc", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_spec_is_refused_naming_the_file_and_the_key(doc, message):
    with pytest.raises(InvalidInput) as info:
        parse_spec(doc, "'train.toml'")
    assert str(info.value).startswith("spec 'train.toml': ")
    assert message in str(info.value)


def test_toml_and_json_files_give_the_same_spec(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text('model = "credit"\ndataset = "loans:2"\nlabel = "default"\nseed = 3\n'
                    '[params]\nepochs = 2\n')
    js = tmp_path / "train.JSON"
    js.write_text(json.dumps({**MINIMAL, "seed": 3, "params": {"epochs": 2}}))
    assert load_spec(toml) == load_spec(js)
    assert read_spec_doc(toml) == ({**MINIMAL, "seed": 3, "params": {"epochs": 2}},
                                   repr(str(toml)))


def test_a_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(InvalidInput, match="spec file '.*absent.toml' does not exist"):
        load_spec(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('model = "credit\n')
    with pytest.raises(InvalidInput, match="spec file '.*broken.toml' is malformed"):
        load_spec(broken)
    # A spec's own error names the file it came from.
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**MINIMAL, "seed": -2}))
    with pytest.raises(InvalidInput, match=r"spec '.*wrong.json': 'seed'"):
        load_spec(wrong)
