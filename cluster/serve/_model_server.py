"""The model replica: one deployed model version, its auth and its prediction log.

The ingress forwards the raw request body and the caller's token hash; everything that depends
on the model (its features, its version, which tokens may call it, where its log goes) lives
here, so promoting a new version is one in-place update of this application.
"""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from ray import serve

from appliance.errors import InvalidInput
from appliance.monitor.feedback import write_feedback
from cluster.bundle import ModelBundle
from cluster.serve import _oip
from cluster.serve._oip import Reply
from cluster.serve._prediction_log import PredictionLog

logger = logging.getLogger("ray.serve")

# Small on purpose: serving must fit next to a 1-CPU training job on a 2-CPU embedded Ray.
MODEL_CPUS = 0.2


@serve.deployment(
    name="ModelServer",
    num_replicas=1,
    ray_actor_options={"num_cpus": MODEL_CPUS},
    max_ongoing_requests=16,
    health_check_period_s=10,
    graceful_shutdown_timeout_s=10,
)
class ModelServer:
    """Serves one model version.

    Args:
        spec: ``model``, ``version``, ``deployment``, ``bundle_path`` (a file every node can
            read), ``artifacts`` (the artifact root) and ``token_hashes`` (sha256 hex digests of
            the bearer tokens allowed to call this model); a canary's spec also has ``canary``:
            ``{"mode": "split" | "shadow", "share": float | None}``, which `info` reports to the
            ingress (the ingress routes; this replica only logs what it is sent).
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        # One replica gets a fraction of a CPU; more threads than that only contend.
        torch.set_num_threads(1)
        self.model = spec["model"]
        self.version = spec["version"]
        self.deployment = spec["deployment"]
        self._canary = spec.get("canary")
        self._artifacts = Path(spec["artifacts"])
        self._token_hashes = [str(h).lower() for h in spec["token_hashes"]]
        self.bundle = ModelBundle.from_bytes(Path(spec["bundle_path"]).read_bytes())
        self._categorical = set(self.bundle.categorical)
        self.log = PredictionLog(
            self._artifacts,
            deployment=self.deployment,
            model=self.model,
            version=self.version,
            features=self.bundle.feature_names,
            categorical=self._categorical,
        )
        self.log.folder.mkdir(parents=True, exist_ok=True)

    def check_health(self) -> None:
        """Unhealthy when predictions could not be logged (so none would be served)."""
        if not os.access(self.log.folder, os.W_OK):
            raise RuntimeError(f"prediction log folder {str(self.log.folder)!r} is not writable")

    def info(self) -> dict[str, Any]:
        """What this replica serves (internal; no auth).

        ``model``, ``version``, ``deployment``, ``role`` (``"primary"`` or ``"canary"``), and
        for a canary its ``mode`` and ``share`` (None otherwise; ``share`` is None in shadow
        mode too). The ingress learns a canary's settings from here.
        """
        canary = self._canary or {}
        return {
            "model": self.model,
            "version": self.version,
            "deployment": self.deployment,
            "role": "canary" if self._canary else "primary",
            "mode": canary.get("mode"),
            "share": canary.get("share"),
        }

    def _denied(self, token_hash: str | None, version: str | None) -> Reply | None:
        if token_hash is None or not any(
            hmac.compare_digest(token_hash, h) for h in self._token_hashes
        ):
            return _oip.error(
                401,
                f"the bearer token is not valid for model {self.model!r}",
                {"WWW-Authenticate": "Bearer"},
            )
        if version is not None and version != self.version:
            return _oip.error(
                404,
                f"model {self.model!r} version {version!r} is not served; "
                f"the served version is {self.version!r}",
            )
        return None

    def _headers(self) -> dict[str, str]:
        return {"x-model-version": self.version}

    def metadata(self, token_hash: str | None, version: str | None = None) -> Reply:
        """v2 model metadata.

        Args:
            token_hash: sha256 hex of the caller's bearer token, or None when it sent none.
            version: the version named in the URL (default None: any).
        """
        denied = self._denied(token_hash, version)
        if denied:
            return denied
        body = _oip.model_metadata(
            model=self.model,
            version=self.version,
            features=self.bundle.feature_names,
            categorical=self._categorical,
        )
        return Reply(200, body, self._headers())

    def ready(self, token_hash: str | None, version: str | None = None) -> Reply:
        """v2 model readiness (a live replica with a loaded bundle is ready).

        Args:
            token_hash: sha256 hex of the caller's bearer token, or None.
            version: the version named in the URL (default None: any).
        """
        denied = self._denied(token_hash, version)
        if denied:
            return denied
        body = {"name": self.model, "version": self.version, "ready": True}
        return Reply(200, body, self._headers())

    def infer(
        self,
        token_hash: str | None,
        body: bytes,
        *,
        version: str | None = None,
        header_length: int | None = None,
        request_id: str | None = None,
        shadow: bool = False,
    ) -> Reply:
        """Predict, log, answer; the log write must succeed before the answer goes out.

        Args:
            token_hash: sha256 hex of the caller's bearer token, or None.
            body: the raw request body.
            version: the version named in the URL (default None: any).
            header_length: ``Inference-Header-Content-Length`` when the binary extension is
                used (default None).
            request_id: the id to log and return when the body has none (default None: make
                one up). The ingress passes the id it routed a canary split by, so both sides
                of a split, and a shadow with its primary, log one id per request.
            shadow: the ingress sends this request in the shadow of another version's answer;
                the rows are logged with ``shadow`` true (default False).
        """
        denied = self._denied(token_hash, version)
        if denied:
            return denied
        try:
            req = _oip.parse_infer_request(
                body,
                features=self.bundle.feature_names,
                categorical=self._categorical,
                header_length=header_length,
            )
            predictions, scores = self.bundle.predict(req.columns)
        except InvalidInput as exc:
            return _oip.error(400, str(exc), self._headers())
        rid = req.id or request_id or uuid.uuid4().hex
        try:
            self.log.write(rid, req.columns, predictions, scores, shadow=shadow)
        except Exception as exc:
            # Served must equal logged: an unlogged prediction is never returned.
            logger.exception("prediction log write failed for request %s", rid)
            return _oip.error(
                503,
                f"prediction could not be logged ({type(exc).__name__}: {exc}); "
                "check the artifact store's free space and permissions",
                self._headers(),
            )
        body_out = _oip.infer_response(
            model=self.model,
            version=self.version,
            request_id=rid,
            predictions=predictions,
            scores=scores,
            outputs=req.outputs,
        )
        return Reply(200, body_out, self._headers())

    def feedback(self, token_hash: str | None, body: bytes) -> Reply:
        """Record ground-truth labels for a served request.

        Args:
            token_hash: sha256 hex of the caller's bearer token, or None.
            body: the raw request body (see `cluster.serve._oip.parse_feedback`).
        """
        denied = self._denied(token_hash, None)
        if denied:
            return denied
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
