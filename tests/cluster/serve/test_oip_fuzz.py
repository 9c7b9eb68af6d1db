"""Fuzzing the OIP parsers: any input gives a valid result or `InvalidInput`, nothing else.

Three sources of bodies: arbitrary bytes, arbitrary JSON documents, and near-valid requests
(valid ones, JSON or binary, put through a few mutations: wrong datatypes, shapes and counts,
hostile numbers, extra nesting, bad parameters, corrupted binary tails). A request that parses
must satisfy the `InferRequest` invariants, and its reply, JSON or binary, must decode in
tritonclient to the outputs it was built from.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import tritonclient.http as httpclient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from appliance.errors import InvalidInput
from cluster.serve._oip import (
    ALL_OUTPUTS,
    DATATYPES,
    MAX_DEPTH,
    OUTPUTS,
    InferRequest,
    _max_depth,
    infer_reply,
    parse_feedback,
    parse_infer_request,
)

FEATURES = ("income", "age", "region")
CATEGORICAL = ("region",)
FUZZ = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
MARKER = "@@RAW@@"  # a data value replaced by raw JSON text after encoding

# Any code point, lone surrogates included (json.dumps writes them as \\udXXX escapes).
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
KEYS = st.sampled_from(
    [
        "inputs", "outputs", "id", "parameters", "name", "shape", "datatype", "data",
        "binary_data_size", "binary_data_output", "binary_data", "request_id", "labels",
        "row", "label",
    ]
) | ANY_TEXT  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400, -(10**30)])
    | st.floats()
    | ANY_TEXT
    | st.sampled_from(list(DATATYPES) + list(FEATURES) + list(OUTPUTS))
)
JSON_DOCS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
RAW_VALUES = [
    "1e400", "-1e400", "NaN", "-Infinity", "Infinity", "1" + "0" * 400, "9" * 5000,
    "[" * 40 + "1" + "]" * 40, "[" * 20000 + "]" * 20000, '"\\ud800"', '"a\\udc00"',
    '"\\ud83d\\ude00"', "{}", "[[]]", "-0", "1E-400", "true", "null",
]  # fmt: skip
_PREFIX = struct.Struct("<I")


def _outcome(fn, *args, **kwargs):
    """`fn`'s result, or None when it refused with a message a 400 body can carry."""
    try:
        return fn(*args, **kwargs)
    except InvalidInput as exc:
        message = str(exc)
        assert message.strip(), "InvalidInput without a message"
        assert len(message) < 2000, message[:200]
        json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")  # renders as UTF-8
        return None


def _parse(body: bytes, header_length=None) -> InferRequest | None:
    return _outcome(
        parse_infer_request,
        body,
        features=FEATURES,
        categorical=CATEGORICAL,
        header_length=header_length,
    )


def _check_request(req: InferRequest) -> None:
    """The invariants of a parsed request, and a reply tritonclient decodes."""
    assert set(req.columns) == set(FEATURES) and req.rows > 0
    for name, column in req.columns.items():
        assert column.shape == (req.rows,)
        if name in CATEGORICAL:
            assert column.dtype == object
            "".join(column.tolist()).encode("utf-8")  # no lone surrogates reach the log
        else:
            assert column.dtype == np.float64 and not np.isinf(column).any()
    if req.id is not None:
        assert req.id and req.id.encode("utf-8")
    json.dumps(req.parameters, ensure_ascii=False).encode("utf-8")
    assert req.binary_outputs <= set(ALL_OUTPUTS)
    predictions = np.arange(req.rows, dtype=np.int64) % 2
    scores = np.linspace(0, 1, req.rows, dtype=np.float32)
    reply = infer_reply(
        model="m",
        version="1",
        request_id=req.id or "made-up",
        predictions=predictions,
        scores=scores,
        request=req,
        headers={"x": "y"},
    )
    names = req.outputs or OUTPUTS
    if isinstance(reply.body, dict):
        assert not set(names) & req.binary_outputs
        body = json.dumps(reply.body, allow_nan=False).encode()
        result = httpclient.InferResult.from_response_body(body)
    else:
        assert reply.headers["Content-Type"] == "application/octet-stream"
        length = int(reply.headers["Inference-Header-Content-Length"])
        result = httpclient.InferResult.from_response_body(reply.body, header_length=length)
    assert [o["name"] for o in result.get_response()["outputs"]] == list(names)
    expected = {"predictions": predictions, "scores": scores}
    for name in names:
        got = result.as_numpy(name)
        assert got.dtype == expected[name].dtype
        np.testing.assert_array_equal(got, expected[name])


