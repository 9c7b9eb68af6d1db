"""The model replica: one deployed model version, its HTTP routes, batching and prediction log.

A model's primary application is served on the route ``/v2/models/{model}``: Serve's proxy
hands its requests straight to these replicas, one hop, and the replica checks the token and
scope at its door (`cluster.serve._door`), reads the body, makes the request id, and answers.
A primary also routes to its model's canary (`cluster.serve._canary_routing`): the split share
goes to the challenger's application by handle, a shadow copy in the background; the rest it
scores itself. Everything that depends on the model (its features, its version, where its
log goes, how it batches) lives here, so promoting a new version is one in-place update of
this application. The front ingress (``oip``, route ``/``) keeps health, server metadata, the
repository, gRPC, and the 404 for a model that is not deployed.

Requests that arrive together are scored together (`serve.batch`: up to ``max_batch_size``
requests, waiting at most ``batch_wait_timeout_s`` for a batch to fill): a large batch in a
worker thread, so that the event loop keeps parsing the next ones, a small one on the CPU
inline (`TorchScorer.inline_rows`). A scored batch's rows go to the replica's
`PredictionLogBuffer` with one write to its journal segment before any of its requests is
answered, so a 200 always means logged, even if the replica is killed a moment later (the
next replica publishes what a killed one left); the segment is fsynced and published on an
interval, off the request's path. A full buffer answers 503 with ``Retry-After``.
"""

# No `from __future__ import annotations`: Serve ships this class by value, and inspects the
# annotation of `__call__`'s request.
import asyncio
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from appliance.artifacts import read_artifact_file
from appliance.errors import InvalidInput
from appliance.monitor.feedback import write_feedback
from appliance.monitor.log_files import recover_segments
from appliance.serving import ServingOptions
from cluster.bundle import ModelBundle
from cluster.scoring import BundleScorer, TorchScorer, installed
from cluster.serve import _oip
from cluster.serve._canary_routing import CanaryRouting
from cluster.serve._door import BodyTooLarge, Door
from cluster.serve._log_buffer import (
    LogBackpressure,
    LogClosed,
    LoggedRequest,
    LogWriteFailed,
    PredictionLogBuffer,
)
from cluster.serve._metrics import IngressMetrics, ReplicaMetrics
from cluster.serve._oip import Reply
from cluster.serve._prediction_log import PredictionLog
from cluster.serve._routing import new_request_id

logger = logging.getLogger("ray.serve")

# Small on purpose: serving must fit next to a 1-CPU training job on a 2-CPU embedded Ray.
MODEL_CPUS = 0.2
# Bodies larger than this are parsed in a worker thread, off the event loop.
_INLINE_PARSE_BYTES = 64 * 1024


def _route(path: str) -> tuple[str, str | None] | None:
    """(route, version) for a path under the model's route (``/v2/models/{model}``), or None.

    Routes: ``""`` (metadata), ``ready``, ``infer``, ``feedback``, each also under
    ``/versions/{version}`` but feedback. The replica routes by hand rather than through a web
    framework: at one request in flight, a framework's middleware and dependency layers cost
    the replica more CPU than the model's own work.
    """
    parts = path.strip("/").split("/") if path.strip("/") else []
    version = None
    if len(parts) >= 2 and parts[0] == "versions" and parts[1]:
        version, parts = parts[1], parts[2:]
    if not parts:
        return "metadata", version
    if len(parts) == 1 and parts[0] in ("ready", "infer") or (
            parts == ["feedback"] and version is None):
        return parts[0], version
    return None


# Which method each route answers; HEAD goes with GET, as web frameworks do.
_METHODS = {"metadata": ("GET", "HEAD"), "ready": ("GET", "HEAD"), "infer": ("POST",),
            "feedback": ("POST",)}


def _http(reply: Reply) -> Response:
    if isinstance(reply.body, (bytes, bytearray)):
        # Binary tensor extension: the body is encoded, its headers are set.
        return Response(bytes(reply.body), status_code=reply.status, headers=reply.headers)
    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)


@dataclasses.dataclass(frozen=True)
class _Job:
    """One parsed request, as the batch scores and logs it."""

    columns: dict[str, np.ndarray]
    request_id: str
    client_id: str | None
    shadow: bool


