"""Open Inference Protocol (KServe v2) responses: the replica's `Reply`, inference and
metadata bodies.

Responses: `infer_reply` builds the replica's `Reply`. Without binary outputs its body is the
JSON object `infer_response` returns. When the client asks for binary outputs (request parameter
``binary_data_output`` for every output; a requested output's own ``binary_data`` wins), the body
is bytes, as Triton answers: the JSON header (binary outputs carry ``parameters.binary_data_size``
and no ``data``) followed by each binary output's little-endian bytes in output order, with the
headers ``Inference-Header-Content-Length: <header bytes>`` and
``Content-Type: application/octet-stream``.

Outputs by the model's task (`cluster.bundle.Outputs`): a binary classifier answers
``predictions`` (INT64 class) and ``scores`` (FP32 probability of class 1); a multiclass one
``predictions`` (INT64 index into the classes its metadata lists), ``scores`` (FP32 probability
of that class) and ``probabilities`` (FP32, shape [N, classes]); a regressor ``predictions``
and ``scores``, both the FP32 predicted value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from cluster.serve._oip import InferRequest

PLATFORM = "appliance-torch"
# A binary classifier's outputs (and the default ones); ALL_OUTPUTS: any task's.
OUTPUTS = ("predictions", "scores")
ALL_OUTPUTS = (*OUTPUTS, "probabilities")
_OUTPUT_DTYPES = {"predictions": ("INT64", np.dtype("<i8")), "scores": ("FP32", np.dtype("<f4")),
                  "probabilities": ("FP32", np.dtype("<f4"))}
_FP32 = ("FP32", np.dtype("<f4"))


def task_outputs(task: str) -> tuple[str, ...]:
    """The outputs a model of `task` answers, in order."""
    return ALL_OUTPUTS if task == "multiclass" else OUTPUTS


def _typed(name: str, values: np.ndarray) -> tuple[str, np.dtype]:
    """(datatype, dtype) of output `name` holding `values`: a regressor's predictions are
    values, not classes."""
    if name == "predictions" and np.asarray(values).dtype.kind == "f":
        return _FP32
    return _OUTPUT_DTYPES[name]


class Reply(NamedTuple):
    """What the model replica answers the ingress: an HTTP status, a body, extra headers.

    The body is a JSON object, or bytes already encoded (the binary tensor extension), whose
    ``Content-Type`` and ``Inference-Header-Content-Length`` are then in `headers`.
    """

    status: int
    body: dict[str, Any] | bytes
    headers: dict[str, str] | None = None


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A `Reply` carrying ``{"error": message}``."""
    return Reply(status, {"error": message}, dict(headers) if headers else None)


