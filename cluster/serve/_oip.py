"""Open Inference Protocol (KServe v2) request parsing and response building.

Pure functions, no Ray: the model replica calls them, and the tests drive them directly.
A tabular model takes one input tensor per feature (KServe's tabular convention), each of
shape ``[N]`` or ``[N, 1]``; the response carries two outputs, ``predictions`` (INT64 class)
and ``scores`` (FP32 probability of class 1).

Both request forms are accepted: plain JSON (``data`` inside each input) and the binary tensor
extension (the ``Inference-Header-Content-Length`` header gives the JSON header's length; each
input with ``parameters.binary_data_size`` takes its bytes, in input order, from what follows).
Responses are always JSON, which v2 clients (``tritonclient.http`` included) accept even when
they asked for binary outputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from appliance.errors import InvalidInput

PLATFORM = "appliance-torch"
OUTPUTS = ("predictions", "scores")
MAX_ID_LENGTH = 256

# Little-endian, as the binary extension specifies.
_NUMERIC = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_INTEGER = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT = {"FP16", "FP32", "FP64"}
DATATYPES = (*_NUMERIC, "BYTES")
_LENGTH_PREFIX = struct.Struct("<I")
_ID_RE = re.compile(r"[^A-Za-z0-9_-]")
_MISSING = object()


class Reply(NamedTuple):
    """What the model replica answers the ingress: an HTTP status, a JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A `Reply` carrying ``{"error": message}``."""
    return Reply(status, {"error": message}, dict(headers) if headers else None)


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """A validated inference request.

    Args:
        id: the client's request id, or None when it sent none (or an empty one).
        columns: feature name -> 1-D array (float64 for numerical, str objects for categorical).
        rows: the batch size N shared by every input.
        outputs: output names the client asked for, in its order, or None for all.
    """

    id: str | None
    columns: dict[str, np.ndarray]
    rows: int
    outputs: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class Feedback:
    """Ground-truth labels for rows of one served request."""

    request_id: str
    rows: np.ndarray  # int32
    labels: np.ndarray  # int64


def file_safe(request_id: str) -> str:
    """`request_id` reduced to characters safe in a file name (at most 64 of them)."""
    return _ID_RE.sub("_", request_id)[:64] or "_"


def _load_json(raw: bytes, what: str) -> Any:
    if not raw:
        raise InvalidInput(f"{what} is empty; send an OIP v2 JSON document")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flatten(data: Any) -> list[Any]:
    """Row-major flattening of (possibly nested) JSON lists, as v2 allows either form."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _rows_of(shape: Any, name: str) -> tuple[int, int]:
    """Return (N, element count) for an input of shape [N] or [N, 1]."""
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        if shape[0] < 0:
            raise InvalidInput(f"input {name!r}: shape {shape} has a negative dimension")
        return shape[0], shape[0]
    raise InvalidInput(
        f"input {name!r}: shape {shape} is not supported; a tabular feature is [N] or [N, 1]"
    )


def _accepts(datatype: str):
    """The JSON element check for a numeric `datatype` (bool is not a number here)."""
    if datatype == "BOOL":
        return lambda v: isinstance(v, bool)
    if datatype in _INTEGER:
        return _is_int
    # null is a missing value; the preprocessor imputes it as training did.
    return lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _json_values(flat: list[Any], datatype: str, name: str) -> np.ndarray:
    if datatype == "BYTES":
        bad = next((v for v in flat if not isinstance(v, str)), _MISSING)
        if bad is not _MISSING:
            raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {bad!r}")
        return np.array(flat, dtype=object)
    ok = _accepts(datatype)
    bad = next((v for v in flat if not ok(v)), _MISSING)
    if bad is not _MISSING:
        raise InvalidInput(f"input {name!r}: {datatype} data must be numbers, got {bad!r}")
    if datatype in _FLOAT:
        return np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
    try:
        return np.array(flat, dtype=_NUMERIC[datatype])
    except OverflowError as exc:
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}") from exc


