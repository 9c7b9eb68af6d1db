"""The HTTP front door: one FastAPI app speaking OIP v2 for every deployed model.

Each model is its own Serve application (``model-{name}``); the ingress finds it by name at
request time, so deploying, promoting or removing a model never restarts the ingress. Health
routes are open; every ``/v2/models/*`` route needs ``Authorization: Bearer <token>``. The
token is hashed here and only its sha256 travels on to the model replica, which decides.

A model may have a canary, a challenger version in its own application (``canary-{name}``).
The ingress finds it by pull too: it asks the canary replica's ``info()`` for its version, mode
and share, in the background once the cached answer is older than ``_RECHECK_S``, so no request
waits on that look-up (only a model's first request waits for the first one).

Only inference is routed to a canary. A request naming a version goes to the app serving it.
Otherwise, in ``split`` mode, the request id decides (`cluster.serve._routing`; the ingress
makes one up when the body has none and passes it down, so the answer and the log carry it),
and a canary that fails hands the request to the primary rather than failing it. In ``shadow``
mode the primary answers and the canary scores a copy in a background task (at most
``_MAX_SHADOWS`` at once), logged with ``shadow`` true and otherwise discarded. Health,
metadata, readiness and feedback stay with the primary. The control plane removes a canary by
retiring it here first and deleting it once no call to it is in flight.
"""

# No `from __future__ import annotations`: Serve ships this class by value, without the module
# globals FastAPI would need to resolve string annotations such as "Request".
import asyncio
import hashlib
import logging
import re
import time
import uuid
from importlib import metadata
from typing import NamedTuple

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from cluster.serve._oip import Reply
from cluster.serve._routing import canary_app_name, request_id_of, to_canary

logger = logging.getLogger("ray.serve")

APP_NAME = "oip"
MODEL_APP_PREFIX = "model-"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INGRESS_CPUS = 0.05
# How long a cached handle is trusted before the ingress re-checks that its app still exists.
_RECHECK_S = 1.0
_CALL_TIMEOUT_S = 30.0
# A split request waits this long for the canary, then the primary answers it.
_CANARY_TIMEOUT_S = _CALL_TIMEOUT_S / 2
# Looking up a canary asks its replica; one that is restarting must not stall the look-up.
_LOOKUP_TIMEOUT_S = 2.0
# Shadow calls in flight at once; more are skipped (and counted) rather than queued.
_MAX_SHADOWS = 64
# Bodies larger than this are scanned for their id off the event loop.
_INLINE_PARSE_BYTES = 256 * 1024

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


def _unauthorized() -> JSONResponse:
    return _error(
        401,
        "missing bearer token: send 'Authorization: Bearer <token>'",
        **{"WWW-Authenticate": "Bearer"},
    )


def _server_version() -> str:
    try:
        return metadata.version("appliance")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _result(response):
    # wait_for needs a coroutine; a DeploymentResponse is only awaitable.
    return await response


async def _ask(response, timeout_s: float):
    """Await a DeploymentResponse for at most `timeout_s`, cancelling it on timeout."""
    try:
        return await asyncio.wait_for(_result(response), timeout_s)
    except asyncio.TimeoutError:
        response.cancel()
        raise


