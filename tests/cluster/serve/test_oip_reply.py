"""OIP v2 responses (`cluster.serve._oip_reply`): JSON or binary as the client asks, outputs in
the declared datatypes, non-finite scores null in JSON, model metadata; and the real
tritonclient reading every form back. Pure, no Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from cluster.serve._oip import parse_infer_request
from cluster.serve._oip_reply import (
    ALL_OUTPUTS,
    OUTPUTS,
    infer_reply,
    infer_response,
    model_metadata,
)

FEATURES = ["income", "age", "region"]
CATEGORICAL = ["region"]


def _parse(body, header_length=None):
    return parse_infer_request(
        body, features=FEATURES, categorical=CATEGORICAL, header_length=header_length
    )


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


PREDICTIONS = np.array([1, 0, 1], dtype=np.int64)
SCORES = np.array([0.75, 0.25, 0.5], dtype=np.float32)


def _reply(**kwargs):
    return infer_reply(
        model="credit",
        version="3",
        request_id="r1",
        predictions=PREDICTIONS,
        scores=SCORES,
        **kwargs,
    )


def _decode(reply):
    """What tritonclient makes of a reply, as it would over HTTP."""
    assert reply.status == 200
    if isinstance(reply.body, dict):
        body = json.dumps(reply.body, allow_nan=False).encode()  # as Starlette renders it
        return httpclient.InferResult.from_response_body(body)
    length = int(reply.headers["Inference-Header-Content-Length"])
    return httpclient.InferResult.from_response_body(reply.body, header_length=length)


def test_infer_reply_is_json_unless_binary_is_asked_for():
    reply = _reply(headers={"x-request-id": "r1"})
    assert isinstance(reply.body, dict) and reply.headers == {"x-request-id": "r1"}
    assert reply.body == infer_response(
        model="credit", version="3", request_id="r1", predictions=PREDICTIONS, scores=SCORES
    )
    # Binary asked only for an output that is not returned: still JSON.
    reply = _reply(outputs=("scores",), binary_outputs={"predictions"})
    assert isinstance(reply.body, dict) and reply.headers is None


def test_infer_reply_binary_layout():
    reply = _reply(binary_outputs=frozenset(OUTPUTS), headers={"x-request-id": "r1"})
    length = int(reply.headers["Inference-Header-Content-Length"])
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["x-request-id"] == "r1"
    header = json.loads(reply.body[:length])
    assert header["model_name"] == "credit" and header["id"] == "r1"
    assert header["outputs"] == [
        {
            "name": "predictions",
            "datatype": "INT64",
            "shape": [3],
            "parameters": {"binary_data_size": 24},
        },
        {
            "name": "scores",
            "datatype": "FP32",
            "shape": [3],
            "parameters": {"binary_data_size": 12},
        },
    ]
    assert (
        reply.body[length:] == PREDICTIONS.astype("<i8").tobytes() + SCORES.astype("<f4").tobytes()
    )


def test_infer_reply_mixed_and_ordered():
    reply = _reply(outputs=("scores", "predictions"), binary_outputs={"predictions"})
    length = int(reply.headers["Inference-Header-Content-Length"])
    header = json.loads(reply.body[:length])
    assert [o["name"] for o in header["outputs"]] == ["scores", "predictions"]
    assert header["outputs"][0]["data"] == [0.75, 0.25, 0.5]
    assert reply.body[length:] == PREDICTIONS.tobytes()
    result = _decode(reply)
    assert result.as_numpy("predictions").tolist() == [1, 0, 1]
    assert result.as_numpy("scores").tolist() == [0.75, 0.25, 0.5]


def test_infer_reply_casts_to_the_declared_datatypes():
    reply = infer_reply(
        model="m",
        version="1",
        request_id="r",
        predictions=np.array([1, 0], dtype=np.int32),
        scores=np.array([0.5, 0.25], dtype=np.float64),
        binary_outputs=set(OUTPUTS),
    )
    result = _decode(reply)
    assert result.as_numpy("predictions").dtype == np.int64
    assert result.as_numpy("scores").dtype == np.float32
    assert result.as_numpy("scores").tolist() == [0.5, 0.25]


def test_non_finite_scores_are_null_in_json_and_nan_in_binary():
    scores = np.array([np.nan, 0.5, np.inf], dtype=np.float32)
    body = infer_response(
        model="m", version="1", request_id="r", predictions=PREDICTIONS, scores=scores
    )
    assert body["outputs"][1]["data"] == [None, 0.5, None]
    json.dumps(body, allow_nan=False)  # what Starlette's JSONResponse insists on
    reply = infer_reply(
        model="m",
        version="1",
        request_id="r",
        predictions=PREDICTIONS,
        scores=scores,
        binary_outputs={"scores"},
    )
    assert np.isnan(_decode(reply).as_numpy("scores")[0])


def _client_inputs(binary: bool, income_type: str, n: int = 3):
    arrays = [
        (
            "income",
            np.array([50, 61, 7][:n]).astype(httpclient.triton_to_np_dtype(income_type)),
            income_type,
        ),
        ("age", np.array([[30], [40], [50]][:n], dtype=np.int32), "INT32"),
        ("region", np.array(["north", "s\u00fcd", ""][:n], dtype=np.object_), "BYTES"),
    ]
    inputs = []
    for name, arr, datatype in arrays:
        tensor = httpclient.InferInput(name, list(arr.shape), datatype)
        tensor.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(tensor)
    return inputs


OUTPUT_WISHES = {
    "default (all binary)": None,
    "both binary": [("predictions", True), ("scores", True)],
    "scores json, predictions binary": [("scores", False), ("predictions", True)],
    "scores only, json": [("scores", False)],
    "predictions only, binary": [("predictions", True)],
}


@pytest.mark.parametrize("income_type", ["FP32", "FP64", "INT8", "INT64", "UINT16", "FP16"])
@pytest.mark.parametrize("binary_inputs", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("wish", list(OUTPUT_WISHES), ids=list(OUTPUT_WISHES))
def test_tritonclient_round_trip(income_type, binary_inputs, wish):
    """tritonclient builds the request and decodes the reply to the right arrays."""
    outputs = OUTPUT_WISHES[wish]
    requested = None
    if outputs is not None:
        requested = [httpclient.InferRequestedOutput(name, binary_data=b) for name, b in outputs]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        _client_inputs(binary_inputs, income_type), outputs=requested, request_id="q1"
    )
    req = _parse(body, header_length=header_length)
    assert req.columns["income"].tolist() == [50.0, 61.0, 7.0]
    assert req.columns["age"].tolist() == [30.0, 40.0, 50.0]
    assert req.columns["region"].tolist() == ["north", "s\u00fcd", ""]
    names = [name for name, _ in outputs] if outputs else list(OUTPUTS)
    # binary_data_output: every output the model answers goes binary (a multiclass model's
    # probabilities too).
    binary = {name for name, b in outputs if b} if outputs else set(ALL_OUTPUTS)
    assert req.outputs == (tuple(names) if outputs else None)
    assert req.binary_outputs == binary

    reply = infer_reply(
        model="credit",
        version="3",
        request_id="q1",
        predictions=PREDICTIONS,
        scores=SCORES,
        request=req,
    )
    assert isinstance(reply.body, bytes) == bool(binary)
    result = _decode(reply)
    assert result.get_response()["id"] == "q1"
    assert [o["name"] for o in result.get_response()["outputs"]] == names
    expected = {"predictions": PREDICTIONS, "scores": SCORES}
    for name in names:
        got = result.as_numpy(name)
        assert got.dtype == expected[name].dtype and got.tolist() == expected[name].tolist()


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
