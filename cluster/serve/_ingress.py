"""The HTTP front door: one FastAPI app speaking OIP v2 for every deployed model.

Each model is its own Serve application (``model-{name}``); the ingress finds it by name at
request time, so deploying, promoting or removing a model never restarts the ingress. Health
routes are open; every ``/v2/models/*`` route needs ``Authorization: Bearer <token>``. The
token is hashed here and only its sha256 travels on to the model replica, which decides.
"""

# No `from __future__ import annotations`: Serve ships this class by value, without the module
# globals FastAPI would need to resolve string annotations such as "Request".
import asyncio
import hashlib
import logging
import re
import time
from importlib import metadata

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from cluster.serve._oip import Reply

logger = logging.getLogger("ray.serve")

APP_NAME = "oip"
MODEL_APP_PREFIX = "model-"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INGRESS_CPUS = 0.05
# How long a cached handle is trusted before the ingress re-checks that its app still exists.
_RECHECK_S = 1.0
_CALL_TIMEOUT_S = 30.0

app = FastAPI(title="appliance OIP v2", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and wrong methods answer in the protocol's error shape too.
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)


def model_app_name(model: str) -> str:
    """The Serve application name that holds `model`."""
    return f"{MODEL_APP_PREFIX}{model}"


def _token_hash(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()


def _reply(reply: Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _server_version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _result(response):
    # wait_for needs a coroutine; a DeploymentResponse is only awaitable.
    return await response


# Serve pickles the class when it is decorated, so everything it uses is defined above it.
@serve.deployment(
    name="OipIngress",
    num_replicas=1,
    ray_actor_options={"num_cpus": INGRESS_CPUS},
    max_ongoing_requests=64,
)
@serve.ingress(app)
class OipIngress:
    """Routes v2 requests to the model applications."""

    def __init__(self) -> None:
        self._handles: dict[str, tuple[DeploymentHandle, float]] = {}

    async def _handle(self, model: str) -> DeploymentHandle | None:
        """The model app's handle, or None when no such app exists."""
        if not NAME_RE.match(model):
            return None
        cached = self._handles.get(model)
        now = time.monotonic()
        if cached and now - cached[1] < _RECHECK_S:
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

    async def _call(self, request: Request, model: str, method: str, *args, **kwargs):
        token_hash = _token_hash(request)
        if token_hash is None:
            return _error(
                401,
                "missing bearer token: send 'Authorization: Bearer <token>'",
                **{"WWW-Authenticate": "Bearer"},
            )
        handle = await self._handle(model)
        if handle is None:
            return _error(404, f"model {model!r} is not deployed")
        response = getattr(handle, method).remote(token_hash, *args, **kwargs)
        try:
            reply = await asyncio.wait_for(_result(response), _CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            response.cancel()
            return _error(503, f"model {model!r} did not answer within {_CALL_TIMEOUT_S:.0f}s")
        except ray.exceptions.RayTaskError as exc:
            logger.exception("model %r failed in %s", model, method)
            return _error(500, f"model {model!r} failed: {type(exc.cause).__name__}")
        except Exception as exc:
            self._handles.pop(model, None)
            return _error(503, f"model {model!r} is unavailable: {type(exc).__name__}: {exc}")
        return _reply(reply)

    # Health and server metadata: open, so load balancers and probes need no token.

    @app.get("/v2/health/live")
    async def live(self) -> JSONResponse:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready(self) -> JSONResponse:
        return JSONResponse({"ready": True})

    @app.get("/v2")
    async def server_metadata(self) -> JSONResponse:
        return JSONResponse(
            {
                "name": "appliance",
                "version": _server_version(),
                "extensions": ["binary_tensor_data"],
            }
        )

    # Model routes: bearer token required.

    @app.get("/v2/models/{model}")
    async def model_metadata(self, model: str, request: Request):
        return await self._call(request, model, "metadata")

    @app.get("/v2/models/{model}/versions/{version}")
    async def version_metadata(self, model: str, version: str, request: Request):
        return await self._call(request, model, "metadata", version)

    @app.get("/v2/models/{model}/ready")
    async def model_ready(self, model: str, request: Request):
        return await self._call(request, model, "ready")

    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def version_ready(self, model: str, version: str, request: Request):
        return await self._call(request, model, "ready", version)

    @app.post("/v2/models/{model}/infer")
    async def infer(self, model: str, request: Request):
        return await self._infer(request, model, None)

    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def version_infer(self, model: str, version: str, request: Request):
        return await self._infer(request, model, version)

    @app.post("/v2/models/{model}/feedback")
    async def feedback(self, model: str, request: Request):
        return await self._call(request, model, "feedback", await request.body())

    async def _infer(self, request: Request, model: str, version: str | None):
        raw = request.headers.get("inference-header-content-length")
        header_length = None
        if raw is not None:
            try:
                header_length = int(raw)
            except ValueError:
                return _error(
                    400, f"Inference-Header-Content-Length must be an integer, got {raw!r}"
                )
        body = await request.body()
        return await self._call(
            request, model, "infer", body, version=version, header_length=header_length
        )

    # Called by deploy()/undeploy() through a handle, to see what this replica would route to.

    async def served_version(self, model: str) -> str | None:
        """The version the ingress reaches for `model`, or None when it is not deployed."""
        self._handles.pop(model, None)
        handle = await self._handle(model)
        if handle is None:
            return None
        info = await asyncio.wait_for(_result(handle.info.remote()), _CALL_TIMEOUT_S)
        return info["version"]

    def forget(self, model: str) -> None:
        """Drop the cached handle of `model` (after its app was deleted)."""
        self._handles.pop(model, None)