# --- arbitrary input -------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=300), cut=st.none() | st.integers(-3, 310))
def test_arbitrary_bytes(body, cut):
    req = _parse(body, cut)
    if req is not None:
        _check_request(req)
    _outcome(parse_feedback, body)


@FUZZ
@given(doc=JSON_DOCS, shaped=st.booleans())
def test_arbitrary_json(doc, shaped):
    if shaped:  # reach past the top-level checks
        doc = {"inputs": doc if isinstance(doc, list) else [doc], "id": "x", "outputs": doc}
    body = json.dumps(doc).encode()
    req = _parse(body)
    event("parsed" if req is not None else "refused")
    if req is not None:
        _check_request(req)
    _outcome(parse_feedback, body)


@FUZZ
@given(
    request_id=SCALARS,
    labels=JSON_DOCS,
    row=SCALARS,
    label=SCALARS,
    keys=st.sets(st.sampled_from(["labels", "row", "label"])),
    raw=st.none() | st.sampled_from(RAW_VALUES),
)
def test_feedback_near_valid(request_id, labels, row, label, keys, raw):
    doc = {"request_id": request_id, "labels": labels, "row": row, "label": label}
    doc = {k: v for k, v in doc.items() if k == "request_id" or k in keys}
    body = json.dumps(doc)
    if raw is not None and "labels" in doc:
        body = body.replace('"labels": ', f'"labels": [{raw}, ', 1).replace("]}", "]]}")
    fb = _outcome(parse_feedback, body.encode())
    if fb is not None:
        assert fb.request_id.encode("utf-8") and len(fb.rows) == len(fb.labels) > 0
        assert set(fb.labels.tolist()) <= {0, 1} and (fb.rows >= 0).all()


TRICKY_TEXT = st.text(alphabet=st.sampled_from('"\\[]{}u0a\u00e9\U0001f600'), max_size=8)
TRICKY_DOCS = st.recursive(
    st.none() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=30,
)


def _depth(doc) -> int:
    deepest, stack = 0, [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth + 1)
            stack.extend(
                (v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)
            )
    return deepest


@FUZZ
@given(doc=TRICKY_DOCS, ascii_only=st.booleans(), indent=st.none() | st.just(1))
def test_depth_scan_matches_the_decoder(doc, ascii_only, indent):
    text = json.dumps(doc, ensure_ascii=ascii_only, indent=indent).encode()
    assert _max_depth(text) == _depth(doc)
    wrapped = b"[" * MAX_DEPTH + text + b"]" * MAX_DEPTH
    assert _max_depth(wrapped) == _depth(doc) + MAX_DEPTH


# --- near-valid requests ---------------------------------------------------------------------

