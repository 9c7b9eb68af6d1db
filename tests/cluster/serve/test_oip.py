"""OIP v2 parsing (`cluster.serve._oip`): pure, table-driven, no Ray. Responses:
test_oip_reply.py."""

from __future__ import annotations

import json
import math
import struct
import time

import numpy as np
import pytest
import tritonclient.http as httpclient

from appliance.errors import InvalidInput
from cluster.serve._oip import (
    MAX_DEPTH,
    _max_depth,
    file_safe,
    parse_feedback,
    parse_infer_request,
)

FEATURES = ["income", "age", "region"]
CATEGORICAL = ["region"]


def _tensor(name, data, datatype="FP64", shape=None, **extra):
    shape = shape if shape is not None else [len(data)]
    return {"name": name, "shape": shape, "datatype": datatype, "data": data, **extra}


def _body(*tensors, **top) -> bytes:
    return json.dumps({"inputs": list(tensors), **top}).encode()


def _good(n=2, **overrides):
    tensors = {
        "income": _tensor("income", [50.0, 61.5][:n]),
        "age": _tensor("age", [30, 40][:n], "INT64"),
        "region": _tensor("region", ["north", "south"][:n], "BYTES"),
    }
    tensors.update(overrides)
    return [t for t in tensors.values() if t is not None]


def _parse(body, header_length=None):
    return parse_infer_request(
        body, features=FEATURES, categorical=CATEGORICAL, header_length=header_length
    )


# --- valid requests ------------------------------------------------------------------------

VALID = [
    ("flat", _body(*_good()), {"rows": 2}),
    (
        "nested [N,1]",
        _body(*_good(income=_tensor("income", [[50.0], [61.5]], shape=[2, 1]))),
        {"rows": 2},
    ),
    ("FP32", _body(*_good(income=_tensor("income", [50.0, 61.5], "FP32"))), {"rows": 2}),
    ("int categorical", _body(*_good(region=_tensor("region", [1, 2], "INT32"))), {"rows": 2}),
    ("single row", _body(*_good(n=1)), {"rows": 1}),
    ("with id", _body(*_good(), id="req-7"), {"id": "req-7"}),
    ("empty id is none", _body(*_good(), id=""), {"id": None}),
    (
        "outputs subset",
        _body(*_good(), outputs=[{"name": "scores"}]),
        {"outputs": ("scores",)},
    ),
    (
        "binary_data_output",
        _body(*_good(), parameters={"binary_data_output": True}),
        {"binary_outputs": frozenset({"predictions", "scores", "probabilities"}), "outputs": None},
    ),
    (
        "custom parameters pass through",
        _body(*_good(), parameters={"priority": 2, "trace": {"x": [1]}, "s": "\u00e9"}),
        {"parameters": {"priority": 2, "trace": {"x": [1]}, "s": "\u00e9"}},
    ),
    (
        "input parameters ignored",
        _body(*_good(income=_tensor("income", [1.0, 2.0], parameters={"note": "x"}))),
        {"rows": 2},
    ),
    (
        "per-output binary_data wins",
        _body(
            *_good(),
            parameters={"binary_data_output": True},
            outputs=[
                {"name": "scores", "parameters": {"binary_data": False}},
                {"name": "predictions"},
            ],
        ),
        {"outputs": ("scores", "predictions"), "binary_outputs": frozenset({"predictions"})},
    ),
    (
        "output custom parameter",
        _body(*_good(), outputs=[{"name": "scores", "parameters": {"binary_data": True, "k": 1}}]),
        {"outputs": ("scores",), "binary_outputs": frozenset({"scores"})},
    ),
    ("empty outputs is all", _body(*_good(), outputs=[]), {"outputs": None}),
    ("null parameters", _body(*_good(), parameters=None), {"parameters": {}}),
    ("emoji id (a surrogate pair)", _body(*_good(), id="\U0001f600"), {"id": "\U0001f600"}),
    ("lone value for shape [1]", _body(*_good(n=1, income=_tensor("income", 5.0, shape=[1]))), {}),
    (
        "1e308 is finite",
        _body(*_good(income=_tensor("income", [1e308, -1e308]))),
        {"rows": 2},
    ),
    (
        "big int in FP64",
        _body(*_good(income=_tensor("income", [10**30, 1]))),
        {"rows": 2},
    ),
]


