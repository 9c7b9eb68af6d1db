"""The ONNX export of a bundle: same scores as the bundle, stable bytes, checked on disk."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from serve_helpers import columns, make_bundle
from torch import nn

from appliance.errors import CheckFailed, InvalidInput, NotFound
from cluster.bundle import ModelBundle, Preprocessor, build_mlp
from cluster.export import check_export, export_bundle, export_dir, onnx_bytes, read_export


@pytest.fixture(scope="module")
def bundle():
    return make_bundle()


@pytest.fixture
def bundle_path(tmp_path, bundle):
    path = tmp_path / "bundle"
    path.write_bytes(bundle.to_bytes())
    return path


def test_graph_maps_the_design_matrix_to_scores(bundle):
    model = onnx.load_from_string(onnx_bytes(bundle))
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "features" and out.name == "scores"
    assert [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim] == ["N", 5]
    assert [d.dim_param for d in out.type.tensor_type.shape.dim] == ["N"]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("hidden,layers", [(8, 1), (32, 2), (4, 3)])
def test_export_reproduces_predict_proba(hidden, layers):
    cols = columns(300, seed=hidden)
    pre = Preprocessor.fit(cols, ["region"])
    torch.manual_seed(layers)
    bundle = ModelBundle(pre, build_mlp(pre.width, hidden, layers), hidden, layers, "y")
    from onnx.reference import ReferenceEvaluator

    x = pre.transform(cols)
    (got,) = ReferenceEvaluator(onnx.load_from_string(onnx_bytes(bundle))).run(
        None, {"features": x}
    )
    np.testing.assert_allclose(got, bundle.predict_proba(cols), rtol=0, atol=1e-6)
    assert check_export(bundle, onnx_bytes(bundle)) <= 1e-6


def test_the_bytes_depend_on_the_weights_alone(bundle):
    assert onnx_bytes(bundle) == onnx_bytes(ModelBundle.from_bytes(bundle.to_bytes()))


def test_export_writes_model_and_manifest_next_to_the_bundle(bundle_path, bundle):
    export = export_bundle(bundle_path)
    folder = export_dir(bundle_path)
    assert folder == bundle_path.with_name("bundle.export")
    assert export.path == folder / "model.onnx"
    assert export.path.read_bytes() == onnx_bytes(bundle)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["model_sha256"] == export.model_sha256
    assert manifest["width"] == export.width == bundle.preprocessor.width
    assert (manifest["input"], manifest["output"]) == ("features", "scores")
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.onnx"]
    assert read_export(bundle_path) == export
    # A second export reuses the first.
    mtime = export.path.stat().st_mtime_ns
    assert export_bundle(bundle_path) == export
    assert export.path.stat().st_mtime_ns == mtime


def test_a_changed_model_file_is_refused_and_exported_again(bundle_path):
    export = export_bundle(bundle_path)
    export.path.write_bytes(export.path.read_bytes()[:-4])
    with pytest.raises(CheckFailed, match="changed or truncated"):
        read_export(bundle_path)
    assert export_bundle(bundle_path) == export


def test_a_new_bundle_at_the_same_path_is_exported_again(bundle_path):
    first = export_bundle(bundle_path)
    other = make_bundle()
    with torch.no_grad():
        other.module[0].bias.add_(1.0)
    bundle_path.write_bytes(other.to_bytes())
    second = export_bundle(bundle_path)
    assert second.bundle_sha256 != first.bundle_sha256
    assert second.path.read_bytes() == onnx_bytes(other)


def test_missing_bundle_and_missing_export(tmp_path):
    with pytest.raises(NotFound, match="no file at"):
        export_bundle(tmp_path / "absent")
    with pytest.raises(NotFound, match="export_bundle"):
        read_export(tmp_path / "absent")


def test_unsupported_networks_are_refused(bundle):
    odd = ModelBundle(
        bundle.preprocessor,
        nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 1)),
        4,
        1,
        "y",
    )
    with pytest.raises(InvalidInput, match="Tanh"):
        onnx_bytes(odd)
    two = ModelBundle(bundle.preprocessor, nn.Sequential(nn.Linear(5, 2)), 2, 0, "y")
    with pytest.raises(InvalidInput, match="2 outputs"):
        onnx_bytes(two)