def _binary_values(chunk: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype != "BYTES":
        dtype = _NUMERIC[datatype]
        if len(chunk) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r}: binary_data_size {len(chunk)} does not hold {count} "
                f"{datatype} values ({count * dtype.itemsize} bytes)"
            )
        return np.frombuffer(chunk, dtype=dtype)
    out: list[str] = []
    pos = 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: truncated BYTES element length at byte {pos}")
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, pos)
        pos += 4
        if pos + length > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES element overruns its binary data")
        try:
            out.append(chunk[pos : pos + length].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"input {name!r}: BYTES element is not UTF-8: {exc}") from exc
        pos += length
    if len(out) != count:
        raise InvalidInput(
            f"input {name!r}: binary data holds {len(out)} elements, shape says {count}"
        )
    return np.array(out, dtype=object)


def _to_feature(values: np.ndarray, datatype: str, name: str, categorical: bool) -> np.ndarray:
    if categorical:
        if datatype == "BYTES":
            return values
        if datatype in _INTEGER:
            return np.array([str(v) for v in values.tolist()], dtype=object)
        raise InvalidInput(
            f"input {name!r} is categorical: send BYTES (strings) or an integer datatype, "
            f"not {datatype}"
        )
    if datatype == "BYTES":
        raise InvalidInput(
            f"input {name!r} is numerical: send FP32, FP64 or an integer datatype, not BYTES"
        )
    return values.astype(np.float64, copy=False)


def parse_infer_request(
    body: bytes,
    *,
    features: Sequence[str],
    categorical: Collection[str] = (),
    header_length: int | None = None,
) -> InferRequest:
    """Validate an OIP v2 inference request against the model's features.

    Args:
        body: the raw HTTP request body.
        features: the feature names the model expects, one input tensor each.
        categorical: which of `features` are categorical (default none).
        header_length: value of the ``Inference-Header-Content-Length`` header when the
            client used the binary tensor extension (default None: the body is all JSON).

    Raises:
        InvalidInput: naming the offending tensor or field.
    """
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"({len(body)} bytes)"
            )
        body, binary = body[:header_length], body[header_length:]
    doc = _load_json(body, "request body")
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(doc).__name__}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"request 'id' must be a string, got {request_id!r}")
    if request_id is not None and len(request_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"request 'id' is longer than {MAX_ID_LENGTH} characters")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("request needs 'inputs': a non-empty list of tensors, one per feature")

    wanted = set(features)
    categorical = set(categorical)
    columns: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"inputs[{i}] must be an object, got {tensor!r}")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"inputs[{i}] needs a string 'name'")
        if name not in wanted:
            raise InvalidInput(f"unknown input {name!r}; the model expects {list(features)}")
        if name in columns:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(
                f"input {name!r}: datatype {datatype!r} is not supported; "
                f"use one of {list(DATATYPES)}"
            )
        n, count = _rows_of(tensor.get("shape"), name)
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"input {name!r}: 'parameters' must be an object")
        size = params.get("binary_data_size")
        if size is not None:
            if not _is_int(size) or size < 0:
                raise InvalidInput(
                    f"input {name!r}: binary_data_size must be a non-negative integer"
                )
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body; "
                    "was Inference-Header-Content-Length sent?"
                )
            values = _binary_values(binary[offset : offset + size], datatype, count, name)
            offset += size
        else:
            if "data" not in tensor:
                raise InvalidInput(f"input {name!r} has no 'data'")
            flat = _flatten(tensor["data"])
            if len(flat) != count:
                raise InvalidInput(
                    f"input {name!r}: shape {tensor['shape']} needs {count} values, got {len(flat)}"
                )
            values = _json_values(flat, datatype, name)
        columns[name] = _to_feature(values, datatype, name, name in categorical)
        rows[name] = n
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} byte(s) of binary data after the JSON header "
            "belong to no input"
        )
    missing = [f for f in features if f not in columns]
    if missing:
        raise InvalidInput(f"missing input(s) {missing}; the model expects {list(features)}")
    sizes = set(rows.values())
    if len(sizes) != 1:
        raise InvalidInput(f"inputs have different batch sizes: {rows}")
    n = sizes.pop()
    if n == 0:
        raise InvalidInput("the batch is empty: every input has 0 rows")
    return InferRequest(
        id=request_id or None,
        columns=columns,
        rows=n,
        outputs=_requested_outputs(doc.get("outputs")),
    )


