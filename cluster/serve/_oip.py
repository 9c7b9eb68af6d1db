"""Open Inference Protocol (KServe v2) request parsing and response building.

Pure functions, no Ray: the model replica calls them, and the tests drive them directly.
A tabular model takes one input tensor per feature (KServe's tabular convention), each of
shape ``[N]`` or ``[N, 1]``; the response carries the outputs of the model's task (see
`cluster.serve._oip_reply`): for a binary classifier ``predictions`` (INT64 class) and
``scores`` (FP32 probability of class 1).

Requests come in both forms: plain JSON (``data`` inside each input) and the binary tensor
extension (the ``Inference-Header-Content-Length`` header gives the JSON header's length; each
input with ``parameters.binary_data_size`` takes its bytes, in input order, from what follows).
``parameters`` (of the request, an input or a requested output) is an object. The known ones are
type-checked: ``binary_data_output`` (request) and ``binary_data`` (output) are booleans,
``binary_data_size`` (input) a non-negative integer; the shared-memory and classification
extensions are refused, as this server does not provide them; any other parameter is accepted
and ignored, as KServe and Triton pass custom parameters through.

Any body, however malformed, raises `InvalidInput` (the replica answers 400 with its message)
and nothing else. The body must be UTF-8 and nest arrays and objects at most `MAX_DEPTH` deep
(a linear scan refuses deeper bodies before they are decoded); numbers must be finite and fit
their datatype (JSON ``NaN``, ``Infinity`` and ``1e400`` are refused, ``null`` is a missing
value; a binary float NaN is a missing value, an infinity is refused); ids, BYTES data and
parameters hold no lone surrogates (they are logged as UTF-8); a shape is checked against the
element count before anything is allocated for it.

Responses are built by `cluster.serve._oip_reply` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from appliance.errors import InvalidInput
from cluster.serve._oip_reply import (  # noqa: F401 (re-exported: the protocol in one place)
    ALL_OUTPUTS,
    OUTPUTS,
    PLATFORM,
    Reply,
    error,
    infer_reply,
    infer_response,
    model_metadata,
)

MAX_ID_LENGTH = 256
MAX_DEPTH = 32  # arrays and objects; a valid request needs 5, parameters may add a few

# Little-endian, as the binary extension (and gRPC's raw contents) specify.
NUMERIC_DTYPES = {
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
DATATYPES = (*NUMERIC_DTYPES, "BYTES")
_UNSUPPORTED_PARAMETERS = (
    "shared_memory_region",
    "shared_memory_byte_size",
    "shared_memory_offset",
    "classification",
)
_LENGTH_PREFIX = struct.Struct("<I")
_ID_RE = re.compile(r"[^A-Za-z0-9_-]")
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """A validated inference request.

    Args:
        id: the client's request id, or None when it sent none (or an empty one).
        columns: feature name -> 1-D array (float64 for numerical, str objects for categorical).
        rows: the batch size N shared by every input.
        outputs: output names the client asked for, in its order, or None for all.
        parameters: the request's ``parameters`` object as sent (default empty).
        binary_outputs: outputs to answer in binary form (default none: all JSON).
    """

    id: str | None
    columns: dict[str, np.ndarray]
    rows: int
    outputs: tuple[str, ...] | None
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    binary_outputs: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Feedback:
    """Ground-truth labels for rows of one served request."""

    request_id: str
    rows: np.ndarray  # int32
    labels: np.ndarray  # int64


def file_safe(request_id: str) -> str:
    """`request_id` reduced to characters safe in a file name (at most 64 of them)."""
    return _ID_RE.sub("_", request_id)[:64] or "_"


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to `limit` characters, for messages about client values."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int past the digit limit; nesting is capped
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _max_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in JSON text `raw`, by a linear scan.

    Brackets inside strings do not count. Numpy and bytes methods keep it linear, without
    recursion or per-character Python work, in a few bytes of memory per byte of `raw`.
    """
    if b"\\" in raw:
        # Escapes pair backslashes left to right, so dropping the pairs leaves one backslash
        # before each escaped character: then the escaped quotes go, and every quote left
        # opens or closes a string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    chars = np.frombuffer(raw, dtype=np.uint8)
    folded = chars | 0x20  # [ and { -> {, ] and } -> }
    marks = chars[(folded == 0x7B) | (folded == 0x7D) | (chars == 0x22)]
    quotes = marks == 0x22
    outside = (np.cumsum(quotes, dtype=np.uint8) & 1) == 0  # parity survives the wrap-around
    brackets = marks[outside & ~quotes]
    if not brackets.size:
        return 0
    # Opening brackets have bit 1 set. Past a closer at the top the document has ended: the
    # decoder refuses the extra data before nesting into it, so a lower count there is harmless.
    return max(0, int(np.cumsum((brackets & 2).astype(np.int32) - 1).max()))


