"""KServe v2 over gRPC: conversions between the protocol's protobuf messages and its HTTP forms.

Pure functions, no Ray. The gRPC front door turns each ``inference.GRPCInferenceService``
request into what the HTTP ingress would have forwarded (the request body the model replica
parses with `cluster.serve._oip.parse_infer_request`), and turns the replica's JSON answer
back into the protobuf response ``tritonclient.grpc`` expects. The messages are the ones
``tritonclient.grpc.service_pb2`` ships, so client and server share one definition.

Inference requests become binary-extension HTTP bodies (a JSON header, then every input's
bytes in input order): ``raw_input_contents`` are already in that format (BYTES elements with
a 4-byte little-endian length prefix), and typed ``contents`` are packed the same way, which
keeps FP32 values exact and NaN intact. The body never asks for binary outputs, so the reply
is JSON and its ``data`` lists become ``raw_output_contents``, the field
``tritonclient.grpc.InferResult.as_numpy`` reads.

Errors: a malformed request raises `appliance.errors.InvalidInput` naming the input and the
field; a replica reply that cannot be converted raises `ValueError` (a bug on the server side,
which the front door answers with ``INTERNAL``).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from appliance.errors import InvalidInput
from cluster.serve._oip import NUMERIC_DTYPES

# tritonclient's generated classes say their module is "grpc_service_pb2" (protoc's name for
# the file), which no import finds. Ray pickles each request from its gRPC proxy to the ingress
# by that name, so both processes need it importable: they import this module first.
sys.modules.setdefault("grpc_service_pb2", pb)
sys.modules.setdefault("model_config_pb2", model_config_pb2)

SERVICE = "inference.GRPCInferenceService"
# What `serve.start(grpc_options=gRPCOptions(grpc_servicer_functions=[...]))` takes: ours, so
# that the proxy imports this module (and its aliases above) before it sees a request.
SERVICER_FUNCTION = "cluster.serve._grpc.add_inference_servicer"


# The Serve application that answers gRPC: the front ingress (cluster.serve._ingress.APP_NAME).
FRONT_APP = "oip"


class _FrontContext:
    """A gRPC servicer context whose metadata names the front ingress's application when the
    client named none, so that Serve's proxy routes the call there (it needs the name once
    more than one application has a route, as every model's primary does)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def invocation_metadata(self):
        metadata = tuple(self._context.invocation_metadata() or ())
        if any(key == "application" for key, _ in metadata):
            return metadata
        return (*metadata, ("application", FRONT_APP))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _to_front(factory):
    """Wrap Serve's handler factory: its unary handlers see `_FrontContext`s."""

    def make(service_method, streaming_type):
        handler = factory(service_method=service_method, streaming_type=streaming_type)
        if getattr(streaming_type, "name", "") != "UNARY_UNARY":
            return handler

        async def unary_unary(request: Any, context: Any):
            return await handler(request, _FrontContext(context))

        return unary_unary

    return make


def add_inference_servicer(servicer: Any, server: Any) -> None:
    """Register KServe v2's ``GRPCInferenceService`` on `server` (called by Serve's proxy).

    Clients such as ``tritonclient.grpc`` send no ``application`` metadata; Serve's proxy
    would answer them NOT_FOUND, so this service's calls go to the front ingress unless they
    name another application. (Serve builds each method's handler from the server's
    ``service_handler_factory`` when the service is added; without one, clients must send
    ``application: oip`` themselves.)
    """
    factory = getattr(server, "service_handler_factory", None)
    if callable(factory):
        server.service_handler_factory = _to_front(factory)
    try:
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    finally:
        if callable(factory):
            server.service_handler_factory = factory

# Little-endian, as both the binary extension and raw_input_contents specify.
_DTYPES = NUMERIC_DTYPES
# The InferTensorContents field each datatype's values go in; FP16 and BF16 have none and
# must come as raw_input_contents.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH_PREFIX = struct.Struct("<I")
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
# Framing keys this module owns on the HTTP side; a gRPC client's values are not carried.
_FRAMING = frozenset({"binary_data_size", "binary_data", "binary_data_output"})
_INT64_MAX = 2**63 - 1