class _Canary(NamedTuple):
    """A model's canary as the ingress routes to it."""

    handle: DeploymentHandle
    version: str
    mode: str
    share: float | None

    def public(self) -> dict:
        return {"version": self.version, "mode": self.mode, "share": self.share}


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
        # model -> (its canary or None, when that was learnt).
        self._canaries: dict[str, tuple[_Canary | None, float]] = {}
        self._lookups: dict[str, asyncio.Task] = {}
        # Bumped whenever the control plane changes a model's canary, so that a look-up
        # started before the change cannot store what it saw.
        self._generation: dict[str, int] = {}
        # Models whose canary is being removed: not routed to, not looked up.
        self._retired: set[str] = set()
        # Calls to each model's canary still in flight (split and shadow), for draining.
        self._canary_calls: dict[str, int] = {}
        # Strong references: a task the loop alone holds may be garbage-collected mid-flight.
        self._shadows: set[asyncio.Task] = set()
        self._shadows_skipped = 0

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
            return _unauthorized()
        handle = await self._handle(model)
        if handle is None:
            return _error(404, f"model {model!r} is not deployed")
        return await self._answer(handle, model, method, token_hash, *args, **kwargs)

    async def _answer(
        self, handle: DeploymentHandle, model: str, method: str, *args, **kwargs
    ) -> JSONResponse:
        """The primary's answer to one call, or the error that stands in for it."""
        response = getattr(handle, method).remote(*args, **kwargs)
        try:
            reply = await _ask(response, _CALL_TIMEOUT_S)
        except asyncio.TimeoutError:
            return _error(503, f"model {model!r} did not answer within {_CALL_TIMEOUT_S:.0f}s")
        except ray.exceptions.RayTaskError as exc:
            logger.exception("model %r failed in %s", model, method)
            return _error(500, f"model {model!r} failed: {type(exc.cause).__name__}")
        except Exception as exc:
            self._handles.pop(model, None)
            return _error(503, f"model {model!r} is unavailable: {type(exc).__name__}: {exc}")
        return _reply(reply)

    # Canary discovery: pull, like the model apps, but never on a request's critical path.

    def _canary(self, model: str) -> _Canary | None:
        """The canary to route to, as last learnt; starts a look-up when that is stale."""
        if model in self._retired:
            return None
        cached = self._canaries.get(model)
        if cached is None or time.monotonic() - cached[1] >= _RECHECK_S:
            self._look_up(model)
        return cached[0] if cached else None

    async def _first_canary(self, model: str) -> _Canary | None:
        """Like `_canary`, but waits for the answer when this model was never looked up."""
        if model not in self._retired and model not in self._canaries:
            # Shielded: the look-up is shared, a cancelled request must not cancel it.
            return await asyncio.shield(self._look_up(model))
        return self._canary(model)

    def _look_up(self, model: str, *, fresh: bool = False) -> asyncio.Task:
        task = self._lookups.get(model)
        if task is None or fresh:
            task = asyncio.get_running_loop().create_task(self._look_up_canary(model))
            self._lookups[model] = task

            def done(t: asyncio.Task) -> None:
                if self._lookups.get(model) is t:
                    del self._lookups[model]

            task.add_done_callback(done)
        return task

    async def _look_up_canary(self, model: str) -> _Canary | None:
        generation = self._generation.get(model, 0)
        cached = self._canaries.get(model)
        previous = cached[0] if cached else None
        try:
            # get_app_handle asks the controller (a blocking ray.get): keep it off the loop.
            fresh = await asyncio.to_thread(serve.get_app_handle, canary_app_name(model))
        except serve.exceptions.RayServeException:
            canary = None  # no such application
        except Exception as exc:
            logger.warning("could not look up model %r's canary: %r", model, exc)
            canary = previous
        else:
            # Keep the old handle: its router already knows the replicas.
            handle = previous.handle if previous else fresh
            try:
                info = await _ask(handle.info.remote(), _LOOKUP_TIMEOUT_S)
                canary = _Canary(handle, info["version"], info["mode"], info["share"])
            except Exception as exc:
                # Most likely a replica being replaced: keep routing as before until it answers.
                logger.info("canary of model %r did not say what it serves: %r", model, exc)
                canary = previous
        if model in self._retired or self._generation.get(model, 0) != generation:
            return None
        self._canaries[model] = (canary, time.monotonic())
        return canary

    def _bench(self, model: str, canary: _Canary) -> None:
        """Stop routing to a canary that failed until the next look-up finds it again."""
        cached = self._canaries.get(model)
        if cached and cached[0] is canary:
            self._canaries[model] = (None, cached[1])

    def _canary_started(self, model: str) -> None:
        self._canary_calls[model] = self._canary_calls.get(model, 0) + 1

    def _canary_done(self, model: str) -> None:
        left = self._canary_calls.get(model, 0) - 1
        if left > 0:
            self._canary_calls[model] = left
        else:
            self._canary_calls.pop(model, None)

    async def _canary_answer(self, canary: _Canary, model: str, *args, **kwargs):
        """The canary's answer, or None when it failed and the primary must answer instead."""
        self._canary_started(model)
        try:
            reply = await _ask(canary.handle.infer.remote(*args, **kwargs), _CANARY_TIMEOUT_S)
        except Exception as exc:
            # Deleted a moment ago, restarting, or broken: never the client's problem.
            logger.warning(
                "canary %r of model %r failed (%s: %s); the primary answers",
                canary.version,
                model,
                type(exc).__name__,
                exc,
            )
            if not isinstance(exc, ray.exceptions.RayTaskError):
                self._bench(model, canary)
            return None
        finally:
            self._canary_done(model)
        return _reply(reply)

    def _shadow(self, canary: _Canary, model: str, *args, **kwargs) -> None:
        """Send the request to the canary too, in a background task nobody waits for."""
        if len(self._shadows) >= _MAX_SHADOWS:
            self._shadows_skipped += 1
            if self._shadows_skipped & (self._shadows_skipped - 1) == 0:  # 1, 2, 4, 8, ...
                logger.warning(
                    "%d shadow call(s) skipped: %d already in flight",
                    self._shadows_skipped,
                    len(self._shadows),
                )
            return
        try:
            response = canary.handle.infer.remote(*args, shadow=True, **kwargs)
        except Exception:
            logger.warning("shadow call to model %r's canary failed", model, exc_info=True)
            return
        self._canary_started(model)
        task = asyncio.get_running_loop().create_task(self._await_shadow(response, model))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _await_shadow(self, response, model: str) -> None:
        # Awaited here so that its errors are seen and logged, and a hung call is cancelled.
        try:
            reply = await _ask(response, _CALL_TIMEOUT_S)
            if reply.status != 200:
                logger.info("shadow call to model %r's canary answered %d", model, reply.status)
        except Exception:
            logger.warning("shadow call to model %r's canary failed", model, exc_info=True)
        finally:
            self._canary_done(model)

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
        token_hash = _token_hash(request)
        if token_hash is None:
            return _unauthorized()
        handle = await self._handle(model)
        if handle is None:
            return _error(404, f"model {model!r} is not deployed")
        # Used when the body has no id, by whichever replica answers and by the split choice.
        fallback_id = uuid.uuid4().hex
        args = (token_hash, body)
        kwargs = {"header_length": header_length, "request_id": fallback_id}
        canary = await self._first_canary(model)
        if canary is not None:
            if version is not None and version == canary.version:
                answer = await self._canary_answer(canary, model, *args, version=version, **kwargs)
                if answer is not None:
                    return answer
            elif canary.mode == "shadow":
                self._shadow(canary, model, *args, **kwargs)
            elif version is None and await self._splits_to_canary(
                body, header_length, fallback_id, canary.share
            ):
                answer = await self._canary_answer(canary, model, *args, **kwargs)
                if answer is not None:
                    return answer
        return await self._answer(handle, model, "infer", *args, version=version, **kwargs)

    async def _splits_to_canary(
        self, body: bytes, header_length: int | None, fallback_id: str, share: float | None
    ) -> bool:
        try:
            if len(body) > _INLINE_PARSE_BYTES:
                rid = await asyncio.to_thread(request_id_of, body, header_length)
            else:
                rid = request_id_of(body, header_length)
        except ValueError:
            return False  # the primary answers with the proper 400
        return share is not None and to_canary(rid or fallback_id, share)

    # Called by the control plane (cluster.serve._app) through a handle. All are coroutines so
    # that they run on the event loop with the routing code: Serve runs plain methods in a
    # thread pool, where they would race with it.

    async def served_version(self, model: str) -> str | None:
        """The version the ingress reaches for `model`, or None when it is not deployed."""
        self._handles.pop(model, None)
        handle = await self._handle(model)
        if handle is None:
            return None
        info = await asyncio.wait_for(_result(handle.info.remote()), _CALL_TIMEOUT_S)
        return info["version"]

    async def forget(self, model: str) -> None:
        """Drop the cached handle of `model` (after its app was deleted)."""
        self._handles.pop(model, None)

    async def canary_info(self, model: str, adopt: bool = False) -> dict | None:
        """Look `model`'s canary up now; its version, mode and share as routed, or None.

        Args:
            model: the model name.
            adopt: route to the canary again if `retire_canary` stopped that (default False).
        """
        if adopt:
            self._retired.discard(model)
        elif model in self._retired:
            return None
        self._generation[model] = self._generation.get(model, 0) + 1
        canary = await self._look_up(model, fresh=True)
        return canary.public() if canary else None

    async def retire_canary(self, model: str) -> int:
        """Stop routing to `model`'s canary; return how many calls to it are still in flight."""
        self._retired.add(model)
        self._generation[model] = self._generation.get(model, 0) + 1
        self._canaries.pop(model, None)
        return self._canary_calls.get(model, 0)

    async def forget_canary(self, model: str) -> None:
        """Forget `model`'s canary (after its app was deleted); look it up anew next time."""
        self._retired.discard(model)
        self._generation[model] = self._generation.get(model, 0) + 1
        self._canaries.pop(model, None)

    async def shadow_stats(self) -> dict[str, int]:
        """Shadow calls in flight now, and skipped so far because too many were."""
        return {"in_flight": len(self._shadows), "skipped": self._shadows_skipped}
