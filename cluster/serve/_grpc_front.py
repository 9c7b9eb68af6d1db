"""KServe v2 over gRPC at the ingress: Serve's gRPC proxy calls these by the service's names.

A mixin of `cluster.serve._ingress.OipIngress`: the same token check, routing and replies as
HTTP, converted by `cluster.serve._grpc`. A method always returns its response message; an
error sets the status code and details on the context and returns an empty one.
"""

from __future__ import annotations

import time
from importlib import metadata

from appliance.errors import InvalidInput
from cluster.serve import _grpc
from cluster.serve._oip import Reply, error


def _server_version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:
        return "unknown"


def _fail(grpc_context, reply: Reply, empty):
    """Set the gRPC status for an error `reply` and return the method's empty response."""
    code, details = _grpc.grpc_error(reply.status, reply.body)
    grpc_context.set_code(code)
    grpc_context.set_details(details)
    return empty


class GrpcFront:
    """The ``inference.GRPCInferenceService`` methods of the ingress."""

    def _grpc_denied(self, grpc_context, scope: str) -> Reply | None:
        token = _grpc.bearer_token(grpc_context.invocation_metadata())
        return self._denied(f"Bearer {token}" if token else None, scope)

    async def ServerLive(self, request, grpc_context):  # noqa: N802 (gRPC method name)
        return _grpc.server_live_response(True)

    async def ServerReady(self, request, grpc_context):  # noqa: N802
        return _grpc.server_ready_response((await self._readiness())["ready"])

    async def ServerMetadata(self, request, grpc_context):  # noqa: N802
        return _grpc.server_metadata_response(
            {"name": "appliance", "version": _server_version(),
             "extensions": ["binary_tensor_data", "model_repository"]}
        )

    async def _grpc_model_call(self, grpc_context, route: str, model: str, version: str,
                               convert, empty):
        started = time.perf_counter()
        reply = self._grpc_denied(grpc_context, "infer")
        if reply is None:
            reply = await self._primary(model, route, _grpc.version_or_none(version))
        self._metrics.done(model, f"grpc_{route}", reply, started)
        if reply.status != 200:
            return _fail(grpc_context, reply, empty)
        return convert(reply.body)

    async def ModelMetadata(self, request, grpc_context):  # noqa: N802
        return await self._grpc_model_call(
            grpc_context, "metadata", request.name, request.version,
            _grpc.model_metadata_response, _grpc.pb.ModelMetadataResponse(),
        )

    async def ModelReady(self, request, grpc_context):  # noqa: N802
        return await self._grpc_model_call(
            grpc_context, "ready", request.name, request.version,
            _grpc.model_ready_response, _grpc.pb.ModelReadyResponse(),
        )

    async def ModelInfer(self, request, grpc_context):  # noqa: N802
        started = time.perf_counter()
        model = request.model_name
        reply = self._grpc_denied(grpc_context, "infer")
        if reply is None:
            try:
                body, header_length = _grpc.infer_request_to_http(request)
            except InvalidInput as exc:
                reply = error(400, str(exc))
            else:
                if len(body) > self._door.max_body:
                    reply = self._door.too_large()
                else:
                    reply = await self._route_infer(
                        model, _grpc.version_or_none(request.model_version), body, header_length
                    )
        self._metrics.done(model, "grpc_infer", reply, started)
        if reply.status != 200:
            return _fail(grpc_context, reply, _grpc.pb.ModelInferResponse())
        response = _grpc.http_to_infer_response(model, reply.body)
        return response

    async def RepositoryIndex(self, request, grpc_context):  # noqa: N802
        denied = self._grpc_denied(grpc_context, "admin")
        if denied is not None:
            return _fail(grpc_context, denied, _grpc.pb.RepositoryIndexResponse())
        return _grpc.repository_index_response(await self._repository())

    async def ModelConfig(self, request, grpc_context):  # noqa: N802
        return _fail(grpc_context, error(501, "model configuration is not served; use "
                                              "ModelMetadata"), _grpc.pb.ModelConfigResponse())

    async def ModelStatistics(self, request, grpc_context):  # noqa: N802
        return _fail(grpc_context, error(501, "statistics are exported as Prometheus metrics, "
                                              "not over this API"),
                     _grpc.pb.ModelStatisticsResponse())