def _requested_outputs(outputs: Any) -> tuple[str, ...] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInput(f"'outputs' must be a list, got {outputs!r}")
    names = []
    for i, out in enumerate(outputs):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in OUTPUTS:
            raise InvalidInput(f"outputs[{i}]: unknown output {name!r}; available: {list(OUTPUTS)}")
        names.append(name)
    return tuple(names) or None


def infer_response(
    *,
    model: str,
    version: str,
    request_id: str,
    predictions: np.ndarray,
    scores: np.ndarray,
    outputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The v2 inference response body.

    Args:
        model: the model name.
        version: the version that computed the outputs.
        request_id: the id logged for this request (the client's, or one made up for it).
        predictions: int64 classes, shape (N,).
        scores: float32 probabilities of class 1, shape (N,).
        outputs: which outputs to return, in order (default both).
    """
    tensors = {
        "predictions": {
            "name": "predictions",
            "datatype": "INT64",
            "shape": [len(predictions)],
            "data": predictions.tolist(),
        },
        "scores": {
            "name": "scores",
            "datatype": "FP32",
            "shape": [len(scores)],
            "data": scores.tolist(),
        },
    }
    return {
        "model_name": model,
        "model_version": version,
        "id": request_id,
        "outputs": [tensors[name] for name in (outputs or OUTPUTS)],
    }


def model_metadata(
    *, model: str, version: str, features: Sequence[str], categorical: Collection[str] = ()
) -> dict[str, Any]:
    """The v2 model metadata body.

    Args:
        model: the model name.
        version: the served version.
        features: input names in the model's order.
        categorical: which inputs are strings (default none).
    """
    return {
        "name": model,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [
            {"name": f, "datatype": "BYTES" if f in categorical else "FP64", "shape": [-1]}
            for f in features
        ],
        "outputs": [
            {"name": "predictions", "datatype": "INT64", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1]},
        ],
    }


def _label(value: Any, where: str) -> int:
    if not _is_int(value) or value not in (0, 1):
        raise InvalidInput(
            f"{where} must be 0 or 1 (the model is a binary classifier), got {value!r}"
        )
    return value


def parse_feedback(body: bytes) -> Feedback:
    """Validate a feedback body.

    Either ``{"request_id": str, "labels": [int, ...]}`` (one label per row of that request,
    in row order) or ``{"request_id": str, "row": int, "label": int}`` (one row).

    Raises:
        InvalidInput: naming the offending field.
    """
    doc = _load_json(body, "feedback body")
    if not isinstance(doc, dict):
        raise InvalidInput(f"feedback body must be a JSON object, got {type(doc).__name__}")
    request_id = doc.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidInput(f"feedback needs a non-empty string 'request_id', got {request_id!r}")
    if len(request_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"'request_id' is longer than {MAX_ID_LENGTH} characters")
    has_labels, has_row = "labels" in doc, ("row" in doc or "label" in doc)
    if has_labels == has_row:
        raise InvalidInput(
            "feedback needs either 'labels' (one per row) or 'row' and 'label', not both or neither"
        )
    if has_labels:
        labels = doc["labels"]
        if not isinstance(labels, list) or not labels:
            raise InvalidInput(f"'labels' must be a non-empty list, got {labels!r}")
        values = [_label(v, f"labels[{i}]") for i, v in enumerate(labels)]
        rows = np.arange(len(values), dtype=np.int32)
    else:
        row = doc.get("row")
        if not _is_int(row) or not 0 <= row < 2**31:
            raise InvalidInput(f"'row' must be a non-negative integer, got {row!r}")
        values = [_label(doc.get("label"), "'label'")]
        rows = np.array([row], dtype=np.int32)
    return Feedback(request_id, rows, np.array(values, dtype=np.int64))