def _response(
    model: str,
    version: str,
    request_id: str,
    tensors: Mapping[str, np.ndarray],
    names: Sequence[str],
    binary: Collection[str],
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    outputs = []
    for name in names:
        values = tensors[name]
        datatype, dtype = _typed(name, values)
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if name in binary:
            out["parameters"] = {"binary_data_size": values.size * dtype.itemsize}
        else:
            # Row-major flattened, as the protocol's JSON tensors are.
            data = values.reshape(-1).tolist()
            if datatype == "FP32" and not np.isfinite(values).all():
                data = [v if math.isfinite(v) else None for v in data]  # JSON has no NaN
            out["data"] = data
        outputs.append(out)
    doc = {"model_name": model, "model_version": version, "id": request_id, "outputs": outputs}
    if parameters:
        doc["parameters"] = dict(parameters)
    return doc


def infer_response(
    *,
    model: str,
    version: str,
    request_id: str,
    predictions: np.ndarray,
    scores: np.ndarray,
    outputs: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    probabilities: np.ndarray | None = None,
) -> dict[str, Any]:
    """The v2 inference response body, all JSON.

    Args:
        model: the model name.
        version: the version that computed the outputs.
        request_id: the id logged for this request (the client's, or one made up for it).
        predictions: int64 classes, shape (N,).
        scores: float32 probabilities of class 1, shape (N,); a non-finite score is null.
        outputs: which outputs to return, in order (default: predictions and scores, plus
            probabilities when given).
        parameters: the response's ``parameters`` (default none).
        probabilities: a multiclass model's (N, classes) probabilities (default None).
    """
    tensors = _tensors(predictions, scores, probabilities)
    return _response(model, version, request_id, tensors, outputs or tuple(tensors), (),
                     parameters)


def _tensors(predictions: np.ndarray, scores: np.ndarray,
             probabilities: np.ndarray | None) -> dict[str, np.ndarray]:
    out = {"predictions": np.asarray(predictions), "scores": np.asarray(scores)}
    if probabilities is not None:
        out["probabilities"] = np.asarray(probabilities)
    return out


def infer_reply(
    *,
    model: str,
    version: str,
    request_id: str,
    predictions: np.ndarray,
    scores: np.ndarray,
    request: InferRequest | None = None,
    outputs: Sequence[str] | None = None,
    binary_outputs: Collection[str] = frozenset(),
    headers: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    probabilities: np.ndarray | None = None,
) -> Reply:
    """The 200 `Reply` to an inference request, JSON or binary as the client asked (a 400
    when it asked for an output the model does not have).

    Args:
        model: the model name.
        version: the version that computed the outputs.
        request_id: the id logged for this request (the client's, or one made up for it).
        predictions: int64 classes, shape (N,).
        scores: float32 probabilities of class 1, shape (N,).
        request: the parsed request; when given, its ``outputs`` and ``binary_outputs`` are
            used and the two arguments below are ignored (default None).
        outputs: which outputs to return, in order (default both).
        binary_outputs: which of them to send as raw bytes (default none: the body is the
            `infer_response` object).
        headers: extra headers for the reply (default none).
        parameters: the response's ``parameters`` (default none).
        probabilities: a multiclass model's (N, classes) probabilities (default None).
    """
    if request is not None:
        outputs, binary_outputs = request.outputs, request.binary_outputs
    tensors = _tensors(predictions, scores, probabilities)
    names = outputs or tuple(tensors)
    missing = [name for name in names if name not in tensors]
    if missing:
        return error(400, f"output {missing[0]!r} is not answered by this model; it answers "
                          f"{list(tensors)}", headers)
    binary = [name for name in names if name in binary_outputs]
    if not binary:
        body = infer_response(
            model=model,
            version=version,
            request_id=request_id,
            predictions=predictions,
            scores=scores,
            outputs=outputs,
            parameters=parameters,
            probabilities=probabilities,
        )
        return Reply(200, body, dict(headers) if headers else None)
    tensors = {name: np.asarray(v, dtype=_typed(name, v)[1]) for name, v in tensors.items()}
    doc = _response(model, version, request_id, tensors, names, binary, parameters)
    head = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")
    extra = {
        **(headers or {}),
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    return Reply(200, b"".join([head, *(tensors[name].tobytes() for name in binary)]), extra)


def model_metadata(
    *, model: str, version: str, features: Sequence[str], categorical: Collection[str] = (),
    task: str = "binary", classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The v2 model metadata body.

    Args:
        model: the model name.
        version: the served version.
        features: input names in the model's order.
        categorical: which inputs are strings (default none).
        task: the model's task (default "binary"): it sets the outputs listed; a model of
            another task says so in ``parameters``.
        classes: a multiclass model's classes; ``predictions`` index them (default None).
    """
    outputs = task_outputs(task)
    doc = {
        "name": model,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [
            {"name": f, "datatype": "BYTES" if f in categorical else "FP64", "shape": [-1]}
            for f in features
        ],
        "outputs": [
            {"name": name,
             "datatype": "FP32" if task == "regression" else _OUTPUT_DTYPES[name][0],
             "shape": [-1, len(classes or ())] if name == "probabilities" else [-1]}
            for name in outputs
        ],
    }
    if task != "binary":
        doc["parameters"] = {"task": task, **({"classes": list(classes)} if classes else {})}
    return doc
