"""A model bundle's network as an ONNX file, for serving by an external runtime (Triton).

The exported graph is the network and its sigmoid, nothing else: it maps the float32 design
matrix ``features`` [N, width] (what ``bundle.preprocessor.transform(columns)`` returns) to the
class-1 probability ``scores`` [N], which equals ``bundle.predict_proba(columns)`` within 1e-6.
Preprocessing (numpy) and the threshold stay with the appliance's model replica.

Why ONNX rather than TorchScript: the serving side then needs onnxruntime (about 80 MB) instead
of a second torch (about 700 MB). The graph is written from the weights with `onnx.helper`
rather than by `torch.onnx.export`, whose TorchScript-based exporter is deprecated and whose
replacement needs onnxscript; writing it ourselves also makes the bytes a pure function of the
weights, so exporting the same bundle twice gives the same digest.

Layout, next to the bundle file ``<dir>/<bundle>`` (in the artifact store, ``<bundle>`` is the
bundle's sha256)::

    <dir>/<bundle>.export/
        model.onnx      the graph: ONNX IR 8, opset 17 (onnxruntime >= 1.13 runs it)
        export.json     {"format": "appliance.export/1", "runtime": "onnx",
                         "bundle_sha256", "model_sha256", "width", "input": "features",
                         "output": "scores", "opset": 17}

Each file is written to a temporary name and renamed into place, ``export.json`` last, so a
folder with a manifest is complete; `read_export` checks ``model.onnx`` against its digest.

export_bundle(bundle_path) -> OnnxExport     write (or reuse) the export next to the bundle
read_export(bundle_path) -> OnnxExport       the existing export, digest-checked
onnx_bytes(bundle) -> bytes                  the graph alone, in memory
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn

from appliance.artifacts import read_artifact_file
from appliance.errors import CheckFailed, InvalidInput, NotFound
from cluster.bundle import ModelBundle

FORMAT = "appliance.export/1"
INPUT = "features"
OUTPUT = "scores"
OPSET = 17
# IR 8 with opset 17: old enough for every onnxruntime since 1.13, new enough for Squeeze's
# axes-as-input form.
IR_VERSION = 8
# How far the exported graph may stray from `ModelBundle.predict_proba`.
TOLERANCE = 1e-6
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "export.json"


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """An exported network on disk.

    Args:
        path: the ``model.onnx`` file.
        model_sha256: sha256 hex of that file's bytes.
        bundle_sha256: sha256 hex of the bundle file it was exported from.
        width: columns of the design matrix the graph takes (``features`` is [N, width]).
    """

    path: Path
    model_sha256: str
    bundle_sha256: str
    width: int
    input: str = INPUT
    output: str = OUTPUT


def export_dir(bundle_path: Path) -> Path:
    """The folder that holds the export of the bundle at `bundle_path`."""
    bundle_path = Path(bundle_path)
    return bundle_path.with_name(bundle_path.name + ".export")


def onnx_bytes(bundle: ModelBundle) -> bytes:
    """The bundle's network plus sigmoid as a serialized ONNX model.

    Raises:
        InvalidInput: the network is not a `torch.nn.Sequential` of `Linear` and `ReLU` layers
            ending in one output (what `cluster.bundle.build_mlp` builds).
    """
    return _to_onnx(bundle.module, bundle.preprocessor.width).SerializeToString()


def _to_onnx(module: nn.Module, width: int) -> onnx.ModelProto:
    if not isinstance(module, nn.Sequential):
        raise InvalidInput(
            f"cannot export a {type(module).__name__} network; expected the nn.Sequential that "
            "cluster.bundle.build_mlp builds"
        )
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    last, cols = INPUT, width
    for i, layer in enumerate(module):
        out = f"h{i}"
        if isinstance(layer, nn.Linear):
            if layer.in_features != cols:
                raise InvalidInput(
                    f"layer {i} takes {layer.in_features} inputs but gets {cols}; "
                    "the network does not fit the preprocessor's width"
                )
            w, b = f"layer{i}.weight", f"layer{i}.bias"
            weights.append(numpy_helper.from_array(_host(layer.weight), w))
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            weights.append(numpy_helper.from_array(_host(bias), b))
            # torch's Linear is x @ W.T + b: Gemm with transB.
            nodes.append(helper.make_node("Gemm", [last, w, b], [out], transB=1))
            cols = layer.out_features
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [last], [out]))
        else:
            raise InvalidInput(
                f"cannot export layer {i} ({type(layer).__name__}); only Linear and ReLU are "
                "supported"
            )
        last = out
    if cols != 1:
        raise InvalidInput(f"the network ends in {cols} outputs; expected one logit")
    weights.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "squeeze_axes"))
    nodes.append(helper.make_node("Sigmoid", [last], ["probability"]))
    nodes.append(helper.make_node("Squeeze", ["probability", "squeeze_axes"], [OUTPUT]))
    graph = helper.make_graph(
        nodes,
        "appliance_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N"])],
        initializer=weights,
    )
    # No producer version: the bytes depend on the weights alone, so the digest is stable.
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="appliance"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def check_export(bundle: ModelBundle, data: bytes, *, rows: int = 64, seed: int = 0) -> float:
    """Run the ONNX graph `data` on random design matrices and compare with the bundle.

    Uses onnx's reference evaluator (numpy), so no runtime is needed here.

    Args:
        bundle: the bundle the graph was exported from.
        data: the serialized ONNX model.
        rows: rows in the probe batch (default 64).
        seed: seed of the probe batch (default 0).

    Returns:
        The largest absolute difference in probability seen.

    Raises:
        CheckFailed: the difference exceeds 1e-6.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, (rows, bundle.preprocessor.width)).astype(np.float32)
    (got,) = ReferenceEvaluator(onnx.load_from_string(data)).run(None, {INPUT: x})
    bundle.module.eval()
    with torch.no_grad():
        want = torch.sigmoid(bundle.module(torch.from_numpy(x))).squeeze(-1).numpy()
    if got.shape != want.shape:
        raise CheckFailed(f"the ONNX graph returns shape {got.shape}; expected {want.shape}")
    worst = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
    if worst > TOLERANCE:
        raise CheckFailed(
            f"the ONNX graph differs from the bundle by up to {worst:.3g} (allowed "
            f"{TOLERANCE:g}); the export is wrong"
        )
    return worst