# HTTP status -> gRPC code, after google.rpc.Code's documented HTTP mapping. 429 is
# UNAVAILABLE rather than RESOURCE_EXHAUSTED: to a client both mean "back off and retry", and
# UNAVAILABLE is the code gRPC retry policies and gRPC's own HTTP mapping use for it. 413 is
# RESOURCE_EXHAUSTED, the code gRPC itself gives a message over the receive size limit.
_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.UNAVAILABLE,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_status_for(http_status: int) -> grpc.StatusCode:
    """The gRPC status code that stands for `http_status` (2xx is OK; unlisted 4xx
    INVALID_ARGUMENT; anything else INTERNAL)."""
    if 200 <= http_status < 300:
        return grpc.StatusCode.OK
    code = _STATUS.get(http_status)
    if code is not None:
        return code
    if 400 <= http_status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def grpc_error(http_status: int, body: Any) -> tuple[grpc.StatusCode, str]:
    """The gRPC code and details for an error reply (``{"error": message}``) of `http_status`."""
    message = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(message, str) or not message:
        message = f"the model answered HTTP {http_status}"
    return grpc_status_for(http_status), message


def bearer_token(metadata: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry in gRPC invocation metadata.

    Args:
        metadata: the call's metadata, as (key, value) pairs (what
            ``ServicerContext.invocation_metadata()`` returns) or a mapping; None for none.

    Returns:
        The token, or None when there is no such entry, its scheme is not Bearer, or it is
        empty. Keys compare case-insensitively (gRPC sends them in lower case).
    """
    if metadata is None:
        return None
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    for key, value in pairs:
        if key.lower() != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token:
            return token
        return None
    return None


def version_or_none(version: str) -> str | None:
    """A request's ``model_version`` as the replica takes it: protobuf's "" means any."""
    return version or None


# --- parameters ----------------------------------------------------------------------------


def _param_value(param: pb.InferParameter, where: str) -> Any:
    choice = param.WhichOneof("parameter_choice")
    if choice is None:
        raise InvalidInput(f"{where} has no value; set one of bool/int64/uint64/double/string")
    return getattr(param, choice)


def _params_to_json(params: Mapping[str, pb.InferParameter], where: str) -> dict[str, Any]:
    return {
        key: _param_value(value, f"{where} parameter {key!r}")
        for key, value in params.items()
        if key not in _FRAMING
    }


def _set_param(param: pb.InferParameter, value: Any, where: str) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if value > _INT64_MAX:
            param.uint64_param = value
        else:
            param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        raise ValueError(f"{where}: {value!r} cannot be a gRPC InferParameter")


def _reject_shared_memory(params: Mapping[str, pb.InferParameter], where: str) -> None:
    if any(key in params for key in _SHARED_MEMORY):
        raise InvalidInput(
            f"{where} uses shared memory, which this server does not support; "
            "send the data in the request (set_data_from_numpy)"
        )


# --- inference requests --------------------------------------------------------------------


def _element_count(tensor: pb.ModelInferRequest.InferInputTensor) -> int:
    count = 1
    for dim in tensor.shape:
        if dim < 0:
            raise InvalidInput(
                f"input {tensor.name!r}: shape {list(tensor.shape)} has a negative dimension"
            )
        count *= dim
    return count


def _pack(values: Iterable[Any], field: str, datatype: str, name: str) -> bytes:
    """Typed contents as the binary extension lays them out."""
    if datatype == "BYTES":
        return b"".join(_LENGTH_PREFIX.pack(len(v)) + v for v in values)
    dtype = _DTYPES[datatype]
    if dtype.kind in "iu":
        # int_contents and uint_contents carry INT8/16 and UINT8/16 too: check the range.
        wide = np.array(list(values), dtype=np.uint64 if dtype.kind == "u" else np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(
                f"input {name!r}: a value in contents.{field} is out of range for {datatype} "
                f"[{info.min}, {info.max}]"
            )
        return wide.astype(dtype).tobytes()
    return np.array(list(values), dtype=dtype).tobytes()


def _contents_bytes(tensor: pb.ModelInferRequest.InferInputTensor, count: int) -> bytes:
    name, datatype = tensor.name, tensor.datatype
    present = [f.name for f, _ in tensor.contents.ListFields()]
    if not present:
        if count:
            raise InvalidInput(
                f"input {name!r} has no data: shape {list(tensor.shape)} needs {count} values "
                "in contents or raw_input_contents"
            )
        return b""
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} has no typed contents field; "
            "send its data in raw_input_contents"
        )
    if present != [field]:
        raise InvalidInput(
            f"input {name!r} is {datatype} but sets contents.{', contents.'.join(present)}; "
            f"{datatype} values go in contents.{field}"
        )
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r}: shape {list(tensor.shape)} needs {count} values, "
            f"contents.{field} has {len(values)}"
        )
    return _pack(values, field, datatype, name)


def _check_raw_size(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes, index: int):
    dtype = _DTYPES.get(tensor.datatype)
    if dtype is None:
        return  # BYTES is checked element by element by the parser; others it rejects
    need = _element_count(tensor) * dtype.itemsize
    if len(raw) != need:
        raise InvalidInput(
            f"input {tensor.name!r}: raw_input_contents[{index}] has {len(raw)} bytes; "
            f"shape {list(tensor.shape)} of {tensor.datatype} needs {need}"
        )


def infer_request_to_http(req: pb.ModelInferRequest) -> tuple[bytes, int | None]:
    """The OIP HTTP request body equivalent to a gRPC ``ModelInferRequest``.

    Args:
        req: the request; ``model_name`` and ``model_version`` are not part of the body (the
            HTTP form has them in the URL): route by them, see `version_or_none`.

    Returns:
        (body, header_length): a binary-extension body and the length of its JSON header,
        the ``Inference-Header-Content-Length`` the replica takes; header_length is None
        when the request has no inputs (the body is all JSON).

    Raises:
        InvalidInput: the request is malformed (raw and typed data mixed, a raw count that
            does not match the inputs, contents of the wrong type or length, shared memory).
    """
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise InvalidInput(
            f"the request carries {len(raw)} raw_input_contents for {len(req.inputs)} input(s); "
            "send one per input, in input order, or none and use typed contents"
        )
    _reject_shared_memory(req.parameters, "the request")
    inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for i, tensor in enumerate(req.inputs):
        where = f"input {tensor.name!r}"
        _reject_shared_memory(tensor.parameters, where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"{where} has typed contents but the request carries raw_input_contents; "
                    "use one or the other for all inputs"
                )
            _check_raw_size(tensor, raw[i], i)
            chunk = raw[i]
        else:
            chunk = _contents_bytes(tensor, _element_count(tensor))
        params = _params_to_json(tensor.parameters, where)
        params["binary_data_size"] = len(chunk)
        inputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "parameters": params,
            }
        )
        chunks.append(chunk)

    doc: dict[str, Any] = {"inputs": inputs}
    if req.id:
        doc["id"] = req.id
    params = _params_to_json(req.parameters, "the request")
    params["binary_data_output"] = False  # JSON replies: see the module docstring
    doc["parameters"] = params
    if req.outputs:
        outputs = []
        for out in req.outputs:
            where = f"requested output {out.name!r}"
            _reject_shared_memory(out.parameters, where)
            out_params = _params_to_json(out.parameters, where)
            out_params["binary_data"] = False
            outputs.append({"name": out.name, "parameters": out_params})
        doc["outputs"] = outputs
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not inputs:
        return header, None
    return header + b"".join(chunks), len(header)


# --- responses -----------------------------------------------------------------------------


def _flat(data: Any, dtype: Any) -> np.ndarray:
    return np.asarray(data, dtype=dtype).reshape(-1)


def _output_bytes(out: Mapping[str, Any], count: int) -> bytes:
    name, datatype = out.get("name"), out.get("datatype")
    if "data" not in out:
        raise ValueError(
            f"output {name!r} has no 'data' (a binary output?); the gRPC path asks for JSON"
        )
    data = out["data"]
    if datatype == "BYTES":
        elements = [v.encode() if isinstance(v, str) else bytes(v) for v in _flat(data, object)]
        flat_len = len(elements)
        packed = b"".join(_LENGTH_PREFIX.pack(len(e)) + e for e in elements)
    else:
        dtype = _DTYPES.get(datatype)
        if dtype is None:
            raise ValueError(f"output {name!r}: datatype {datatype!r} is not a v2 datatype")
        if dtype.kind == "f":
            # JSON has no NaN; a null stands for one.
            data = [math.nan if v is None else v for v in _flat(data, object)]
        values = _flat(data, dtype)
        flat_len, packed = values.size, values.tobytes()
    if flat_len != count:
        raise ValueError(
            f"output {name!r}: shape {out.get('shape')} needs {count} values, data has {flat_len}"
        )
    return packed


def http_to_infer_response(model: str, body: Mapping[str, Any]) -> pb.ModelInferResponse:
    """The gRPC ``ModelInferResponse`` for a replica's JSON inference reply.

    Args:
        model: the model name, used when `body` names none.
        body: the v2 JSON response (``model_name``, ``model_version``, ``id``, ``outputs``
            with ``data`` lists, optional ``parameters``).

    Raises:
        ValueError: `body` is not a JSON inference response (binary outputs included).
    """
    if not isinstance(body, Mapping):
        raise ValueError(
            f"the replica's inference reply is {type(body).__name__}, not a JSON object; "
            "was a binary output asked for?"
        )
    resp = pb.ModelInferResponse(
        model_name=str(body.get("model_name") or model),
        model_version=str(body.get("model_version") or ""),
        id=str(body.get("id") or ""),
    )
    for key, value in (body.get("parameters") or {}).items():
        _set_param(resp.parameters[key], value, f"response parameter {key!r}")
    for out in body.get("outputs") or []:
        shape = out.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"output {out.get('name')!r}: shape {shape!r} is not a list of ints")
        tensor = resp.outputs.add(name=out.get("name"), datatype=out.get("datatype"), shape=shape)
        for key, value in (out.get("parameters") or {}).items():
            if key not in _FRAMING:
                _set_param(tensor.parameters[key], value, f"output parameter {key!r}")
        # InferResult.as_numpy pairs outputs with raw_output_contents by position.
        resp.raw_output_contents.append(_output_bytes(out, math.prod(shape)))
    return resp


def _tensor_metadata(tensors: Iterable[Mapping[str, Any]]):
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=t["name"], datatype=t["datatype"], shape=t["shape"]
        )
        for t in tensors
    ]


def model_metadata_response(body: Mapping[str, Any]) -> pb.ModelMetadataResponse:
    """The gRPC ``ModelMetadataResponse`` for a replica's v2 metadata body
    (``name``, ``versions``, ``platform``, ``inputs``, ``outputs``)."""
    return pb.ModelMetadataResponse(
        name=body["name"],
        versions=body.get("versions", []),
        platform=body.get("platform", ""),
        inputs=_tensor_metadata(body.get("inputs", [])),
        outputs=_tensor_metadata(body.get("outputs", [])),
    )


def model_ready_response(body: Mapping[str, Any]) -> pb.ModelReadyResponse:
    """The gRPC ``ModelReadyResponse`` for a replica's ``{"name", "version", "ready"}`` body."""
    return pb.ModelReadyResponse(ready=bool(body.get("ready")))


def server_live_response(live: bool = True) -> pb.ServerLiveResponse:
    """The gRPC ``ServerLiveResponse`` (default live)."""
    return pb.ServerLiveResponse(live=live)


def server_ready_response(ready: bool = True) -> pb.ServerReadyResponse:
    """The gRPC ``ServerReadyResponse`` (default ready)."""
    return pb.ServerReadyResponse(ready=ready)


def server_metadata_response(body: Mapping[str, Any]) -> pb.ServerMetadataResponse:
    """The gRPC ``ServerMetadataResponse`` for the HTTP ``/v2`` body
    (``name``, ``version``, ``extensions``)."""
    return pb.ServerMetadataResponse(
        name=body["name"], version=body.get("version", ""), extensions=body.get("extensions", [])
    )


def repository_index_response(models: Iterable[Mapping[str, Any]]) -> pb.RepositoryIndexResponse:
    """The gRPC ``RepositoryIndexResponse`` listing `models`.

    Args:
        models: one mapping per served model: ``name``, and optionally ``version``,
            ``state`` (e.g. ``"READY"``) and ``reason``.
    """
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=m["name"],
                version=m.get("version", ""),
                state=m.get("state", ""),
                reason=m.get("reason", ""),
            )
            for m in models
        ]
    )