NUMERIC_TYPES = ["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "UINT64", "BOOL"]
CATEGORICAL_TYPES = ["BYTES", "INT64", "INT16", "UINT32"]


def _values(draw, datatype: str, n: int, binary: bool) -> list:
    """`n` values a client may send as `datatype` (null/NaN for missing floats)."""
    if datatype == "BYTES":
        element = st.text(max_size=6)
    elif datatype == "BOOL":
        element = st.booleans()
    elif datatype.startswith("FP"):
        width = {"FP16": 16, "FP32": 32, "FP64": 64}[datatype]
        element = st.floats(width=width, allow_nan=False, allow_infinity=False)
        element = element | st.just(math.nan if binary else None)
    else:
        info = np.iinfo(np.dtype(datatype.lower()))
        element = st.integers(int(info.min), int(info.max))
    return draw(st.lists(element, min_size=n, max_size=n))


def _encode(values: list, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(_PREFIX.pack(len(b)) + b for b in (v.encode() for v in values))
    return (
        np.array(values, dtype=httpclient.triton_to_np_dtype(datatype))
        .astype(np.dtype(httpclient.triton_to_np_dtype(datatype)).newbyteorder("<"))
        .tobytes()
    )


@st.composite
def valid_requests(draw):
    """(doc, binary chunks by input, expected columns) for a request every check accepts."""
    n = draw(st.integers(1, 4))
    inputs, chunks, expected = [], {}, {}
    for name in draw(st.permutations(FEATURES)):
        types = CATEGORICAL_TYPES if name in CATEGORICAL else NUMERIC_TYPES
        datatype = draw(st.sampled_from(types))
        binary = draw(st.booleans())
        values = _values(draw, datatype, n, binary)
        shape = draw(st.sampled_from([[n], [n, 1]]))
        tensor = {"name": name, "shape": shape, "datatype": datatype}
        if binary:
            chunks[name] = _encode(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(chunks[name])}
        else:
            nested = len(shape) == 2 and draw(st.booleans())
            tensor["data"] = [[v] for v in values] if nested else values
        inputs.append(tensor)
        expected[name] = values
    doc = {"inputs": inputs}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=10))
    if draw(st.booleans()):
        doc["parameters"] = {"binary_data_output": draw(st.booleans()), "custom": draw(SCALARS)}
    if draw(st.booleans()):
        names = draw(st.lists(st.sampled_from(OUTPUTS), unique=True, max_size=2))
        doc["outputs"] = [
            {"name": o, "parameters": {"binary_data": draw(st.booleans())}} for o in names
        ]
    return doc, chunks, expected


def _body(doc, chunks) -> tuple[bytes, int | None]:
    head = json.dumps(doc).encode()
    tail = b"".join(chunks[t["name"]] for t in doc["inputs"] if t["name"] in chunks)
    return head + tail, (len(head) if chunks else None)


@FUZZ
@given(valid_requests())
def test_valid_requests_parse_exactly(case):
    doc, chunks, expected = case
    body, header_length = _body(doc, chunks)
    req = parse_infer_request(
        body, features=FEATURES, categorical=CATEGORICAL, header_length=header_length
    )
    _check_request(req)
    for name, values in expected.items():
        got = req.columns[name].tolist()
        if name in CATEGORICAL:
            assert got == [str(v) for v in values]
        else:
            want = [math.nan if v is None else float(v) for v in values]
            np.testing.assert_array_equal(np.array(got), np.array(want))


def _tensor(draw, doc) -> dict:
    """An input object of `doc` to mutate (a throwaway one when earlier mutations left none)."""
    inputs = doc.get("inputs")
    tensors = [t for t in inputs if isinstance(t, dict)] if isinstance(inputs, list) else []
    return draw(st.sampled_from(tensors)) if tensors else {}


