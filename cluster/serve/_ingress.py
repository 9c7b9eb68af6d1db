"""The front ingress (application ``oip``, route ``/``): what is not one model's own route.

Each model's primary application serves ``/v2/models/{model}/...`` itself, one hop from Serve's
proxy (`cluster.serve._model_server`). This ingress answers the rest: health and server
metadata (open, for probes), the model repository (scope ``admin``), KServe v2 over gRPC
(`cluster.serve._grpc_front`, which forwards each call to the model's primary), and the
protocol's answers for a model that is not deployed (401 without a token, else 404).

Every route but health needs ``Authorization: Bearer <token>`` with its scope, checked at the
door before a body is read (`cluster.serve._door`); bodies above ``max_body_bytes`` get 413.

Every inference gets a request id made at the door, unique per request: it is what the
prediction log records, what feedback names (``request_id``), and what the response's
``parameters.request_id`` and its ``x-appliance-request-id`` header return (``x-request-id`` is
Ray Serve's own, which a client may set). A client's own ``id`` is echoed as the protocol
asks, logged beside it as ``client_id``, and decides a split canary (the same id always
reaches the same version); it can never overwrite or alias another request's log rows.
"""

# No `from __future__ import annotations`: Serve ships this class by value, without the module
# globals FastAPI would need to resolve string annotations such as "Request".
import asyncio
import logging
import time

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from appliance.names import NAME_RE
from cluster.serve import _metrics
from cluster.serve._canary_routing import CALL_TIMEOUT_S, RECHECK_S, _ask
from cluster.serve._door import BodyTooLarge, Door
from cluster.serve._grpc_front import GrpcFront, _server_version
from cluster.serve._oip import Reply, error
from cluster.serve._routing import new_request_id

logger = logging.getLogger("ray.serve")

APP_NAME = "oip"
MODEL_APP_PREFIX = "model-"
INGRESS_CPUS = 0.05
# The ingress only awaits: many requests in flight per replica cost little, and a model's
# batches can only fill when enough requests reach it at once.
INGRESS_MAX_ONGOING = 512
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_TOKEN_REFRESH_S = 1.0
# Server readiness asks every primary; a replica slower than this is not ready.
_READY_TIMEOUT_S = 2.0
_READY_CACHE_S = 1.0