@pytest.mark.parametrize(("case", "body", "expect"), VALID, ids=[v[0] for v in VALID])
def test_valid_requests(case, body, expect):
    req = _parse(body)
    for key, value in expect.items():
        assert getattr(req, key) == value, case
    assert set(req.columns) == set(FEATURES)
    assert req.columns["income"].dtype == np.float64
    assert req.columns["age"].dtype == np.float64
    assert req.columns["region"].dtype == object
    assert all(isinstance(v, str) for v in req.columns["region"])


def test_values_are_converted():
    req = _parse(_body(*_good(income=_tensor("income", [None, 2.5]))))
    assert math.isnan(req.columns["income"][0]) and req.columns["income"][1] == 2.5
    assert req.columns["age"].tolist() == [30.0, 40.0]
    assert req.columns["region"].tolist() == ["north", "south"]
    req = _parse(_body(*_good(region=_tensor("region", [1, 2], "INT64"))))
    assert req.columns["region"].tolist() == ["1", "2"]


# --- invalid requests: each message names what was wrong ----------------------------------

INVALID = [
    ("empty body", b"", "empty"),
    ("not json", b"{inputs:", "not valid JSON"),
    ("not utf-8", b"\xff\xfe", "not valid JSON"),
    ("json list", b"[]", "JSON object"),
    ("no inputs", _body(), "'inputs'"),
    ("inputs not a list", json.dumps({"inputs": {}}).encode(), "'inputs'"),
    ("input not an object", json.dumps({"inputs": [1]}).encode(), "inputs[0]"),
    ("nameless input", _body({"shape": [1], "datatype": "FP64", "data": [1]}), "inputs[0]"),
    ("missing feature", _body(*_good(age=None)), "missing input(s) ['age']"),
    ("unknown input", _body(*_good(), _tensor("colour", [1.0, 2.0])), "unknown input 'colour'"),
    ("duplicate input", _body(*_good(), _tensor("income", [1.0, 2.0])), "'income' is given twice"),
    ("bad datatype", _body(*_good(income=_tensor("income", [1, 2], "FLOAT"))), "'FLOAT'"),
    ("missing datatype", _body(*_good(income={"name": "income", "shape": [2]})), "income"),
    ("shape not list", _body(*_good(income=_tensor("income", [1.0, 2.0], shape=2))), "income"),
    ("shape 2-d", _body(*_good(income=_tensor("income", [1.0] * 4, shape=[2, 2]))), "[2, 2]"),
    ("shape negative", _body(*_good(income=_tensor("income", [], shape=[-1]))), "negative"),
    (
        "wrong length",
        _body(*_good(income=_tensor("income", [1.0, 2.0, 3.0], shape=[2]))),
        "input 'income': shape [2] needs 2 values, got 3",
    ),
    ("no data", _body(*_good(income={"name": "income", "shape": [2], "datatype": "FP64"})), "data"),
    (
        "string in numeric",
        _body(*_good(income=_tensor("income", ["50", 60.0]))),
        "input 'income': FP64 data must be numbers, got '50'",
    ),
    ("bool in numeric", _body(*_good(income=_tensor("income", [True, 1.0]))), "'income'"),
    ("float in INT64", _body(*_good(age=_tensor("age", [1.5, 2], "INT64"))), "'age'"),
    ("null in INT64", _body(*_good(age=_tensor("age", [None, 2], "INT64"))), "'age'"),
    ("int out of range", _body(*_good(age=_tensor("age", [300, 2], "INT8"))), "'age'"),
    ("number in BYTES", _body(*_good(region=_tensor("region", [1, "a"], "BYTES"))), "'region'"),
    ("BYTES for numerical", _body(*_good(age=_tensor("age", ["1", "2"], "BYTES"))), "numerical"),
    (
        "float for categorical",
        _body(*_good(region=_tensor("region", [1.0, 2.0], "FP32"))),
        "categorical",
    ),
    (
        "different batch sizes",
        _body(*_good(income=_tensor("income", [1.0, 2.0, 3.0]))),
        "different batch sizes",
    ),
    ("empty batch", _body(*_good(n=0)), "empty"),
    ("id not a string", _body(*_good(), id=7), "'id'"),
    ("id too long", _body(*_good(), id="x" * 300), "'id'"),
    ("unknown output", _body(*_good(), outputs=[{"name": "logits"}]), "'logits'"),
    ("outputs not a list", _body(*_good(), outputs="scores"), "'outputs'"),
    (
        "binary size without binary",
        _body(*_good(income={**_tensor("income", []), "parameters": {"binary_data_size": 16}})),
        "income",
    ),
]