def _mutate(draw, doc, chunks):
    """One mutation of a valid request (and its binary chunks), in place."""
    kind = draw(st.integers(0, 11))
    tensor = _tensor(draw, doc)
    if kind == 0:
        tensor["datatype"] = draw(st.sampled_from([*DATATYPES, "FLOAT", "", 5, None, ["FP64"]]))
    elif kind == 1:
        dims = st.integers(-2, 5) | st.sampled_from([10**18, 2**64, True, 1.0, "2"])
        tensor["shape"] = draw(st.lists(dims, max_size=3) | SCALARS)
    elif kind == 2 and isinstance(tensor.get("data"), list) and tensor["data"]:
        i = draw(st.integers(0, len(tensor["data"]) - 1))
        tensor["data"][i] = draw(SCALARS | JSON_DOCS)
    elif kind == 3 and isinstance(tensor.get("data"), list):
        tensor["data"] = draw(st.sampled_from([[tensor["data"]], [[v] for v in tensor["data"]]]))
    elif kind == 4 and tensor:
        tensor.pop(draw(st.sampled_from(sorted(tensor))))
    elif kind == 5 and isinstance(doc.get("inputs"), list) and doc["inputs"]:
        if draw(st.booleans()):
            twin = draw(st.sampled_from(doc["inputs"]))
            doc["inputs"].append(dict(twin) if isinstance(twin, dict) else twin)
        else:
            doc["inputs"].remove(draw(st.sampled_from(doc["inputs"])))
    elif kind == 6:
        where = draw(st.sampled_from(["request", "input", "output"]))
        target = doc if where == "request" else tensor
        if where == "output":
            outputs = doc.get("outputs")
            if not (isinstance(outputs, list) and outputs and isinstance(outputs[0], dict)):
                doc["outputs"] = outputs = [{"name": "scores"}]
            target = outputs[0]
        params = draw(JSON_DOCS)
        if isinstance(params, dict) and draw(st.booleans()):
            key = draw(
                st.sampled_from(
                    [
                        "binary_data_output",
                        "binary_data",
                        "binary_data_size",
                        "shared_memory_region",
                        "classification",
                    ]
                )
            )
            params[key] = draw(SCALARS)
        target["parameters"] = params
    elif kind == 7 and isinstance(tensor.get("parameters"), dict):
        size = tensor["parameters"].get("binary_data_size")
        size = size if isinstance(size, int) else 0
        tensor["parameters"]["binary_data_size"] = draw(
            st.sampled_from([size + 1, size - 1, -1, 10**30, True, None, str(size)])
        )
    elif kind == 8 and chunks:
        name = draw(st.sampled_from(sorted(chunks)))
        raw = chunks[name]
        chunks[name] = draw(
            st.sampled_from(
                [
                    raw[:-1],
                    raw + b"\x00",
                    b"\xff" * len(raw),
                    np.full(max(1, len(raw) // 4), np.inf, "<f4").tobytes()[: len(raw)],
                    b"\x00\x00\x80\x7f" * (len(raw) // 4) + raw[len(raw) // 4 * 4 :],
                ]
            )
        )
    elif kind == 9:
        doc["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries({"name": st.sampled_from([*OUTPUTS, "logits", 3])})
                | JSON_DOCS,
                max_size=3,
            )
            | SCALARS
        )
    elif kind == 10:
        doc["id"] = draw(SCALARS | st.just("x" * 300))
    elif kind == 11:
        doc[draw(KEYS)] = draw(JSON_DOCS)


def _place_marker(draw, doc) -> None:
    """Put MARKER where raw JSON text (hostile numbers, deep nesting) replaces it."""
    tensor = _tensor(draw, doc)
    where = draw(st.sampled_from(["element", "element", "data", "id", "parameter", "shape"]))
    if where == "element" and isinstance(tensor.get("data"), list) and tensor["data"]:
        tensor["data"][draw(st.integers(0, len(tensor["data"]) - 1))] = MARKER
    elif where == "data":
        tensor["data"] = MARKER
    elif where == "id":
        doc["id"] = MARKER
    elif where == "parameter":
        doc["parameters"] = {"binary_data_output": MARKER}
    elif where == "shape":
        tensor["shape"] = [MARKER]


@FUZZ
@given(
    case=valid_requests(),
    data=st.data(),
    count=st.integers(0, 3),
    raw=st.none() | st.sampled_from(RAW_VALUES),
    cut=st.sampled_from([None, None, None, 0, -1, 1, 10**6, "drop", "all"]),
)
def test_near_valid_requests(case, data, count, raw, cut):
    doc, chunks, _ = case
    for _ in range(count):
        _mutate(data.draw, doc, chunks)
    if raw is not None:
        _place_marker(data.draw, doc)
    head = json.dumps(doc).encode().replace(json.dumps(MARKER).encode(), (raw or "0").encode())
    tail = b"".join(chunks.values())
    header_length = len(head) if chunks else None
    if cut == "drop":
        header_length = None
    elif cut == "all":
        header_length = len(head) + len(tail)
    elif cut is not None and header_length is not None:
        header_length += cut
    req = _parse(head + tail, header_length)
    event("parsed" if req is not None else "refused")
    if req is not None:
        _check_request(req)