app = FastAPI(title="appliance OIP v2", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and wrong methods answer in the protocol's error shape too.
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def model_app_name(model: str) -> str:
    """The Serve application name that holds `model`."""
    return f"{MODEL_APP_PREFIX}{model}"


def ingress_settings(
    db_url: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    token_refresh_s: float = DEFAULT_TOKEN_REFRESH_S,
    replicas: int = 1,
) -> dict:
    """What the ingress is built with; a change redeploys it.

    Args:
        db_url: the metadata store the token set is read from.
        max_body_bytes: the largest request body accepted (default 32 MiB); larger gets 413.
        token_refresh_s: how often the token set's version is polled (default 1 s).
        replicas: how many ingress replicas share the HTTP traffic (default 1).
    """
    return {"db_url": db_url, "max_body_bytes": int(max_body_bytes),
            "token_refresh_s": float(token_refresh_s), "replicas": int(replicas)}


def _reply(reply: Reply) -> Response:
    if isinstance(reply.body, (bytes, bytearray)):
        # Binary tensor extension: the replica encoded header and tensors, and set the headers.
        return Response(bytes(reply.body), status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


# Serve pickles the class when it is decorated, so everything it uses is defined above it.
@serve.deployment(
    name="OipIngress",
    num_replicas=1,
    ray_actor_options={"num_cpus": INGRESS_CPUS},
    max_ongoing_requests=INGRESS_MAX_ONGOING,
)
@serve.ingress(app)
class OipIngress(GrpcFront):
    """Authenticates v2 requests and routes them to the model applications.

    Args:
        settings: from `ingress_settings`.
    """

    def __init__(self, settings: dict) -> None:
        self.settings = dict(settings)
        self._door = Door(settings)
        self._ready: tuple[float, dict] | None = None
        self._handles: dict[str, tuple[DeploymentHandle, float]] = {}
        self._metrics = _metrics.IngressMetrics()

    def _denied(self, authorization: str | None, scope: str) -> Reply | None:
        return self._door.denied(authorization, scope)

    def _finish(self, model: str, route: str, reply: Reply, started: float) -> Response:
        self._metrics.done(model, route, reply, started)
        return _reply(reply)

    async def _handle(self, model: str) -> DeploymentHandle | None:
        """The model app's handle, or None when no such app exists."""
        if not NAME_RE.match(model):
            return None
        cached = self._handles.get(model)
        now = time.monotonic()
        if cached and now - cached[1] < RECHECK_S:
            return cached[0]
        try:
            # get_app_handle asks the controller (a blocking ray.get): keep it off the loop.
            fresh = await asyncio.to_thread(serve.get_app_handle, model_app_name(model))
        except serve.exceptions.RayServeException:
            self._handles.pop(model, None)
            return None
        # Keep the old handle: its router already knows the replicas.
        handle = cached[0] if cached else fresh
        self._handles[model] = (handle, now)
        return handle

    async def _call(self, request: Request, model: str, scope: str, method: str, *args,
                    read_body: bool = False, **kwargs) -> Response:
        started = time.perf_counter()
        reply = self._denied(request.headers.get("authorization"), scope)
        if reply is None and read_body:
            try:
                args = (*args, await self._door.read_body(request))
            except BodyTooLarge:
                reply = self._door.too_large()
        if reply is None:
            reply = await self._primary(model, method, *args, **kwargs)
        return self._finish(model, method, reply, started)

    async def _primary(self, model: str, method: str, *args, **kwargs) -> Reply:
        handle = await self._handle(model)
        if handle is None:
            return error(404, f"model {model!r} is not deployed")
        return await self._answer(handle, model, method, *args, **kwargs)

    async def _answer(
        self, handle: DeploymentHandle, model: str, method: str, *args, **kwargs
    ) -> Reply:
        """The primary's answer to one call, or the error that stands in for it."""
        response = getattr(handle, method).remote(*args, **kwargs)
        try:
            return await _ask(response, CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            return error(503, f"model {model!r} did not answer within {CALL_TIMEOUT_S:.0f}s",
                         {"Retry-After": "1"})
        except ray.exceptions.RayTaskError as exc:
            logger.exception("model %r failed in %s", model, method)
            return error(500, f"model {model!r} failed: {type(exc.cause).__name__}")
        except Exception as exc:
            self._handles.pop(model, None)
            return error(503, f"model {model!r} is unavailable: {type(exc).__name__}: {exc}",
                         {"Retry-After": "1"})

    # Health and server metadata: open, so load balancers and probes need no token.

    @app.get("/v2/health/live")
    async def live(self) -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready(self) -> JSONResponse:
        """200 only when tokens are loaded and every deployed model's primary answers."""
        doc = await self._readiness()
        return JSONResponse(doc, status_code=200 if doc["ready"] else 503)

    @app.get("/v2")
    async def server_metadata(self) -> JSONResponse:
        return JSONResponse(
            {
                "name": "appliance",
                "version": _server_version(),
                "extensions": ["binary_tensor_data", "model_repository"],
            }
        )

    # Model routes: a bearer token with the route's scope.

    @app.get("/v2/models/{model}")
    async def model_metadata(self, model: str, request: Request):
        return await self._call(request, model, "infer", "metadata")

    @app.get("/v2/models/{model}/versions/{version}")
    async def version_metadata(self, model: str, version: str, request: Request):
        return await self._call(request, model, "infer", "metadata", version)

    @app.get("/v2/models/{model}/ready")
    async def model_ready(self, model: str, request: Request):
        return await self._call(request, model, "infer", "ready")

    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def version_ready(self, model: str, version: str, request: Request):
        return await self._call(request, model, "infer", "ready", version)

    @app.post("/v2/models/{model}/infer")
    async def infer(self, model: str, request: Request):
        return await self._infer(request, model, None)

    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def version_infer(self, model: str, version: str, request: Request):
        return await self._infer(request, model, version)

    @app.post("/v2/models/{model}/feedback")
    async def feedback(self, model: str, request: Request):
        return await self._call(request, model, "feedback", "feedback", read_body=True)

    @app.post("/v2/repository/index")
    async def repository_index(self, request: Request):
        denied = self._denied(request.headers.get("authorization"), "admin")
        if denied is not None:
            return _reply(denied)
        return JSONResponse(await self._repository())

    async def _infer(self, request: Request, model: str, version: str | None) -> Response:
        started = time.perf_counter()
        reply = await self._read_infer(request, model, version)
        return self._finish(model, "infer", reply, started)

    async def _read_infer(self, request: Request, model: str, version: str | None) -> Reply:
        denied = self._denied(request.headers.get("authorization"), "infer")
        if denied is not None:
            return denied
        raw = request.headers.get("inference-header-content-length")
        header_length = None
        if raw is not None:
            try:
                header_length = int(raw)
            except ValueError:
                return error(
                    400, f"Inference-Header-Content-Length must be an integer, got {raw!r}"
                )
        try:
            body = await self._door.read_body(request)
        except BodyTooLarge:
            return self._door.too_large()
        return await self._route_infer(model, version, body, header_length)

    async def _route_infer(
        self, model: str, version: str | None, body: bytes, header_length: int | None
    ) -> Reply:
        """One authorised inference: to the canary or the primary, as routing says."""
        handle = await self._handle(model)
        if handle is None:
            return error(404, f"model {model!r} is not deployed")
        # The id every log row of this request carries, unique whatever the client sends.
        request_id = new_request_id()
        # The primary routes to its canary, if it has one, as it does for HTTP.
        reply = await self._answer(handle, model, "route_infer", body, request_id=request_id,
                                   version=version, header_length=header_length)
        # Errors made here carry it too: a client can always tell which request it was.
        headers = reply.headers or {}
        if headers.get("x-appliance-request-id") != request_id:
            reply = reply._replace(headers={**headers, "x-appliance-request-id": request_id})
        return reply

    # Readiness and the repository: what Serve runs, and whether its replicas answer.

    async def _model_apps(self) -> dict[str, str]:
        """model name -> its application's status, for every model application."""
        # serve.status asks the controller (a blocking ray.get): keep it off the loop.
        status = await asyncio.to_thread(serve.status)
        return {
            name[len(MODEL_APP_PREFIX):]: getattr(app.status, "value", str(app.status))
            for name, app in status.applications.items()
            if name.startswith(MODEL_APP_PREFIX)
        }

    async def _probe(self, model: str, app_status: str) -> dict:
        """One model's entry in the repository: name, version, state, and why if not READY."""
        entry = {"name": model, "version": "", "state": "UNAVAILABLE", "reason": app_status}
        if app_status != "RUNNING":
            return entry
        handle = await self._handle(model)
        if handle is None:
            entry["reason"] = "not deployed"
            return entry
        try:
            info = await _ask(handle.info.remote(), _READY_TIMEOUT_S)
        except Exception as exc:
            entry["reason"] = f"its replica did not answer: {type(exc).__name__}"
            return entry
        return {"name": model, "version": info["version"], "state": "READY", "reason": ""}

    async def _repository(self) -> list[dict]:
        apps = await self._model_apps()
        return list(await asyncio.gather(*(self._probe(m, s) for m, s in sorted(apps.items()))))

    async def _readiness(self) -> dict:
        cached = self._ready
        if cached and time.monotonic() - cached[0] < _READY_CACHE_S:
            return cached[1]
        if not self._door.loaded:
            doc = {"ready": False, "error": "the token set has not been loaded yet"}
        else:
            try:
                models = await self._repository()
            except Exception as exc:
                doc = {"ready": False, "error": f"Serve's controller did not answer: {exc!r}"}
            else:
                down = [m["name"] for m in models if m["state"] != "READY"]
                doc = {"ready": not down, "models": {m["name"]: m["state"] for m in models}}
                if down:
                    doc["error"] = f"model(s) {down} do not answer"
        self._ready = (time.monotonic(), doc)
        return doc

    # Called by the control plane (cluster.serve._app) through a handle. All are coroutines so
    # that they run on the event loop with the routing code: Serve runs plain methods in a
    # thread pool, where they would race with it.

    async def ingress_config(self) -> dict:
        """The settings this ingress was built with (the control plane redeploys on change)."""
        return self.settings

    async def served_version(self, model: str) -> str | None:
        """The version the ingress reaches for `model`, or None when it is not deployed."""
        self._handles.pop(model, None)
        handle = await self._handle(model)
        if handle is None:
            return None
        info = await _ask(handle.info.remote(), CALL_TIMEOUT_S)
        return info["version"]

    async def forget(self, model: str) -> None:
        """Drop the cached handle of `model` (after its app was deleted)."""
        self._handles.pop(model, None)
