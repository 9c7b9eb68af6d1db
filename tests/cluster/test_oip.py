"""OIP v2 parsing and response building: pure, table-driven, no Ray."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient

from appliance.errors import InvalidInput
from cluster.serve._oip import (
    file_safe,
    infer_response,
    model_metadata,
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
    ("parameters ignored", _body(*_good(), parameters={"binary_data_output": True}), {"rows": 2}),
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


# --- responses and metadata ----------------------------------------------------------------


def test_infer_response_shape():
    body = infer_response(
        model="credit",
        version="3",
        request_id="r1",
        predictions=np.array([1, 0], dtype=np.int64),
        scores=np.array([0.75, 0.25], dtype=np.float32),
    )
    assert body["model_name"] == "credit" and body["model_version"] == "3" and body["id"] == "r1"
    assert body["outputs"] == [
        {"name": "predictions", "datatype": "INT64", "shape": [2], "data": [1, 0]},
        {"name": "scores", "datatype": "FP32", "shape": [2], "data": [0.75, 0.25]},
    ]
    only = infer_response(
        model="m",
        version="1",
        request_id="r",
        predictions=np.array([1]),
        scores=np.array([0.5], dtype=np.float32),
        outputs=("scores",),
    )
    assert [o["name"] for o in only["outputs"]] == ["scores"]
    # tritonclient reads a JSON response whatever output form it asked for.
    result = httpclient.InferenceServerClient.parse_response_body(json.dumps(body).encode())
    assert result.as_numpy("predictions").tolist() == [1, 0]


def test_model_metadata():
    meta = model_metadata(model="credit", version="1", features=FEATURES, categorical=CATEGORICAL)
    assert meta["name"] == "credit" and meta["versions"] == ["1"]
    assert meta["platform"] == "appliance-torch"
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("income", "FP64"),
        ("age", "FP64"),
        ("region", "BYTES"),
    ]
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "scores"]


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
]


@pytest.mark.parametrize(("body", "message"), FEEDBACK_INVALID)
def test_feedback_invalid(body, message):
    with pytest.raises(InvalidInput) as info:
        parse_feedback(body)
    assert message in str(info.value)