def _with_income(raw_data: str, datatype="FP64", shape="[2]") -> bytes:
    """A valid request whose income data is the raw JSON text `raw_data`."""
    body = _body(*_good(income=_tensor("income", "@", datatype, shape=[])))
    return body.replace(
        b'"shape": [], "datatype": "%s", "data": "@"' % datatype.encode(),
        f'"shape": {shape}, "datatype": "{datatype}", "data": {raw_data}'.encode(),
    )


def _sized(name: str, size, datatype="FP64", n=2) -> dict:
    """An input whose data is binary_data_size bytes of the binary tail."""
    return {
        "name": name,
        "shape": [n],
        "datatype": datatype,
        "parameters": {"binary_data_size": size},
    }


def _deep(depth: int, where: str = "data") -> bytes:
    nested = "[" * depth + "]" * depth
    if where == "data":
        return _with_income(nested)
    return _body(*_good()).replace(b"{", b'{"x": %s, ' % nested.encode(), 1)


# Hostile or malformed in ways a client library never produces; each must be a plain 400.
HOSTILE = [
    ("nested 100k deep in data", _deep(100_000), "levels deep; at most 32"),
    ("nested 100k deep elsewhere", _deep(100_000, "top"), "levels deep"),
    ("objects nested deep", b'{"a":' * 5000 + b"1" + b"}" * 5000, "levels deep"),
    ("data nested 32 deep", _deep(MAX_DEPTH), f"{MAX_DEPTH + 3} levels deep"),
    ("nested data off shape", _with_income("[[1.0], [2.0, 3.0]]", shape="[2, 1]"), "nests lists"),
    ("nested data for [N]", _with_income("[[1.0], [2.0]]"), "nests lists that do not match"),
    ("deep data for [N, 1]", _with_income("[[[1.0]], [[2.0]]]", shape="[2, 1]"), "nests lists"),
    ("1e400 is inf", _with_income("[1e400, 1.0]"), "got inf at index 0"),
    ("-1e400", _with_income("[1.0, -1e400]"), "must be finite numbers"),
    ("NaN literal", _with_income("[NaN, 1.0]"), "got nan at index 0"),
    ("Infinity literal", _with_income("[1.0, Infinity]"), "got inf at index 1"),
    ("-Infinity in FP32", _with_income("[-Infinity, 1.0]", "FP32"), "FP32 data must be finite"),
    ("10**400 in FP64", _with_income("[1%s, 2]" % ("0" * 400)), "out of range for FP64"),
    ("5000 digits", _with_income("[%s, 2]" % ("9" * 5000)), "not valid JSON"),
    ("FP32 overflow", _with_income("[1e39, 1.0]", "FP32"), "out of range for FP32"),
    ("FP16 overflow", _with_income("[70000, 1.0]", "FP16"), "out of range for FP16"),
    ("INT64 overflow", _body(*_good(age=_tensor("age", [2**63, 1], "INT64"))), "range for INT64"),
    ("UINT8 negative", _body(*_good(age=_tensor("age", [-1, 1], "UINT8"))), "range for UINT8"),
    ("huge shape", _with_income("[1.0, 2.0]", shape="[1000000000000000000]"), "needs 10000000"),
    ("huge 2-d shape", _with_income("[1.0]", shape="[1, 1000000000000]"), "not supported"),
    ("negative second dim", _with_income("[1.0]", shape="[1, -1]"), "negative"),
    ("bool dim", _with_income("[1.0, 2.0]", shape="[true]"), "list of integers"),
    ("float dim", _with_income("[1.0, 2.0]", shape="[2.0]"), "list of integers"),
    ("bool in INT64", _body(*_good(age=_tensor("age", [True, 1], "INT64"))), "got True"),
    ("int in BOOL", _body(*_good(age=_tensor("age", [1, 0], "BOOL"))), "BOOL data must be bool"),
    (
        "datatype not a string",
        _body(*_good(income=_tensor("income", [1, 2], ["FP64"]))),
        "datatype",
    ),
    ("id lone surrogate", _body(*_good(), id="a\ud800"), "lone surrogate"),
    (
        "BYTES lone surrogate",
        _body(*_good(region=_tensor("region", ["a", "\udc00"], "BYTES"))),
        "input 'region': BYTES data holds a lone surrogate",
    ),
    ("parameter lone surrogate", _body(*_good(), parameters={"k": "\ud800"}), "lone surrogate"),
    ("utf-16 body", _body(*_good()).decode().encode("utf-16"), "not UTF-8"),
    ("BOM", b"\xef\xbb\xbf" + _body(*_good()), "BOM"),
    ("request parameters a list", _body(*_good(), parameters=[1]), "'parameters' must be an obj"),
    ("request parameters false", _body(*_good(), parameters=False), "'parameters' must be an obj"),
    (
        "binary_data_output a string",
        _body(*_good(), parameters={"binary_data_output": "true"}),
        "'binary_data_output' must be true or false",
    ),
    (
        "binary_data_output 1",
        _body(*_good(), parameters={"binary_data_output": 1}),
        "true or false",
    ),
    (
        "input parameters a string",
        _body(*_good(income=_tensor("income", [1.0, 2.0], parameters="x"))),
        "input 'income': 'parameters' must be an object",
    ),
    (
        "input shared memory",
        _body(
            *_good(income=_tensor("income", [1.0, 2.0], parameters={"shared_memory_region": "r"}))
        ),
        "'shared_memory_region' is not supported",
    ),
    (
        "output parameters a number",
        _body(*_good(), outputs=[{"name": "scores", "parameters": 3}]),
        "output 'scores': 'parameters' must be an object",
    ),
    (
        "output binary_data null",
        _body(*_good(), outputs=[{"name": "scores", "parameters": {"binary_data": None}}]),
        "'binary_data' must be true or false",
    ),
    (
        "output classification",
        _body(*_good(), outputs=[{"name": "scores", "parameters": {"classification": 2}}]),
        "'classification' is not supported",
    ),
    ("output not an object", _body(*_good(), outputs=["scores"]), "outputs[0] must be an object"),
    ("output name a list", _body(*_good(), outputs=[{"name": ["scores"]}]), "unknown output"),
    (
        "output twice",
        _body(*_good(), outputs=[{"name": "scores"}, {"name": "scores"}]),
        "outputs[1]: output 'scores' is asked for twice",
    ),
    (
        "binary_data_size bool",
        _body(*_good(income=_sized("income", True))),
        "binary_data_size must be a non-negative integer, got True",
    ),
    (
        "binary_data_size negative",
        _body(*_good(income=_sized("income", -8))),
        "non-negative",
    ),
    (
        "binary_data_size huge",
        _body(*_good(income=_sized("income", 10**30))),
        "runs past the end",
    ),
    (
        "data and binary_data_size",
        _body(*_good(income=_tensor("income", [1.0, 2.0], parameters={"binary_data_size": 0}))),
        "both 'data' and binary_data_size",
    ),
    ("long value is cut in the message", _with_income('["%s", 1]' % ("x" * 10_000)), "..."),
]
INVALID += HOSTILE


