"""KServe v2 gRPC <-> HTTP conversions: real tritonclient.grpc messages, no server, no Ray."""

from __future__ import annotations

import json
import math
import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc._utils import _get_inference_request

from appliance.errors import InvalidInput
from cluster.serve._grpc import (
    bearer_token,
    grpc_error,
    grpc_status_for,
    http_to_infer_response,
    infer_request_to_http,
    model_metadata_response,
    model_ready_response,
    repository_index_response,
    server_live_response,
    server_metadata_response,
    server_ready_response,
    version_or_none,
)
from cluster.serve._oip import infer_response, model_metadata, parse_infer_request

FEATURES = ["income", "age", "region"]
CATEGORICAL = ["region"]


def _input(name, arr, datatype):
    tensor = grpcclient.InferInput(name, list(arr.shape), datatype)
    tensor.set_data_from_numpy(arr)
    return tensor


def _request(inputs, *, outputs=None, request_id="", parameters=None, **kwargs):
    """A ModelInferRequest exactly as InferenceServerClient.infer builds it."""
    args = {
        "model_name": "credit",
        "inputs": inputs,
        "model_version": "",
        "request_id": request_id,
        "outputs": outputs,
        "sequence_id": 0,
        "sequence_start": False,
        "sequence_end": False,
        "priority": 0,
        "timeout": None,
        "parameters": parameters,
    }
    args.update(kwargs)
    return _get_inference_request(**args)


def _inputs(n=2, *, income_dt="FP64", age_dt="INT64", shape=None):
    income = np.array([50.25, 61.5, 12.0][:n], dtype=np.float64 if income_dt == "FP64" else "f4")
    age = np.array([30, 40, 50][:n], dtype=np.int64 if age_dt == "INT64" else np.int32)
    region = np.array([b"north", "s\u00fcd".encode(), b"east"][:n], dtype=object)
    if shape == "Nx1":
        income, age, region = income[:, None], age[:, None], region[:, None]
    return [
        _input("income", income, income_dt),
        _input("age", age, age_dt),
        _input("region", region, "BYTES"),
    ]


def _parse(req):
    body, header_length = infer_request_to_http(req)
    return parse_infer_request(
        body, features=FEATURES, categorical=CATEGORICAL, header_length=header_length
    )


def _header(req) -> dict:
    body, header_length = infer_request_to_http(req)
    return json.loads(body[:header_length] if header_length is not None else body)


# --- requests: real client messages parse as the HTTP ones do -------------------------------


@pytest.mark.parametrize("shape", [None, "Nx1"], ids=["[N]", "[N,1]"])
@pytest.mark.parametrize(
    ("income_dt", "age_dt"), [("FP64", "INT64"), ("FP32", "INT32")], ids=["FP64", "FP32"]
)
def test_raw_inputs_parse(shape, income_dt, age_dt):
    req = _parse(_request(_inputs(shape=shape, income_dt=income_dt, age_dt=age_dt)))
    assert req.rows == 2
    np.testing.assert_array_equal(req.columns["income"], [50.25, 61.5])
    assert req.columns["income"].dtype == np.float64
    np.testing.assert_array_equal(req.columns["age"], [30.0, 40.0])
    assert req.columns["region"].tolist() == ["north", "s\u00fcd"]
    assert req.id is None and req.outputs is None


def test_fp32_values_stay_exact():
    values = np.array([0.1, 1e-30, 3.4e38], dtype=np.float32)
    req = _request(
        [
            _input("income", values, "FP32"),
            _input("age", np.array([1, 2, 3], dtype=np.int64), "INT64"),
            _input("region", np.array([b"a", b"b", b"c"], dtype=object), "BYTES"),
        ]
    )
    np.testing.assert_array_equal(_parse(req).columns["income"], values.astype(np.float64))


def test_nan_survives():
    income = np.array([math.nan, 1.0])
    req = _request(
        [
            _input("income", income, "FP64"),
            _input("age", np.array([1, 2], dtype=np.int64), "INT64"),
            _input("region", np.array([b"a", b"b"], dtype=object), "BYTES"),
        ]
    )
    assert np.isnan(_parse(req).columns["income"][0])


