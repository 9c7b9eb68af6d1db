"""The model replica: one deployed model version, its batching and its prediction log.

The ingress authenticates, then forwards the raw request body and the request id it made;
everything that depends on the model (its features, its version, where its log goes, how it
batches) lives here, so promoting a new version is one in-place update of this application.

Requests that arrive together are scored together (`serve.batch`: up to ``max_batch_size``
requests, waiting at most ``batch_wait_timeout_s`` for a batch to fill), in a worker thread so
that the event loop keeps parsing the next ones. Each answered request's rows go to the
replica's `PredictionLogBuffer`, which writes many requests per Parquet file with fsync before
the rename; the answer waits for its rows' file to be in place (group commit: requests that
arrive while a file is being written share the next one), so a 200 always means logged, even
if the replica is killed a moment later. A full buffer answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from appliance.errors import InvalidInput
from appliance.monitor.feedback import write_feedback
from cluster.bundle import ModelBundle
from cluster.serve import _oip
from cluster.serve._log_buffer import LogBackpressure, LogClosed, PredictionLogBuffer
from cluster.serve._metrics import ReplicaMetrics
from cluster.serve._oip import Reply
from cluster.serve._prediction_log import PredictionLog

logger = logging.getLogger("ray.serve")

# Small on purpose: serving must fit next to a 1-CPU training job on a 2-CPU embedded Ray.
MODEL_CPUS = 0.2
# Bodies larger than this are parsed in a worker thread, off the event loop.
_INLINE_PARSE_BYTES = 64 * 1024


class _Scorer:
    """Scores a design matrix with the bundle's network, on a GPU when the replica has one."""

    def __init__(self, bundle: ModelBundle, num_gpus: float) -> None:
        import torch

        # A replica gets a fraction of a CPU; more threads than that only contend.
        torch.set_num_threads(1)
        self._torch = torch
        self.bundle = bundle
        self.device = "cuda" if num_gpus and torch.cuda.is_available() else "cpu"
        bundle.module.to(self.device).eval()

    def predict(self, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(self.bundle.preprocessor.transform(columns)).to(self.device)
        with torch.no_grad():
            scores = torch.sigmoid(self.bundle.module(x)).squeeze(-1).float().cpu().numpy()
        return (scores >= self.bundle.threshold).astype(np.int64), scores.astype(np.float32)


def _installed(requirements: list[str]) -> dict[str, str | None]:
    """Each required package's installed version here (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for requirement in requirements:
        name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _concat(parts: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {f: np.concatenate([p[f] for p in parts]) for f in names}


@serve.deployment(
    name="ModelServer",
    num_replicas=1,
    ray_actor_options={"num_cpus": MODEL_CPUS},
    max_ongoing_requests=64,
    health_check_period_s=10,
    graceful_shutdown_timeout_s=20,
)
class ModelServer:
    """Serves one model version.

    Args:
        spec: ``model``, ``version``, ``deployment``, ``bundle_path`` (a file every node can
            read), ``artifacts`` (the artifact root) and ``serving``
            (`appliance.serving.ServingOptions` as a dict: batching, log buffer, GPUs); a
            canary's spec also has ``canary``: ``{"mode": "split" | "shadow", "share": float |
            None}``, which `info` reports to the ingress (the ingress routes; this replica only
            logs what it is sent).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.model = spec["model"]
        self.version = spec["version"]
        self.deployment = spec["deployment"]
        self._canary = spec.get("canary")
        self._artifacts = Path(spec["artifacts"])
        options = spec.get("serving") or {}
        self.bundle = ModelBundle.from_bytes(Path(spec["bundle_path"]).read_bytes())
        self._features = self.bundle.feature_names
        self._categorical = set(self.bundle.categorical)
        self._scorer = self._make_scorer(Path(spec["bundle_path"]), options)
        self._score_batch.set_max_batch_size(int(options.get("max_batch_size", 32)))
        self._score_batch.set_batch_wait_timeout_s(float(options.get("batch_wait_s", 0.002)))
        self._metrics = ReplicaMetrics(self.model, self.version)
        self._packages = _installed((options.get("runtime_env") or {}).get("pip") or [])
        self.log = PredictionLog(
            self._artifacts,
            deployment=self.deployment,
            model=self.model,
            version=self.version,
            features=self._features,
            categorical=self._categorical,
        )
        self.log.folder.mkdir(parents=True, exist_ok=True)
        self._log_on = bool(options.get("log_predictions", True))
        self.buffer = PredictionLogBuffer(
            self.log,
            max_rows=int(options.get("log_max_rows", 200_000)),
            flush_interval_s=float(options.get("log_flush_s", 0.0)),
            # A failed write is answered with 503: those rows must never be logged later.
            retry_failed=False,
        )

    def _make_scorer(self, bundle_path: Path, options: dict[str, Any]):
        if options.get("backend", "torch") == "triton":
            # Deferred: only Triton-backed models need tritonclient's HTTP stack and the export.
            from cluster.export import export_bundle
            from cluster.serve._triton import TritonBackend

            return TritonBackend(self.bundle, export_bundle(bundle_path), name=self.model)
        return _Scorer(self.bundle, float(options.get("num_gpus", 0) or 0))

    def __del__(self) -> None:
        # Serve calls this on graceful shutdown: whatever is buffered reaches the disk.
        buffer = getattr(self, "buffer", None)
        if buffer is not None:
            buffer.close()
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
        mode too). The ingress learns a canary's settings from here. ``packages``: the version
        installed in this replica of each package its ``runtime_env`` asks for.
        """
        canary = self._canary or {}
        return {
            "model": self.model,
            "version": self.version,
            "deployment": self.deployment,
            "role": "canary" if self._canary else "primary",
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

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _score_batch(
        self, parts: list[dict[str, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        sizes = [len(next(iter(p.values()))) for p in parts]
        # The network runs in a thread: the loop meanwhile parses and queues the next batch.
        predictions, scores = await asyncio.to_thread(
            self._scorer.predict, _concat(parts, self._features)
        )
        self._metrics.batch(len(parts), sum(sizes))
        bounds = np.cumsum([0, *sizes])
        return [
            (predictions[a:b], scores[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

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
                "header_length": header_length}
        try:
            if len(body) > _INLINE_PARSE_BYTES:
                req = await asyncio.to_thread(parse, body, **args)
            else:
                req = parse(body, **args)
        except InvalidInput as exc:
            return _oip.error(400, str(exc), self._headers())
        predictions, scores = await self._score_batch(req.columns)
        if self._log_on:
            refused = await self._log(request_id, req, predictions, scores, shadow)
            if refused is not None:
                return refused
        return _oip.infer_reply(
            model=self.model,
            version=self.version,
            request=req,
            # The protocol echoes the client's id; the logged id comes back beside it.
            request_id=req.id or request_id,
            predictions=predictions,
            scores=scores,
            headers=self._headers(**{"x-appliance-request-id": request_id}),
            parameters={"request_id": request_id},
        )

    async def _log(self, request_id, req, predictions, scores, shadow) -> Reply | None:
        """Log one request's rows and wait until they are on disk; a Reply when that failed."""
        try:
            written = self.buffer.append(
                request_id, req.columns, predictions, scores, shadow=shadow, client_id=req.id
            )
        except InvalidInput as exc:
            # One request with more rows than the whole buffer holds: it could never be logged.
            return _oip.error(413, str(exc),
                              self._headers(**{"x-appliance-request-id": request_id}))
        except LogClosed:
            return _oip.error(503, "this replica is shutting down; retry",
                              self._headers(**{"Retry-After": "1",
                                               "x-appliance-request-id": request_id}))
        except LogBackpressure as exc:
            self._metrics.refused()
            retry = max(1, round(exc.retry_after_s))
            return _oip.error(
                503,
                f"the prediction log is full ({self.buffer.backlog_rows} rows waiting for the "
                f"disk); retry in {retry}s",
                self._headers(**{"Retry-After": str(retry), "x-appliance-request-id": request_id}),
            )
        try:
            await asyncio.wrap_future(written)
        except Exception as exc:
            # Served must equal logged: an unlogged prediction is never returned.
            logger.exception("prediction log write failed for request %s", request_id)
            return _oip.error(
                503,
                f"prediction could not be logged ({type(exc).__name__}: {exc}); "
                "check the artifact store's free space and permissions",
                self._headers(**{"Retry-After": "1", "x-appliance-request-id": request_id}),
            )
        return None

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

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Write every buffered row now; return the rows still waiting (0 when drained)."""
        await asyncio.to_thread(self.buffer.flush, timeout_s)
        return self.buffer.backlog_rows