@pytest.mark.parametrize(("case", "body", "message"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_requests(case, body, message):
    with pytest.raises(InvalidInput) as info:
        _parse(body)
    assert message in str(info.value), case


# --- the binary tensor extension -----------------------------------------------------------


def _binary_body(income: bytes, region: bytes, n=2, age=(30, 40)):
    header = {
        "inputs": [
            {
                "name": "income",
                "shape": [n],
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(income)},
            },
            _tensor("age", list(age), "INT64"),
            {
                "name": "region",
                "shape": [n],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(region)},
            },
        ]
    }
    head = json.dumps(header).encode()
    return head + income + region, len(head)


def _bytes_tensor(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_binary_extension():
    income = np.array([50.0, 61.5], dtype="<f4").tobytes()
    body, header_length = _binary_body(income, _bytes_tensor(b"north", "s\xfcd".encode()))
    req = _parse(body, header_length=header_length)
    assert req.columns["income"].tolist() == [50.0, 61.5]
    assert req.columns["region"].tolist() == ["north", "s\xfcd"]


BINARY_INVALID = [
    ("size mismatch", np.zeros(3, "<f4").tobytes(), _bytes_tensor(b"a", b"b"), None, "income"),
    ("bytes count", np.zeros(2, "<f4").tobytes(), _bytes_tensor(b"a"), None, "'region'"),
    ("bytes truncated", np.zeros(2, "<f4").tobytes(), b"\x05\x00\x00\x00ab", None, "'region'"),
    ("bytes not utf-8", np.zeros(2, "<f4").tobytes(), _bytes_tensor(b"\xff", b"a"), None, "UTF-8"),
    ("header length past body", b"", b"", 10**6, "Inference-Header-Content-Length"),
    ("header length negative", b"", b"", -1, "Inference-Header-Content-Length"),
]


@pytest.mark.parametrize(
    ("case", "income", "region", "header_length", "message"),
    BINARY_INVALID,
    ids=[v[0] for v in BINARY_INVALID],
)
def test_binary_invalid(case, income, region, header_length, message):
    body, length = _binary_body(income, region)
    with pytest.raises(InvalidInput) as info:
        _parse(body, header_length=length if header_length is None else header_length)
    assert message in str(info.value), case


def test_trailing_binary_bytes_rejected():
    body = _body(*_good())
    with pytest.raises(InvalidInput, match="belong to no input"):
        _parse(body + b"junk", header_length=len(body))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_request_bodies_parse(binary):
    """What tritonclient.http actually sends, in both of its forms, parses."""
    inputs = []
    for name, arr, datatype in [
        ("income", np.array([50.0, 61.5], dtype=np.float32), "FP32"),
        ("age", np.array([[30], [40]], dtype=np.int64), "INT64"),
        ("region", np.array(["north", "south"], dtype=np.object_), "BYTES"),
    ]:
        tensor = httpclient.InferInput(name, list(arr.shape), datatype)
        tensor.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tensor)
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        inputs, request_id="abc"
    )
    req = _parse(body, header_length=header_length)
    assert (header_length is not None) == binary
    assert req.id == "abc" and req.rows == 2
    assert req.columns["age"].tolist() == [30.0, 40.0]
    assert req.columns["region"].tolist() == ["north", "south"]