def test_body_is_binary_extension_asking_for_json_outputs():
    req = _request(_inputs(), outputs=[grpcclient.InferRequestedOutput("scores")])
    body, header_length = infer_request_to_http(req)
    header = json.loads(body[:header_length])
    sizes = [t["parameters"]["binary_data_size"] for t in header["inputs"]]
    assert sizes == [16, 16, 4 + 5 + 4 + 4]
    assert len(body) == header_length + sum(sizes)
    assert header["parameters"]["binary_data_output"] is False
    assert header["outputs"] == [{"name": "scores", "parameters": {"binary_data": False}}]
    assert [t["shape"] for t in header["inputs"]] == [[2], [2], [2]]


def test_id_and_outputs_carried():
    req = _request(
        _inputs(),
        request_id="req-42",
        outputs=[
            grpcclient.InferRequestedOutput("scores"),
            grpcclient.InferRequestedOutput("predictions"),
        ],
    )
    parsed = _parse(req)
    assert parsed.id == "req-42"
    assert parsed.outputs == ("scores", "predictions")


def test_parameters_carried_as_json():
    req = _request(
        _inputs(),
        parameters={"tag": "batch-7", "strict": True, "limit": 5, "ratio": 0.5},
        priority=3,
        timeout=1000,
    )
    params = _header(req)["parameters"]
    assert params == {
        "tag": "batch-7",
        "strict": True,
        "limit": 5,
        "ratio": 0.5,
        "priority": 3,
        "timeout": 1000,
        "binary_data_output": False,
    }


def test_client_binary_output_wish_is_overridden():
    req = _request(_inputs())
    req.parameters["binary_data_output"].bool_param = True
    req.outputs.add(name="scores").parameters["binary_data"].bool_param = True
    header = _header(req)
    assert header["parameters"]["binary_data_output"] is False
    assert header["outputs"][0]["parameters"] == {"binary_data": False}


def test_input_parameters_carried():
    req = _request(_inputs())
    req.inputs[0].parameters["unit"].string_param = "EUR"
    req.inputs[0].parameters["binary_data_size"].int64_param = 999  # ours to set
    params = _header(req)["inputs"][0]["parameters"]
    assert params == {"unit": "EUR", "binary_data_size": 16}


def _typed(income_field, income_values, income_dt="FP64", age=None, region=None):
    req = pb.ModelInferRequest(model_name="credit", id="typed")
    n = len(income_values)
    t = req.inputs.add(name="income", datatype=income_dt, shape=[n])
    getattr(t.contents, income_field).extend(income_values)
    t = req.inputs.add(name="age", datatype="INT64", shape=[n, 1])
    t.contents.int64_contents.extend(age if age is not None else range(n))
    t = req.inputs.add(name="region", datatype="BYTES", shape=[n])
    t.contents.bytes_contents.extend(region if region is not None else [b"x"] * n)
    return req


@pytest.mark.parametrize(
    ("field", "datatype", "values", "expected"),
    [
        ("fp64_contents", "FP64", [1.5, -2.25], [1.5, -2.25]),
        ("fp32_contents", "FP32", [0.5, 0.1], [0.5, float(np.float32(0.1))]),
        ("int64_contents", "INT64", [2**40, -3], [2.0**40, -3.0]),
        ("int_contents", "INT32", [7, -8], [7.0, -8.0]),
        ("int_contents", "INT8", [127, -128], [127.0, -128.0]),
        ("uint_contents", "UINT16", [65535, 0], [65535.0, 0.0]),
        ("uint64_contents", "UINT64", [2**63, 1], [2.0**63, 1.0]),
    ],
)
def test_typed_contents_parse(field, datatype, values, expected):
    parsed = _parse(_typed(field, values, datatype, region=[b"n", "\u00e9".encode()]))
    np.testing.assert_array_equal(parsed.columns["income"], expected)
    np.testing.assert_array_equal(parsed.columns["age"], [0.0, 1.0])
    assert parsed.columns["region"].tolist() == ["n", "\u00e9"]
    assert parsed.id == "typed"