@dataclasses.dataclass
class _Scored:
    """One request's share of a scored batch: its answer, and the error it must get instead
    when its rows could not be logged (None otherwise)."""

    predictions: np.ndarray
    scores: np.ndarray
    refusal: Reply | None = None
    # A multiclass model's per-class probabilities (rows, classes); None for other tasks.
    probabilities: np.ndarray | None = None


def _concat(parts: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {f: np.concatenate([p[f] for p in parts]) for f in names}


# Serve pickles the class when it is decorated, so everything it uses is defined above it.
@serve.deployment(
    name="ModelServer",
    num_replicas=1,
    ray_actor_options={"num_cpus": MODEL_CPUS},
    max_ongoing_requests=64,
    health_check_period_s=10,
    graceful_shutdown_timeout_s=20,
)
class ModelServer(CanaryRouting):
    """Serves one model version.

    Args:
        spec: ``model``, ``version``, ``deployment``, ``bundle_path`` (a file every node can
            read), ``artifacts`` (the artifact root) and ``serving``
            (`appliance.serving.ServingOptions` as a dict: batching, log buffer, GPUs), and
            ``door`` (token store and body limit: `cluster.serve._ingress.ingress_settings`); a
            canary's spec also has ``canary``: ``{"mode": "split" | "shadow", "share": float |
            None}``, which `info` reports to the primary (the primary routes; a canary only
            scores and logs what it is sent).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.model = spec["model"]
        self.version = spec["version"]
        self.deployment = spec["deployment"]
        self._canary_spec = spec.get("canary")
        self._door = Door(spec["door"])
        self._http_metrics = IngressMetrics()
        self._init_canaries()
        self._artifacts = Path(spec["artifacts"])
        options = spec.get("serving") or {}
        # Re-hashed where it is used: a bundle altered on the shared filesystem is refused here
        # (and logged critical; a replica has no store to raise the alert in).
        self.bundle = ModelBundle.from_bytes(read_artifact_file(
            Path(spec["bundle_path"]), f"model bundle {self.model}:{self.version}",
            model=self.model))
        self._features = self.bundle.feature_names
        self._categorical = set(self.bundle.categorical)
        self._scorer = self._make_scorer(Path(spec["bundle_path"]), options)
        self._score_batch.set_max_batch_size(int(options.get("max_batch_size", 32)))
        self._score_batch.set_batch_wait_timeout_s(float(options.get("batch_wait_s", 0.0)))
        self._metrics = ReplicaMetrics(self.model, self.version)
        self._packages = installed((options.get("runtime_env") or {}).get("pip") or [])
        self.log = PredictionLog(
            self._artifacts,
            deployment=self.deployment,
            model=self.model,
            version=self.version,
            features=self._features,
            categorical=self._categorical,
            extra=list(options.get("log_columns") or ()),
        )
        self._log_columns = list(options.get("log_columns") or ())
        self.log.folder.mkdir(parents=True, exist_ok=True)
        # The rows a killed replica of this deployment answered reach the monitor now.
        recover_segments(self.log.folder)
        self._log_on = bool(options.get("log_predictions", True))
        self.buffer = PredictionLogBuffer(
            self.log,
            max_rows=int(options.get("log_max_rows", 200_000)),
            flush_interval_s=float(options.get("log_flush_s", ServingOptions.log_flush_s)),
        )

    def _make_scorer(self, bundle_path: Path, options: dict[str, Any]):
        if options.get("backend", "torch") == "triton":
            # Deferred: only Triton-backed models need tritonclient's HTTP stack and the export.
            from cluster.export import export_bundle
            from cluster.serve._triton import TritonBackend

            if self.bundle.task != "binary" or self.bundle.kind != "mlp":
                raise InvalidInput(
                    f"the triton backend serves binary MLP classifiers only; {self.model}:"
                    f"{self.version} is a {self.bundle.task} {self.bundle.kind}: serve it with "
                    f"backend 'torch'"
                )

            return TritonBackend(self.bundle, export_bundle(bundle_path), name=self.model)
        if self.bundle.kind == "xgboost":
            return BundleScorer(self.bundle)
        return TorchScorer(self.bundle, float(options.get("num_gpus", 0) or 0))

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: whatever is buffered reaches the disk.
        buffer = getattr(self, "buffer", None)
        try:
            if buffer is not None:
                buffer.close()
        except Exception:
            # What could not be published stays in the journal for the next replica.
            logger.exception("prediction log of %s v%s did not drain at shutdown",
                             self.model, self.version)
        close = getattr(getattr(self, "_scorer", None), "close", None)
        if close is not None:
            close()

    def check_health(self) -> None:
        """Unhealthy when predictions could not be logged (so none would be served), or when
        the Triton server behind this replica stopped answering."""
        if not os.access(self.log.folder, os.W_OK):
            raise RuntimeError(f"prediction log folder {str(self.log.folder)!r} is not writable")
        health = getattr(self._scorer, "check_health", None)
        if health is not None:
            health()
        self._metrics.backlog(self.buffer.backlog_rows)

    def info(self) -> dict[str, Any]:
        """What this replica serves (internal).

        ``model``, ``version``, ``deployment``, ``role`` (``"primary"`` or ``"canary"``), and
        for a canary its ``mode`` and ``share`` (None otherwise; ``share`` is None in shadow
        mode too). The primary learns its canary's settings from here. ``packages``: the version
        installed in this replica of each package its ``runtime_env`` asks for.
        """
        canary = self._canary_spec or {}
        return {
            "model": self.model,
            "version": self.version,
            "deployment": self.deployment,
            "role": "canary" if self._canary_spec else "primary",
            "mode": canary.get("mode"),
            "share": canary.get("share"),
            "packages": self._packages,
        }

    def _wrong_version(self, version: str | None) -> Reply | None:
        if version is not None and version != self.version:
            return _oip.error(
                404,
                f"model {self.model!r} version {version!r} is not served; "
                f"the served version is {self.version!r}",
            )
        return None

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"x-model-version": self.version, **extra}

    async def metadata(self, version: str | None = None) -> Reply:
        """v2 model metadata.

        Args:
            version: the version named in the URL (default None: any).
        """
        wrong = self._wrong_version(version)
        if wrong:
            return wrong
        body = _oip.model_metadata(
            model=self.model,
            version=self.version,
            features=self._features,
            categorical=self._categorical,
            task=self.bundle.task,
            classes=self.bundle.classes,
        )
        return Reply(200, body, self._headers())

    async def ready(self, version: str | None = None) -> Reply:
        """v2 model readiness (a live replica with a loaded bundle is ready).

        Args:
            version: the version named in the URL (default None: any).
        """
        wrong = self._wrong_version(version)
        if wrong:
            return wrong
        body = {"name": self.model, "version": self.version, "ready": True}
        return Reply(200, body, self._headers())

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _score_batch(self, jobs: list[_Job]) -> list[_Scored]:
        sizes = [len(next(iter(job.columns.values()))) for job in jobs]
        columns = _concat([job.columns for job in jobs], self._features)
        if sum(sizes) <= getattr(self._scorer, "inline_rows", 0):
            # A small batch on the CPU scores faster than a hand-off to a thread costs.
            out = self._scorer.predict(columns)
        else:
            # The network runs in a thread: the loop meanwhile parses and queues the next batch.
            out = await asyncio.to_thread(self._scorer.predict, columns)
        # (predictions, scores), and a multiclass model's probabilities (`bundle.Outputs`).
        predictions, scores = out[0], out[1]
        proba = out[2] if len(out) > 2 else None
        self._metrics.batch(len(jobs), sum(sizes))
        bounds = np.cumsum([0, *sizes])
        scored = [
            _Scored(predictions[a:b], scores[a:b],
                    probabilities=None if proba is None else proba[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        if self._log_on:
            self._log_batch(jobs, scored)
        return scored

    def _log_batch(self, jobs: list[_Job], scored: list[_Scored]) -> None:
        """Log the batch's rows with one write, or set the error each request must get
        instead (served == logged: an unlogged prediction is never returned)."""
        fits = []
        for job, out in zip(jobs, scored, strict=True):
            if len(out.predictions) > self.buffer.max_rows:
                # One request with more rows than the whole buffer holds: it could never be
                # logged.
                out.refusal = _oip.error(
                    413,
                    f"request {job.request_id!r} has {len(out.predictions)} rows, more than "
                    f"the prediction log buffer holds (max_rows={self.buffer.max_rows}); send "
                    "smaller batches",
                    self._headers(**{"x-appliance-request-id": job.request_id}))
            else:
                fits.append((job, out))
        if not fits:
            return
        try:
            self.buffer.append_many([
                LoggedRequest(job.request_id, job.columns, out.predictions, out.scores,
                              shadow=job.shadow, client_id=job.client_id)
                for job, out in fits
            ])
        except LogClosed:
            status, message, retry = 503, "this replica is shutting down; retry", 1
        except LogBackpressure as exc:
            retry = max(1, round(exc.retry_after_s))
            status, message = 503, (
                f"the prediction log is full ({self.buffer.backlog_rows} rows waiting for the "
                f"disk); retry in {retry}s")
            for _ in fits:
                self._metrics.refused()
        except LogWriteFailed as exc:
            logger.error("prediction log write failed for %d requests: %s", len(fits),
                         exc.__cause__)
            status, retry = 503, 1
            message = (f"prediction could not be logged ({exc.__cause__}); check the artifact "
                       "store's free space and permissions")
        else:
            return
        for job, out in fits:
            out.refusal = _oip.error(status, message, self._headers(
                **{"Retry-After": str(retry), "x-appliance-request-id": job.request_id}))

    async def infer(
        self,
        body: bytes,
        *,
        request_id: str,
        version: str | None = None,
        header_length: int | None = None,
        shadow: bool = False,
    ) -> Reply:
        """Predict, log, answer; the rows are on disk before the answer goes out.

        Args:
            body: the raw request body.
            request_id: the id the ingress made for this request, unique; logged and returned
                (the client's own id, if any, is echoed as ``id`` and logged as ``client_id``).
            version: the version named in the URL (default None: any).
            header_length: ``Inference-Header-Content-Length`` when the binary extension is
                used (default None).
            shadow: the ingress sends this request in the shadow of another version's answer;
                the rows are logged with ``shadow`` true (default False).
        """
        wrong = self._wrong_version(version)
        if wrong:
            return wrong
        parse = _oip.parse_infer_request
        args = {"features": self._features, "categorical": self._categorical,
                "header_length": header_length, "extra": self._log_columns}
        try:
            if len(body) > _INLINE_PARSE_BYTES:
                req = await asyncio.to_thread(parse, body, **args)
            else:
                req = parse(body, **args)
        except InvalidInput as exc:
            return _oip.error(400, str(exc), self._headers())
        out = await self._score_batch(_Job(req.columns, request_id, req.id, shadow))
        if out.refusal is not None:
            return out.refusal
        return _oip.infer_reply(
            model=self.model,
            version=self.version,
            request=req,
            # The protocol echoes the client's id; the logged id comes back beside it.
            request_id=req.id or request_id,
            # A regressor answers its value as the prediction (its logged class is 0).
            predictions=out.scores if self.bundle.task == "regression" else out.predictions,
            scores=out.scores,
            probabilities=out.probabilities,
            headers=self._headers(**{"x-appliance-request-id": request_id}),
            parameters={"request_id": request_id},
        )

    def feedback(self, body: bytes) -> Reply:
        """Record ground-truth labels for a served request.

        Args:
            body: the raw request body (see `cluster.serve._oip.parse_feedback`); its
                ``request_id`` is the one the infer response returned.
        """
        try:
            fb = _oip.parse_feedback(body)
        except InvalidInput as exc:
            return _oip.error(400, str(exc))
        try:
            write_feedback(self._artifacts, self.deployment, fb.request_id, fb.rows, fb.labels)
        except Exception as exc:
            logger.exception("feedback write failed for request %s", fb.request_id)
            return _oip.error(503, f"feedback could not be stored ({type(exc).__name__}: {exc})")
        return Reply(200, {"request_id": fb.request_id, "rows": len(fb.rows)}, self._headers())

    # HTTP: Serve's proxy sends ``/v2/models/{model}/...`` here.

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
        found = _route(path[len(root):] if root and path.startswith(root) else path)
        if found is None:
            return self._finish("unknown", _oip.error(
                404, f"no route {path!r} for model {self.model!r}; the routes are '', "
                "'/ready', '/infer', '/feedback' and '/versions/{version}/...'"), started)
        route, version = found
        if request.method not in _METHODS[route]:
            allowed = ", ".join(_METHODS[route])
            return self._finish(route, _oip.error(
                405, f"method {request.method} is not allowed on {path!r}; use {allowed}",
                {"Allow": allowed}), started)
        if route == "infer":
            return await self._http_infer(request, version, started)
        if route == "feedback":
            return await self._http_feedback(request, started)
        return await self._http_call(request, route, version, started)

    async def _http_feedback(self, request: Request, started: float) -> Response:
        reply = self._door.denied(request.headers.get("authorization"), "feedback",
                                  self._headers())
        if reply is None:
            try:
                body = await self._door.read_body(request)
            except BodyTooLarge:
                reply = self._door.too_large(self._headers())
            else:
                # A small file write; off the loop all the same.
                reply = await asyncio.to_thread(self.feedback, body)
        return self._finish("feedback", reply, started)

    def _finish(self, route: str, reply: Reply, started: float) -> Response:
        self._http_metrics.done(self.model, route, reply, started)
        return _http(reply)

    async def _http_call(self, request: Request, route: str, version: str | None,
                         started: float) -> Response:
        # Refusals name the version too: the control plane reads it to see the route is ours.
        reply = self._door.denied(request.headers.get("authorization"), "infer", self._headers())
        if reply is None:
            reply = await (self.metadata(version) if route == "metadata" else self.ready(version))
        return self._finish(route, reply, started)

    async def _http_infer(self, request: Request, version: str | None,
                          started: float) -> Response:
        reply = self._door.denied(request.headers.get("authorization"), "infer", self._headers())
        if reply is None:
            reply = await self._read_and_route(request, version)
        return self._finish("infer", reply, started)

    async def _read_and_route(self, request: Request, version: str | None) -> Reply:
        raw = request.headers.get("inference-header-content-length")
        header_length = None
        if raw is not None:
            try:
                header_length = int(raw)
            except ValueError:
                return _oip.error(
                    400, f"Inference-Header-Content-Length must be an integer, got {raw!r}",
                    self._headers(),
                )
        try:
            body = await self._door.read_body(request)
        except BodyTooLarge:
            return self._door.too_large(self._headers())
        # The id every log row of this request carries, unique whatever the client sends.
        request_id = new_request_id()
        reply = await self.route_infer(body, request_id=request_id, version=version,
                                       header_length=header_length)
        headers = reply.headers or {}
        if headers.get("x-appliance-request-id") != request_id:
            # Errors made on the way (a canary that failed, say) name the request too.
            reply = reply._replace(headers={**headers, "x-appliance-request-id": request_id})
        return reply

    async def route_infer(
        self,
        body: bytes,
        *,
        request_id: str,
        version: str | None = None,
        header_length: int | None = None,
    ) -> Reply:
        """Answer one inference as routing says: the canary's share there, the rest here.

        Called for HTTP requests by this replica's own routes, and by the front ingress for
        gRPC. A canary replica never routes: it answers what it is sent.

        Args:
            body: the raw request body.
            request_id: the id the rows are logged under (unique per request).
            version: the version named in the URL (default None: any).
            header_length: ``Inference-Header-Content-Length`` (default None).
        """
        kwargs = {"header_length": header_length, "request_id": request_id}
        canary = await self._first_canary(self.model) if self._canary_spec is None else None
        if canary is not None:
            if version is not None and version == canary.version:
                answer = await self._canary_answer(canary, self.model, body, version=version,
                                                   **kwargs)
                if answer is not None:
                    return answer
            elif canary.mode == "shadow":
                self._shadow(canary, self.model, body, **kwargs)
            elif version is None and await self._splits_to_canary(
                body, header_length, request_id, canary.share
            ):
                answer = await self._canary_answer(canary, self.model, body, **kwargs)
                if answer is not None:
                    return answer
        return await self.infer(body, version=version, **kwargs)

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Write every buffered row now; return the rows still waiting (0 when drained)."""
        await asyncio.to_thread(self.buffer.flush, timeout_s)
        return self.buffer.backlog_rows


