"""KServe v2 over gRPC at the ingress (`cluster.serve._grpc_front`), called as Serve's gRPC
proxy calls it: the real ingress in this process, real protobuf messages built as
tritonclient.grpc builds them, and Ray's own `RayServegRPCContext` for the call's metadata and
status. The model's primary is a real `ModelServer` replica behind a stand-in handle; Serve's
controller is stood in for (conftest.py, serve_stand_ins.py). The message conversions alone:
test_grpc_convert.py. Through a real Serve gRPC proxy with tritonclient:
tests/cluster/test_serve_hardening.py::test_grpc_with_tritonclient."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from ray.serve.grpc_util import RayServegRPCContext
from serve_helpers import ADMIN_TOKEN, MODEL, TOKEN, columns, logged_rows
from serve_stand_ins import Handle
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc._utils import _get_inference_request

from cluster.serve._grpc_front import _server_version
from cluster.serve._ingress import model_app_name


class _ProxyContext:
    """What Serve's gRPC proxy hands `RayServegRPCContext`: grpc's servicer context of the
    call (which only a running gRPC server has), here with the call's metadata."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata

    def auth_context(self):
        return {}

    def code(self):
        return None

    def details(self):
        return None

    def peer(self):
        return "ipv4:127.0.0.1:50000"

    def peer_identities(self):
        return None

    def peer_identity_key(self):
        return None

    def trailing_metadata(self):
        return []


def _context(token: str | None = TOKEN) -> RayServegRPCContext:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return RayServegRPCContext(_ProxyContext(metadata))


def _infer_request(n: int, *, model: str = MODEL, version: str = "", request_id: str = ""):
    """A ModelInferRequest exactly as InferenceServerClient.infer builds it."""
    cols = columns(n, seed=2)
    inputs = []
    for name, values in cols.items():
        if values.dtype == object:
            tensor = grpcclient.InferInput(name, [n], "BYTES")
            tensor.set_data_from_numpy(values.astype(np.object_))
        else:
            tensor = grpcclient.InferInput(name, [n], "FP64")
            tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return _get_inference_request(
        model_name=model, inputs=inputs, model_version=version, request_id=request_id,
        outputs=None, sequence_id=0, sequence_start=False, sequence_end=False, priority=0,
        timeout=None, parameters=None)


@pytest.fixture
def served(make_ingress, make_server, controller):
    """The ingress, with MODEL version 1's primary deployed behind it."""
    controller.apps[model_app_name(MODEL)] = Handle(make_server("1"))
    return make_ingress()


def _call(coro):
    return asyncio.run(coro)


def test_server_live_ready_and_metadata_need_no_token(served):
    ctx = _context(None)
    assert _call(served.ServerLive(pb.ServerLiveRequest(), ctx)).live
    assert _call(served.ServerReady(pb.ServerReadyRequest(), ctx)).ready
    meta = _call(served.ServerMetadata(pb.ServerMetadataRequest(), ctx))
    assert (meta.name, meta.version) == ("appliance", _server_version())
    assert list(meta.extensions) == ["binary_tensor_data", "model_repository"]
    assert ctx.code() is None  # nothing set: OK


def test_model_metadata_and_readiness_reach_the_primary(served):
    ctx = _context()
    meta = _call(served.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), ctx))
    assert meta.name == MODEL and list(meta.versions) == ["1"]
    assert [i.name for i in meta.inputs] == ["income", "age", "region"]
    ready = _call(served.ModelReady(pb.ModelReadyRequest(name=MODEL, version="1"), ctx))
    assert ready.ready and ctx.code() is None


@pytest.mark.parametrize(
    ("token", "name", "version", "code", "details"),
    [
        (None, MODEL, "", grpc.StatusCode.UNAUTHENTICATED, "missing bearer token"),
        ("wrong", MODEL, "", grpc.StatusCode.UNAUTHENTICATED, "unknown, revoked or expired"),
        (TOKEN, "other", "", grpc.StatusCode.NOT_FOUND, "model 'other' is not deployed"),
        (TOKEN, MODEL, "7", grpc.StatusCode.NOT_FOUND, "version '7' is not served"),
    ],
    ids=["no token", "wrong token", "not deployed", "wrong version"],
)
def test_model_calls_that_fail_set_the_status_and_return_an_empty_message(
        served, token, name, version, code, details):
    ctx = _context(token)
    reply = _call(served.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version),
                                       ctx))
    assert reply == pb.ModelMetadataResponse()
    assert ctx.code() == code and details in ctx.details()


def test_model_infer_answers_and_logs_like_http(served, controller):
    ctx = _context()
    request = _infer_request(3, request_id="grpc-client-1")
    reply = _call(served.ModelInfer(request, ctx))
    assert ctx.code() is None, ctx.details()
    assert (reply.model_name, reply.model_version, reply.id) == (MODEL, "1", "grpc-client-1")
    assert [o.name for o in reply.outputs] == ["predictions", "scores"]
    assert [list(o.shape) for o in reply.outputs] == [[3], [3]]
    rid = reply.parameters["request_id"].string_param
    assert len(rid) == 32  # the ingress's id, not the client's
    primary = controller.apps[model_app_name(MODEL)].target
    rows = logged_rows(primary.log.folder, ["request_id", "client_id"])
    assert {(r["request_id"], r["client_id"]) for r in rows} == {(rid, "grpc-client-1")}


def test_model_infer_refusals(make_ingress, make_server, controller):
    controller.apps[model_app_name(MODEL)] = Handle(make_server("1"))
    # One row's request is 329 bytes once converted to its HTTP body, 20 rows' 809.
    small = make_ingress(max_body_bytes=600)
    cases = [
        (_context(None), _infer_request(1), grpc.StatusCode.UNAUTHENTICATED),
        (_context(), _infer_request(20), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (_context(), _infer_request(1, model="other"), grpc.StatusCode.NOT_FOUND),
        (_context(), _infer_request(1, version="4"), grpc.StatusCode.NOT_FOUND),
    ]
    bad = pb.ModelInferRequest(model_name=MODEL)
    bad.inputs.add(name="income", datatype="FP64", shape=[2])  # no contents
    cases.append((_context(), bad, grpc.StatusCode.INVALID_ARGUMENT))
    for ctx, request, code in cases:
        reply = _call(small.ModelInfer(request, ctx))
        assert reply == pb.ModelInferResponse()
        assert ctx.code() == code, ctx.details()


def test_repository_index_needs_admin(served):
    admin = _context(ADMIN_TOKEN)
    index = _call(served.RepositoryIndex(pb.RepositoryIndexRequest(), admin))
    assert [(m.name, m.version, m.state) for m in index.models] == [(MODEL, "1", "READY")]
    operator = _context()
    assert _call(served.RepositoryIndex(pb.RepositoryIndexRequest(), operator)) == (
        pb.RepositoryIndexResponse())
    assert operator.code() == grpc.StatusCode.PERMISSION_DENIED


def test_config_and_statistics_are_not_served(served):
    for method, request in ((served.ModelConfig, pb.ModelConfigRequest(name=MODEL)),
                            (served.ModelStatistics, pb.ModelStatisticsRequest(name=MODEL))):
        ctx = _context()
        assert _call(method(request, ctx)).ByteSize() == 0
        assert ctx.code() == grpc.StatusCode.UNIMPLEMENTED and ctx.details()