def test_typed_integer_categorical_becomes_strings():
    req = _typed("fp64_contents", [1.0, 2.0])
    region = req.inputs[2]
    region.datatype = "INT32"
    region.contents.Clear()
    region.contents.int_contents.extend([3, 4])
    assert _parse(req).columns["region"].tolist() == ["3", "4"]


def test_no_inputs_is_plain_json_and_the_parser_rejects_it():
    body, header_length = infer_request_to_http(pb.ModelInferRequest(model_name="credit"))
    assert header_length is None
    with pytest.raises(InvalidInput, match="non-empty list"):
        parse_infer_request(body, features=FEATURES, categorical=CATEGORICAL)


def test_version_or_none():
    assert version_or_none("") is None
    assert version_or_none("3") == "3"


# --- bad requests ---------------------------------------------------------------------------


def _with_extra_raw():
    req = _request(_inputs())
    req.raw_input_contents.append(b"\0" * 8)
    return req


def _with_missing_raw():
    req = _request(_inputs())
    del req.raw_input_contents[-1]
    return req


def _raw_and_typed():
    req = _request(_inputs())
    req.inputs[0].contents.fp64_contents.extend([1.0, 2.0])
    return req


def _wrong_field():
    return _typed("fp32_contents", [1.0, 2.0], "FP64")


def _two_fields():
    req = _typed("fp64_contents", [1.0, 2.0])
    req.inputs[0].contents.int64_contents.extend([1, 2])
    return req


def _short_contents():
    req = _typed("fp64_contents", [1.0, 2.0])
    req.inputs[1].shape[:] = [3]
    return req


def _fp16_typed():
    return _typed("fp32_contents", [1.0, 2.0], "FP16")


def _unknown_datatype_typed():
    return _typed("fp64_contents", [1.0, 2.0], "COMPLEX")


def _no_data():
    req = _typed("fp64_contents", [1.0, 2.0])
    req.inputs[0].contents.Clear()
    return req


def _out_of_range():
    return _typed("int_contents", [300, 1], "INT8")


def _raw_wrong_size():
    req = _request(_inputs())
    req.raw_input_contents[0] = b"\0" * 12
    return req


def _negative_shape():
    req = _typed("fp64_contents", [1.0, 2.0])
    req.inputs[0].shape[:] = [-1]
    return req


def _shared_memory_input():
    tensor = grpcclient.InferInput("income", [2], "FP64")
    tensor.set_shared_memory("region0", 16)
    return _request([tensor])


def _shared_memory_output():
    out = grpcclient.InferRequestedOutput("scores")
    out.set_shared_memory("region0", 8)
    return _request(_inputs(), outputs=[out])


def _empty_parameter():
    req = _request(_inputs())
    req.parameters["tag"].SetInParent()
    return req


BAD = [
    ("more raw than inputs", _with_extra_raw, r"4 raw_input_contents for 3 input"),
    ("fewer raw than inputs", _with_missing_raw, r"2 raw_input_contents for 3 input"),
    ("raw and typed", _raw_and_typed, r"'income' has typed contents but .* raw_input_contents"),
    ("wrong contents field", _wrong_field, r"'income' is FP64 but sets contents.fp32_contents"),
    ("two contents fields", _two_fields, r"sets contents.int64_contents, contents.fp64_contents"),
    ("contents count", _short_contents, r"'age': shape \[3\] needs 3 values, .* has 2"),
    ("FP16 typed", _fp16_typed, r"'FP16' has no typed contents field"),
    ("unknown datatype", _unknown_datatype_typed, r"'COMPLEX' has no typed contents field"),
    ("no data", _no_data, r"'income' has no data"),
    ("out of range", _out_of_range, r"out of range for INT8 \[-128, 127\]"),
    ("raw size", _raw_wrong_size, r"raw_input_contents\[0\] has 12 bytes; .* needs 16"),
    ("negative shape", _negative_shape, r"shape \[-1\] has a negative dimension"),
    ("shared memory input", _shared_memory_input, r"input 'income' uses shared memory"),
    ("shared memory output", _shared_memory_output, r"output 'scores' uses shared memory"),
    ("empty parameter", _empty_parameter, r"parameter 'tag' has no value"),
]