def _load_json(raw: bytes, what: str) -> Any:
    if not raw:
        raise InvalidInput(f"{what} is empty; send an OIP v2 JSON document")
    raw = bytes(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: it is not UTF-8 ({exc})") from exc
    # Fewer brackets than the limit cannot nest past it: most requests skip the scan.
    depth = _max_depth(raw) if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH else 0
    if depth > MAX_DEPTH:
        raise InvalidInput(
            f"{what} nests arrays and objects {depth} levels deep; at most {MAX_DEPTH} are "
            "accepted (a tensor's data is a flat list, or one [value] per row)"
        )
    try:
        return json.loads(text)
    except RecursionError as exc:  # the scan above keeps this out of reach; kept as a guard
        raise InvalidInput(f"{what} nests too deep to decode") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer past Python's digit limit
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_text(text: str, what: str) -> None:
    """Refuse lone surrogates (JSON ``"\\ud800"``): they cannot be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} holds a lone surrogate {_show(text[exc.start : exc.end])}; send valid Unicode"
        ) from exc


def _parameters(value: Any, where: str) -> dict[str, Any]:
    """A ``parameters`` object: absent is empty; unsupported extensions are refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: 'parameters' must be an object, got {_show(value)}")
    for key in _UNSUPPORTED_PARAMETERS:
        if key in value:
            raise InvalidInput(
                f"{where}: parameter {key!r} is not supported by this server; send tensor data "
                "in the request body and ask for outputs without it"
            )
    _check_text(json.dumps(value, ensure_ascii=False), f"{where}: 'parameters'")
    return value


def _flag(params: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: parameter {key!r} must be true or false, got {_show(value)}")
    return value


def _rows_of(shape: Any, name: str) -> tuple[int, int]:
    """Return (N, element count) for an input of shape [N] or [N, 1]."""
    if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers, got {_show(shape)}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {_show(shape)} has a negative dimension")
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return shape[0], shape[0]
    raise InvalidInput(
        f"input {name!r}: shape {_show(shape)} is not supported; a tabular feature is [N] or [N, 1]"
    )


def _flat_data(data: Any, shape: list[int], name: str) -> list[Any]:
    """The values of `data`: a flat list, one ``[value]`` per row for [N, 1], or a lone value."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    if len(shape) == 2 and all(
        isinstance(v, list) and len(v) == 1 and not isinstance(v[0], list) for v in data
    ):
        return [v[0] for v in data]
    raise InvalidInput(
        f"input {name!r}: 'data' nests lists that do not match shape {_show(shape)}; "
        "send a flat list, or one [value] per row for [N, 1]"
    )


def _accepts(datatype: str):
    """The JSON element check for a numeric `datatype` (bool is not a number here)."""
    if datatype == "BOOL":
        return lambda v: isinstance(v, bool)
    if datatype in _INTEGER:
        return _is_int
    # null is a missing value; the preprocessor imputes it as training did.
    return lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _check_floats(
    values: np.ndarray, datatype: str, name: str, sent: Sequence[Any] | None = None
) -> None:
    """Refuse infinities, NaN sent as a JSON literal, and values past `datatype`'s range.

    Args:
        values: the float64 values.
        datatype: the declared float datatype.
        name: the input, for messages.
        sent: the JSON values, where null (NaN in `values`) is a missing value; default None
            for binary data, where NaN is the missing value.
    """
    finite = np.isfinite(values)
    if not finite.all():
        if sent is None:
            wrong = np.isinf(values)
        else:
            wrong = ~finite & np.array([v is not None for v in sent], dtype=bool)
        if wrong.any():
            i = int(np.argmax(wrong))
            got = _show(float(values[i]) if sent is None else sent[i])
            raise InvalidInput(
                f"input {name!r}: {datatype} data must be finite numbers (null for a missing "
                f"value), got {got} at index {i}; NaN, Infinity and numbers beyond float64's "
                "range are refused"
            )
    limit = float(np.finfo(NUMERIC_DTYPES[datatype]).max)
    if datatype != "FP64" and (np.abs(values[finite]) > limit).any():
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}")


def _json_values(flat: list[Any], datatype: str, name: str) -> np.ndarray:
    if datatype == "BYTES":
        bad = next((v for v in flat if not isinstance(v, str)), _MISSING)
        if bad is not _MISSING:
            raise InvalidInput(f"input {name!r}: BYTES data must be strings, got {_show(bad)}")
        _check_text("".join(flat), f"input {name!r}: BYTES data")
        return np.array(flat, dtype=object)
    ok = _accepts(datatype)
    bad = next((v for v in flat if not ok(v)), _MISSING)
    if bad is not _MISSING:
        kind = "booleans" if datatype == "BOOL" else "numbers"
        raise InvalidInput(f"input {name!r}: {datatype} data must be {kind}, got {_show(bad)}")
    try:
        if datatype in _FLOAT:
            values = np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
            _check_floats(values, datatype, name, flat)
            return values
        return np.array(flat, dtype=NUMERIC_DTYPES[datatype])
    except OverflowError as exc:
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}") from exc


def _binary_values(chunk: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype != "BYTES":
        dtype = NUMERIC_DTYPES[datatype]
        if len(chunk) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r}: binary_data_size {len(chunk)} does not hold {count} "
                f"{datatype} values ({count * dtype.itemsize} bytes)"
            )
        if datatype == "BOOL" and chunk.translate(None, b"\x00\x01"):
            raise InvalidInput(f"input {name!r}: BOOL binary data must be bytes 0 or 1")
        values = np.frombuffer(chunk, dtype=dtype)
        if datatype in _FLOAT:
            _check_floats(values.astype(np.float64), datatype, name)
        return values
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


def _split_body(body: bytes, header_length: Any) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail, as ``Inference-Header-Content-Length`` cuts them."""
    if header_length is None:
        return body, b""
    if not _is_int(header_length) or not 0 <= header_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {_show(header_length)} is not a length within "
            f"the body ({len(body)} bytes)"
        )
    return body[:header_length], body[header_length:]


def parse_infer_request(
    body: bytes,
    *,
    features: Sequence[str],
    categorical: Collection[str] = (),
    header_length: int | None = None,
    extra: Collection[str] = (),
) -> InferRequest:
    """Validate an OIP v2 inference request against the model's features.

    Args:
        body: the raw HTTP request body.
        features: the feature names the model expects, one input tensor each.
        categorical: which of `features` are categorical (default none).
        extra: inputs the deployment logs without feeding them to the model (its serving
            option ``log_columns``; default none): optional, of any datatype, kept as text.
        header_length: value of the ``Inference-Header-Content-Length`` header when the
            client used the binary tensor extension (default None: the body is all JSON).

    Raises:
        InvalidInput: naming the offending tensor or field.
    """
    header, binary = _split_body(body, header_length)
    doc = _load_json(header, "request body" if header_length is None else "request JSON header")
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(doc).__name__}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"request 'id' must be a string, got {_show(request_id)}")
    if request_id is not None and len(request_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"request 'id' is longer than {MAX_ID_LENGTH} characters")
    if request_id:
        _check_text(request_id, "request 'id'")
    parameters = _parameters(doc.get("parameters"), "request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("request needs 'inputs': a non-empty list of tensors, one per feature")

    wanted = set(features)
    logged_only = set(extra) - wanted
    categorical = set(categorical)
    columns: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"inputs[{i}] must be an object, got {_show(tensor)}")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"inputs[{i}] needs a string 'name', got {_show(name)}")
        if name not in wanted and name not in logged_only:
            raise InvalidInput(f"unknown input {_show(name)}; the model expects {list(features)}")
        if name in columns:
            raise InvalidInput(f"input {name!r} is given twice")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise InvalidInput(
                f"input {name!r}: datatype {_show(datatype)} is not supported; "
                f"use one of {list(DATATYPES)}"
            )
        n, count = _rows_of(tensor.get("shape"), name)
        params = _parameters(tensor.get("parameters"), f"input {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if not _is_int(size) or size < 0:
                raise InvalidInput(
                    f"input {name!r}: binary_data_size must be a non-negative integer, "
                    f"got {_show(size)}"
                )
            if "data" in tensor:
                raise InvalidInput(
                    f"input {name!r} has both 'data' and binary_data_size; send one of them"
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
            flat = _flat_data(tensor["data"], tensor["shape"], name)
            if len(flat) != count:
                raise InvalidInput(
                    f"input {name!r}: shape {_show(tensor['shape'])} needs {count} values, "
                    f"got {len(flat)}"
                )
            values = _json_values(flat, datatype, name)
        if name in logged_only:
            columns[name] = (values if datatype == "BYTES"
                             else np.array([str(v) for v in values.tolist()], dtype=object))
        else:
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
    default_binary = _flag(parameters, "binary_data_output", False, "request")
    outputs, binary_outputs = _requested_outputs(doc.get("outputs"), default_binary)
    return InferRequest(
        id=request_id or None,
        columns=columns,
        rows=n,
        outputs=outputs,
        parameters=parameters,
        binary_outputs=binary_outputs,
    )


def _requested_outputs(
    outputs: Any, default_binary: bool
) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    """The outputs asked for (None: all) and which of them to send binary."""
    if outputs is None or outputs == []:
        return None, frozenset(ALL_OUTPUTS) if default_binary else frozenset()
    if not isinstance(outputs, list):
        raise InvalidInput(f"'outputs' must be a list, got {_show(outputs)}")
    names: list[str] = []
    binary: set[str] = set()
    for i, out in enumerate(outputs):
        if not isinstance(out, dict):
            raise InvalidInput(
                f'outputs[{i}] must be an object like {{"name": "scores"}}, got {_show(out)}'
            )
        name = out.get("name")
        # Whether this model answers it (probabilities: multiclass only) is the reply's call.
        if not isinstance(name, str) or name not in ALL_OUTPUTS:
            raise InvalidInput(
                f"outputs[{i}]: unknown output {_show(name)}; available: {list(ALL_OUTPUTS)}"
            )
        if name in names:
            raise InvalidInput(f"outputs[{i}]: output {name!r} is asked for twice")
        where = f"output {name!r}"
        if _flag(_parameters(out.get("parameters"), where), "binary_data", default_binary, where):
            binary.add(name)
        names.append(name)
    return tuple(names), frozenset(binary)


def _label(value: Any, where: str) -> int:
    if not _is_int(value) or value not in (0, 1):
        raise InvalidInput(
            f"{where} must be 0 or 1 (the model is a binary classifier), got {_show(value)}"
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
        raise InvalidInput(
            f"feedback needs a non-empty string 'request_id', got {_show(request_id)}"
        )
    if len(request_id) > MAX_ID_LENGTH:
        raise InvalidInput(f"'request_id' is longer than {MAX_ID_LENGTH} characters")
    _check_text(request_id, "'request_id'")
    has_labels, has_row = "labels" in doc, ("row" in doc or "label" in doc)
    if has_labels == has_row:
        raise InvalidInput(
            "feedback needs either 'labels' (one per row) or 'row' and 'label', not both or neither"
        )
    if has_labels:
        labels = doc["labels"]
        if not isinstance(labels, list) or not labels:
            raise InvalidInput(f"'labels' must be a non-empty list, got {_show(labels)}")
        values = [_label(v, f"labels[{i}]") for i, v in enumerate(labels)]
        rows = np.arange(len(values), dtype=np.int32)
    else:
        row = doc.get("row")
        if not _is_int(row) or not 0 <= row < 2**31:
            raise InvalidInput(f"'row' must be a non-negative integer, got {_show(row)}")
        values = [_label(doc.get("label"), "'label'")]
        rows = np.array([row], dtype=np.int32)
    return Feedback(request_id, rows, np.array(values, dtype=np.int64))