def _binary_request(chunks: dict, head_extra=None):
    """A binary-extension body with each input of `chunks` (name -> (datatype, bytes, n))."""
    inputs = [_sized(name, len(raw), datatype, n) for name, (datatype, raw, n) in chunks.items()]
    head = json.dumps({"inputs": inputs, **(head_extra or {})}).encode()
    return head + b"".join(raw for _, raw, _ in chunks.values()), len(head)


def _binary_good(**chunks):
    base = {
        "income": ("FP64", np.array([1.0, 2.0], "<f8").tobytes(), 2),
        "age": ("INT64", np.array([30, 40], "<i8").tobytes(), 2),
        "region": ("BYTES", _bytes_tensor(b"a", b"b"), 2),
    }
    return _binary_request({**base, **chunks})


BINARY_HOSTILE = [
    ("FP32 inf", {"income": ("FP32", np.array([np.inf, 1], "<f4").tobytes(), 2)}, "got inf"),
    ("FP64 -inf", {"income": ("FP64", np.array([1, -np.inf], "<f8").tobytes(), 2)}, "index 1"),
    ("FP16 inf", {"income": ("FP16", np.array([1, np.inf], "<f2").tobytes(), 2)}, "finite"),
    ("BOOL byte 2", {"age": ("BOOL", b"\x01\x02", 2)}, "BOOL binary data must be bytes 0 or 1"),
    ("huge shape", {"income": ("FP64", b"\0" * 16, 10**18)}, "does not hold"),
    ("BYTES huge length", {"region": ("BYTES", b"\xff\xff\xff\xff" + b"ab", 2)}, "overruns"),
    (
        "BYTES surrogate bytes",
        {"region": ("BYTES", _bytes_tensor(b"\xed\xa0\x80", b"a"), 2)},
        "not UTF-8",
    ),
    ("BYTES for numerical", {"income": ("BYTES", _bytes_tensor(b"1", b"2"), 2)}, "numerical"),
]


@pytest.mark.parametrize(
    ("case", "chunks", "message"), BINARY_HOSTILE, ids=[v[0] for v in BINARY_HOSTILE]
)
def test_binary_hostile(case, chunks, message):
    body, length = _binary_good(**chunks)
    with pytest.raises(InvalidInput) as info:
        _parse(body, header_length=length)
    assert message in str(info.value), case


def test_binary_nan_is_a_missing_value():
    """Binary floats have no null: NaN is how a binary client sends a missing value."""
    body, length = _binary_good(income=("FP32", np.array([np.nan, 1], "<f4").tobytes(), 2))
    assert np.isnan(_parse(body, header_length=length).columns["income"][0])


@pytest.mark.parametrize(
    ("header_length", "message"),
    [
        (0, "request JSON header is empty"),
        (5, "request JSON header is not valid JSON"),
        (True, "Inference-Header-Content-Length True"),
        (1.5, "Inference-Header-Content-Length 1.5"),
        (-1, "Inference-Header-Content-Length -1"),
    ],
)
def test_header_length_edges(header_length, message):
    body, _ = _binary_good()
    with pytest.raises(InvalidInput, match=message):
        _parse(body, header_length=header_length)