@pytest.mark.parametrize(("build", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_request(build, message):
    with pytest.raises(InvalidInput, match=message):
        infer_request_to_http(build())


def test_bad_bytes_reach_the_parser_error():
    req = _request(_inputs())
    req.raw_input_contents[2] = struct.pack("<I", 50) + b"abc"
    with pytest.raises(InvalidInput, match="overruns"):
        _parse(req)


# --- responses: tritonclient.grpc decodes what we build -------------------------------------


def _reply(outputs=None, n=3):
    return infer_response(
        model="credit",
        version="2",
        request_id="req-9",
        predictions=np.array([1, 0, 1][:n], dtype=np.int64),
        scores=np.array([0.875, 0.125, 0.5][:n], dtype=np.float32),
        outputs=outputs,
    )


def test_infer_response_decodes_with_tritonclient():
    # Through JSON and back, as the replica's reply travels.
    body = json.loads(json.dumps(_reply()))
    resp = http_to_infer_response("credit", body)
    assert (resp.model_name, resp.model_version, resp.id) == ("credit", "2", "req-9")
    result = grpcclient.InferResult(resp)
    scores = result.as_numpy("scores")
    assert scores.dtype == np.float32 and scores.shape == (3,)
    np.testing.assert_array_equal(scores, [0.875, 0.125, 0.5])
    predictions = result.as_numpy("predictions")
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, [1, 0, 1])
    assert result.get_output("scores").datatype == "FP32"


def test_infer_response_keeps_requested_order():
    resp = http_to_infer_response("credit", _reply(outputs=["scores"]))
    result = grpcclient.InferResult(resp)
    assert [o.name for o in resp.outputs] == ["scores"]
    assert result.as_numpy("predictions") is None
    np.testing.assert_array_equal(result.as_numpy("scores"), [0.875, 0.125, 0.5])


def test_infer_response_nested_bytes_and_null():
    body = {
        "model_name": "credit",
        "model_version": "1",
        "outputs": [
            {
                "name": "labels",
                "datatype": "BYTES",
                "shape": [2, 1],
                "data": [["yes"], ["n\u00f6"]],
            },
            {"name": "scores", "datatype": "FP64", "shape": [2], "data": [None, 0.25]},
        ],
        "parameters": {"cached": True},
    }
    resp = http_to_infer_response("fallback", body)
    result = grpcclient.InferResult(resp)
    labels = result.as_numpy("labels")
    assert labels.shape == (2, 1)
    assert labels[:, 0].tolist() == [b"yes", "n\u00f6".encode()]
    scores = result.as_numpy("scores")
    assert math.isnan(scores[0]) and scores[1] == 0.25
    assert resp.id == "" and resp.parameters["cached"].bool_param is True


def test_infer_response_model_fallback():
    body = _reply()
    del body["model_name"]
    assert http_to_infer_response("credit", body).model_name == "credit"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\0binary", "not a JSON object"),
        (
            {"outputs": [{"name": "s", "datatype": "FP32", "shape": [2], "parameters": {}}]},
            "has no 'data'",
        ),
        (
            {"outputs": [{"name": "s", "datatype": "FP32", "shape": [3], "data": [1.0]}]},
            "needs 3 values, data has 1",
        ),
        ({"outputs": [{"name": "s", "datatype": "X", "shape": [1], "data": [1]}]}, "'X'"),
        ({"outputs": [{"name": "s", "datatype": "FP32", "shape": "2", "data": [1]}]}, "shape"),
    ],
)
def test_bad_reply_is_a_server_error(body, message):
    with pytest.raises(ValueError, match=message):
        http_to_infer_response("credit", body)


# --- metadata, readiness, server ------------------------------------------------------------


def test_model_metadata_response():
    body = model_metadata(model="credit", version="2", features=FEATURES, categorical=CATEGORICAL)
    resp = model_metadata_response(json.loads(json.dumps(body)))
    assert resp.name == "credit" and list(resp.versions) == ["2"]
    assert resp.platform == "appliance-torch"
    assert [(t.name, t.datatype, list(t.shape)) for t in resp.inputs] == [
        ("income", "FP64", [-1]),
        ("age", "FP64", [-1]),
        ("region", "BYTES", [-1]),
    ]
    assert [t.name for t in resp.outputs] == ["predictions", "scores"]