def export_bundle(bundle_path: Path) -> OnnxExport:
    """Export the bundle at `bundle_path` to ONNX next to it, or reuse a complete export.

    The export is checked against the bundle before it is published (`check_export`).

    Raises:
        NotFound: there is no file at `bundle_path`.
        InvalidInput: the file is not a bundle, or its network cannot be exported.
        CheckFailed: the graph does not reproduce the bundle's scores.
    """
    bundle_path = Path(bundle_path)
    raw = read_artifact_file(bundle_path, "model bundle")
    bundle_sha = hashlib.sha256(raw).hexdigest()
    try:
        existing = read_export(bundle_path)
    except (NotFound, CheckFailed):
        existing = None
    if existing is not None and existing.bundle_sha256 == bundle_sha:
        return existing
    bundle = ModelBundle.from_bytes(raw)
    if bundle.task != "binary" or bundle.kind != "mlp":
        # The graph is the MLP ending in the sigmoid of one logit: a binary classifier's.
        raise InvalidInput(
            f"only binary MLP classifiers export to ONNX; {str(bundle_path)!r} is a "
            f"{bundle.task} {bundle.kind}"
        )
    data = onnx_bytes(bundle)
    check_export(bundle, data)
    folder = export_dir(bundle_path)
    folder.mkdir(exist_ok=True)
    manifest = {
        "format": FORMAT,
        "runtime": "onnx",
        "bundle_sha256": bundle_sha,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "width": bundle.preprocessor.width,
        "input": INPUT,
        "output": OUTPUT,
        "opset": OPSET,
    }
    _write_atomic(folder / MODEL_FILE, data)
    _write_atomic(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return read_export(bundle_path)


def read_export(bundle_path: Path) -> OnnxExport:
    """The export of the bundle at `bundle_path`, with ``model.onnx`` checked against its digest.

    Raises:
        NotFound: there is no complete export (no manifest, or no model file).
        InvalidInput: the manifest is not one this version writes.
        CheckFailed: ``model.onnx`` does not match the digest in the manifest.
    """
    folder = export_dir(bundle_path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise NotFound(f"no export at {str(folder)!r}; create it with cluster.export.export_bundle")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"unreadable export manifest {str(manifest_path)!r}: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("runtime") != "onnx":
        raise InvalidInput(
            f"unsupported export {manifest.get('format')!r}/{manifest.get('runtime')!r} in "
            f"{str(manifest_path)!r}; expected {FORMAT!r}/'onnx'"
        )
    model_path = folder / MODEL_FILE
    digest = hashlib.sha256(_read(model_path)).hexdigest()
    if digest != manifest["model_sha256"]:
        raise CheckFailed(
            f"{str(model_path)!r} has sha256 {digest[:12]}, but its manifest says "
            f"{manifest['model_sha256'][:12]}; the file was changed or truncated: export again"
        )
    return OnnxExport(
        path=model_path,
        model_sha256=digest,
        bundle_sha256=manifest["bundle_sha256"],
        width=int(manifest["width"]),
        input=manifest["input"],
        output=manifest["output"],
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"no file at {str(path)!r}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    # Renamed into place so that a reader (another replica exporting the same bundle) never
    # sees half a file; both writers write the same bytes, so the last rename wins harmlessly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