def test_header_length_of_whole_json_body():
    body = _body(*_good())
    assert _parse(body, header_length=len(body)).rows == 2


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[[[]]]", 3),
        (b'{"a": [{"b": []}]}', 4),
        (b'["[[[[", "]]"]', 1),
        (b'["\\"", [[]]]', 3),  # an escaped quote does not end the string
        (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote
        (b'["\\\\\\"[[["]', 1),
        (b"]]]][", 0),  # the document ended at the first closer
    ],
)
def test_max_depth(text, depth):
    assert _max_depth(text) == depth


def test_depth_limit_is_exact():
    def body(k):
        return _body(*_good(), parameters={"x": json.loads("[" * k + "]" * k)})

    assert _parse(body(MAX_DEPTH - 2)).parameters["x"] is not None
    with pytest.raises(InvalidInput, match=f"{MAX_DEPTH + 1} levels deep"):
        _parse(body(MAX_DEPTH - 1))


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "' + b'\\"' * 500_000 + b'"}',  # quadratic for a naive string regex
        b"[" * 1_000_000,
        b'"' + b"\\" * 1_000_000 + b'"',
    ],
    ids=["escaped quotes", "open brackets", "backslashes"],
)
def test_depth_scan_is_linear(body):
    start = time.perf_counter()
    with pytest.raises(InvalidInput):
        _parse(body)
    assert time.perf_counter() - start < 5  # megabytes: linear is milliseconds


# --- responses and metadata ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_id", "expected"),
    [("abc-123_X", "abc-123_X"), ("../../etc/passwd", "______etc_passwd"), ("", "_")],
)
def test_file_safe(request_id, expected):
    assert file_safe(request_id) == expected
    assert len(file_safe("x" * 200)) == 64


# --- feedback ------------------------------------------------------------------------------

FEEDBACK_VALID = [
    ({"request_id": "r1", "labels": [1, 0, 1]}, [0, 1, 2], [1, 0, 1]),
    ({"request_id": "r1", "row": 4, "label": 0}, [4], [0]),
]


@pytest.mark.parametrize(("doc", "rows", "labels"), FEEDBACK_VALID)
def test_feedback_valid(doc, rows, labels):
    fb = parse_feedback(json.dumps(doc).encode())
    assert fb.request_id == "r1"
    assert fb.rows.tolist() == rows and fb.rows.dtype == np.int32
    assert fb.labels.tolist() == labels and fb.labels.dtype == np.int64


FEEDBACK_INVALID = [
    (b"", "empty"),
    (b"nope", "not valid JSON"),
    (b"[1]", "JSON object"),
    (json.dumps({"labels": [1]}).encode(), "'request_id'"),
    (json.dumps({"request_id": 5, "labels": [1]}).encode(), "'request_id'"),
    (json.dumps({"request_id": "r"}).encode(), "either 'labels'"),
    (json.dumps({"request_id": "r", "labels": [1], "row": 0, "label": 1}).encode(), "not both"),
    (json.dumps({"request_id": "r", "labels": []}).encode(), "'labels'"),
    (json.dumps({"request_id": "r", "labels": [1, 2]}).encode(), "labels[1]"),
    (json.dumps({"request_id": "r", "labels": [True]}).encode(), "labels[0]"),
    (json.dumps({"request_id": "r", "row": -1, "label": 1}).encode(), "'row'"),
    (json.dumps({"request_id": "r", "row": 0}).encode(), "'label'"),
    (b'{"request_id": "r", "labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "levels deep"),
    (b'{"request_id": "\\udfff", "labels": [1]}', "lone surrogate"),
    (b'{"request_id": "r", "labels": [NaN]}', "got nan"),
    (b'{"request_id": "r", "labels": [[1]]}', "labels[0]"),
    (b'{"request_id": "r", "row": 1e400, "label": 1}', "'row'"),
    (b'{"request_id": "r", "row": Infinity, "label": 1}', "'row'"),
    (b'{"request_id": "r", "row": 2147483648, "label": 1}', "'row'"),
    (b'{"request_id": "r", "row": 0, "label": 1' + b"0" * 5000 + b"}", "not valid JSON"),
    (b'{"request_id": "r\xff", "labels": [1]}', "not UTF-8"),
]


@pytest.mark.parametrize(("body", "message"), FEEDBACK_INVALID)
def test_feedback_invalid(body, message):
    with pytest.raises(InvalidInput) as info:
        parse_feedback(body)
    assert message in str(info.value)