def test_ready_live_and_server_metadata():
    assert model_ready_response({"name": "credit", "version": "2", "ready": True}).ready
    assert not model_ready_response({"name": "credit", "version": "2", "ready": False}).ready
    assert server_live_response().live and not server_live_response(False).live
    assert server_ready_response().ready
    meta = server_metadata_response(
        {"name": "appliance", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    )
    assert (meta.name, meta.version, list(meta.extensions)) == (
        "appliance",
        "0.1.0",
        ["binary_tensor_data"],
    )


def test_repository_index_response():
    resp = repository_index_response(
        [{"name": "credit", "version": "2", "state": "READY"}, {"name": "churn"}]
    )
    assert [(m.name, m.version, m.state, m.reason) for m in resp.models] == [
        ("credit", "2", "READY", ""),
        ("churn", "", "", ""),
    ]


# --- status codes and tokens ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (200, grpc.StatusCode.OK),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (409, grpc.StatusCode.ABORTED),
        (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (418, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.UNAVAILABLE),
        (500, grpc.StatusCode.INTERNAL),
        (503, grpc.StatusCode.UNAVAILABLE),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (507, grpc.StatusCode.INTERNAL),
    ],
)
def test_grpc_status_for(status, code):
    assert grpc_status_for(status) is code


def test_grpc_error():
    assert grpc_error(401, {"error": "bad token"}) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "bad token",
    )
    assert grpc_error(500, {}) == (grpc.StatusCode.INTERNAL, "the model answered HTTP 500")


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "Bearer s3cret"),), "s3cret"),
        ([("user-agent", "grpc-python"), ("authorization", "bearer  t ")], "t"),
        ({"Authorization": "Bearer abc"}, "abc"),
        ((("authorization", b"Bearer raw"),), "raw"),
        ((("authorization", "Basic dXNlcg=="),), None),
        ((("authorization", "Bearer "),), None),
        ((("x-other", "Bearer t"),), None),
        ((), None),
        (None, None),
    ],
)
def test_bearer_token(metadata, token):
    assert bearer_token(metadata) == token


def test_bearer_token_from_client_headers():
    # What InferenceServerClient(..., headers=...) turns into call metadata.
    client = grpcclient.InferenceServerClient("localhost:1")
    try:
        metadata = client._get_metadata({"authorization": "Bearer from-client"})
    finally:
        client.close()
    assert bearer_token(metadata) == "from-client"


# --- over a real channel: plain grpcio server on loopback, no Ray ---------------------------


def test_round_trip_over_a_real_channel():
    from concurrent import futures

    from tritonclient.grpc import service_pb2_grpc
    from tritonclient.utils import InferenceServerException

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
        def ModelInfer(self, request, context):
            if bearer_token(context.invocation_metadata()) != "t0k":
                code, details = grpc_error(401, {"error": "bad token"})
                context.set_code(code)
                context.set_details(details)
                return pb.ModelInferResponse()
            body, header_length = infer_request_to_http(request)
            parsed = parse_infer_request(
                body, features=FEATURES, categorical=CATEGORICAL, header_length=header_length
            )
            reply = infer_response(
                model=request.model_name,
                version="1",
                request_id=parsed.id or "made-up",
                predictions=(parsed.columns["income"] > 55).astype(np.int64),
                scores=parsed.columns["age"].astype(np.float32),
                outputs=parsed.outputs,
            )
            return http_to_infer_response(request.model_name, reply)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        result = client.infer(
            "credit", _inputs(shape="Nx1"), request_id="r1", headers={"authorization": "Bearer t0k"}
        )
        np.testing.assert_array_equal(result.as_numpy("predictions"), [0, 1])
        np.testing.assert_array_equal(result.as_numpy("scores"), [30.0, 40.0])
        assert (result.get_response().id, result.get_response().model_version) == ("r1", "1")
        with pytest.raises(InferenceServerException) as info:
            client.infer("credit", _inputs(), headers={"authorization": "Bearer wrong"})
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        assert info.value.message() == "bad token"
    finally:
        client.close()
        server.stop(0)
