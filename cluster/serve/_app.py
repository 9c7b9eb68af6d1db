"""Deploy and remove models, and their canaries, on Ray Serve.

Three kinds of Serve application: ``model-{name}`` (route ``/v2/models/{name}``), one per model,
holding its primary (champion) replicas, which answer that route themselves, one hop from
Serve's proxy, and route to the canary; ``canary-{name}`` (no route), at most one per model,
holding a challenger; and ``oip`` (route ``/``), the front ingress for everything else (health,
the repository, gRPC, unknown models). Deploying a new version re-runs an application under the
same name, which Serve updates in place: its route stays, and requests reach the new version
once it is up. Every function here returns only once serving routes as it says.
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from ray import serve

from appliance.artifacts import read_artifact_file
from appliance.config import Config
from appliance.errors import CheckFailed, ConflictError, InvalidInput, NotFound
from appliance.names import check_name
from appliance.serving import ServingOptions
from cluster.bundle import ModelBundle
from cluster.runtime import ensure_ray
from cluster.serve._grpc import SERVICER_FUNCTION
from cluster.serve._ingress import (
    APP_NAME,
    OipIngress,
    ingress_settings,
    model_app_name,
)
from cluster.serve._model_server import ModelServer
from cluster.serve._prediction_log import prediction_schema
from cluster.serve._routing import MODES, canary_app_name

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_POLL_S = 0.2
# How long remove_canary waits for calls already sent to a canary (the primary gives up on a
# canary call after half of this, then asks the primary).
_DRAIN_S = 30.0
# Bound on one call from here to the ingress or to a replica's info().
_CONTROL_TIMEOUT_S = 60.0


class DeployFailed(CheckFailed):
    """Serve was asked to run a model and it did not come up in time."""


def serve_url(cfg: Config) -> str:
    """Base URL of the HTTP endpoint, e.g. ``http://127.0.0.1:8000``.

    A wildcard bind address (``0.0.0.0``, ``::``) is reached through loopback.
    """
    host = cfg.serve_host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.serve_port}"


def _validate(model: str, version: str, deployment: str, bundle_path: Path,
              log_columns: tuple[str, ...] = ()) -> None:
    check_name("model name", model)
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise InvalidInput(
            f"version {version!r} is not valid: use 1 to 64 letters, digits, '.', '_', '+' "
            "or '-', starting with a letter or digit"
        )
    check_name("deployment name", deployment)
    path = Path(bundle_path)
    if not path.is_file():
        raise NotFound(f"model bundle {str(path)!r} does not exist or is not a file")
    # Load it here: a bad bundle should fail this call, not crash-loop a replica.
    bundle = ModelBundle.from_bytes(read_artifact_file(path, f"model bundle {model}:{version}",
                                                       model=model))
    prediction_schema(bundle.feature_names, bundle.categorical, log_columns)


def _validate_canary(mode: str, share: float) -> float | None:
    """The share to route by (None in shadow mode, where the challenger sees everything)."""
    if mode not in MODES:
        raise InvalidInput(
            f"canary mode {mode!r} is not valid: use 'split' (a share of requests is answered "
            "by the challenger) or 'shadow' (the challenger scores every request, unseen)"
        )
    if mode == "shadow":
        return None
    number = isinstance(share, (int, float)) and not isinstance(share, bool)
    if not number or not math.isfinite(share) or not 0 < share < 1:
        raise InvalidInput(
            f"canary share {share!r} is not valid: use a number strictly between 0 and 1 "
            "(0.1 sends 10% of requests to the challenger)"
        )
    return float(share)


def _app_status(name: str) -> tuple[str | None, str]:
    app = serve.status().applications.get(name)
    if app is None:
        return None, ""
    # ApplicationStatus is a str Enum, whose str() is "ApplicationStatus.RUNNING".
    return getattr(app.status, "value", str(app.status)), app.message


def _wait(what: str, ready, timeout_s: float) -> None:
    """Poll `ready()` (returns True when done, raises DeployFailed on failure) until timeout."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise DeployFailed(f"{what} did not become ready within {timeout_s:.0f}s")
        time.sleep(_POLL_S)


def _failure(name: str) -> str:
    """Why application `name` failed: its deployments' messages, their error lines first.

    The application's own message is only "Failed to update the deployments [...]"; the cause
    (a replica's exception, pip's "ERROR: Could not find a version ...") is in theirs.
    """
    app = serve.status().applications.get(name)
    if app is None:
        return "it is gone"
    reasons = []
    for deployment in (getattr(app, "deployments", None) or {}).values():
        text = (getattr(deployment, "message", "") or "").strip()
        if not text:
            continue
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR") or "Error:" in ln]
        reasons.append(" | ".join((errors or lines[-3:])[:3]))
    return "; ".join(reasons) or app.message


def _running(name: str) -> bool:
    status, _ = _app_status(name)
    if status == "DEPLOY_FAILED":
        raise DeployFailed(f"Serve could not deploy application {name!r}: {_failure(name)}")
    return status == "RUNNING"


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _check_http_bind(cfg: Config) -> None:
    """Fail fast when Serve already listens elsewhere (serve.start only warns and goes on)."""
    # Private, but the only place the running proxies' HTTP config can be read back.
    from ray.serve.context import _get_global_client

    http = _get_global_client().http_config
    if (http.host, http.port) != (cfg.serve_host, cfg.serve_port):
        raise ConflictError(
            f"Ray Serve already listens on {http.host}:{http.port}, not on "
            f"{cfg.serve_host}:{cfg.serve_port} as configured; undeploy everything and run "
            "`serve shutdown`, or set serve_host/serve_port to match"
        )


def _start_serve(cfg: Config) -> None:
    ensure_ray(cfg)
    grpc = None
    if cfg.serve_grpc_port:
        # KServe v2's gRPC service, as tritonclient ships it; Serve's proxy calls the
        # ingress's methods of the same names. Only the first serve.start sets this.
        grpc = {"port": cfg.serve_grpc_port, "grpc_servicer_functions": [SERVICER_FUNCTION]}
    serve.start(http_options={"host": cfg.serve_host, "port": cfg.serve_port},
                grpc_options=grpc)
    _check_http_bind(cfg)


def _door(cfg: Config) -> dict:
    return ingress_settings(cfg.db_url, max_body_bytes=cfg.serve_max_body_bytes,
                            replicas=cfg.serve_ingress_replicas)


def _spec(
    cfg: Config,
    *,
    model: str,
    version: str,
    bundle_path: Path,
    deployment: str,
    serving: ServingOptions,
) -> dict:
    return {
        "door": _door(cfg),
        "model": model,
        "version": version,
        "deployment": deployment,
        "bundle_path": str(Path(bundle_path).resolve()),
        "artifacts": str(Path(cfg.artifacts).resolve()),
        "serving": serving.to_dict(),
    }


def _check_resources(serving: ServingOptions) -> None:
    """Refuse GPU replicas on a cluster without GPUs (Serve would wait for them forever)."""
    import ray

    if serving.num_gpus:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus <= 0:
            raise InvalidInput(
                f"serving num_gpus = {serving.num_gpus} but the Ray cluster has no GPU; "
                "set num_gpus = 0 or add a GPU node"
            )


def _ingress_current(settings: dict) -> bool:
    """Whether the running ingress was built with `settings`."""
    if _app_status(APP_NAME)[0] not in ("RUNNING", "DEPLOYING"):
        return False
    try:
        handle = serve.get_app_handle(APP_NAME)
        return handle.ingress_config.remote().result(timeout_s=_CONTROL_TIMEOUT_S) == settings
    except Exception:
        return False  # an ingress from before settings existed, or one that does not answer


def model_route(model: str) -> str:
    """The HTTP route a model's primary answers on."""
    return f"/v2/models/{model}"


def _run(cfg: Config, app, name: str, route: str | None = None) -> None:
    """Run `app` as the application `name` on `route` (default none), and the ingress with it
    when it is not current."""
    targets = [serve.RunTarget(app, name=name, route_prefix=route)]
    settings = _door(cfg)
    # Re-running an unchanged ingress would restart it (Serve versions code per run).
    if not _ingress_current(settings):
        ingress = OipIngress.options(num_replicas=settings["replicas"]).bind(settings)
        targets.append(serve.RunTarget(ingress, name=APP_NAME, route_prefix="/"))
    serve.run_many(targets, wait_for_applications_running=False)


def _model_app(spec: dict, serving: ServingOptions):
    return ModelServer.options(**serving.deployment_options()).bind(spec)


def _running_primary(model: str):
    """A handle on `model`'s primary (which routes to its canary), or None when not running."""
    if _app_status(model_app_name(model))[0] != "RUNNING":
        return None
    return serve.get_app_handle(model_app_name(model))


def _routed_version(url: str, model: str) -> str | None:
    """The version that answers `model`'s HTTP route now (None: not the model's app yet).

    Asked without a token: the model's own replicas refuse with 401 naming their version in
    ``x-model-version``, where the front ingress (no route of the model's yet) names none.
    """
    try:
        with urllib.request.urlopen(f"{url}{model_route(model)}/ready", timeout=2) as resp:
            return resp.headers.get("x-model-version")
    except urllib.error.HTTPError as exc:
        return exc.headers.get("x-model-version")
    except (urllib.error.URLError, OSError):
        return None


def _wait_http(cfg: Config, deadline: float) -> str:
    url = serve_url(cfg)
    _wait(f"HTTP endpoint {url}", lambda: _http_ready(url), max(1.0, deadline - time.monotonic()))
    return url


def deploy(
    cfg: Config,
    *,
    model: str,
    version: str,
    bundle_path: Path,
    deployment: str,
    serving: ServingOptions | None = None,
    timeout_s: float = 180.0,
) -> str:
    """Serve `version` of `model` over OIP v2 and return the base URL once it answers.

    Starts Ray (``ensure_ray``) and Serve (HTTP on ``cfg.serve_host:cfg.serve_port``) when
    needed. Redeploying a model with another version replaces it in place; the call returns
    only when the ingress routes to the new version.

    Args:
        cfg: the appliance configuration (Ray, HTTP bind address, artifact root for logs).
        model: the model name, used in the URL ``/v2/models/{model}``.
        version: the version being served, returned in every response.
        bundle_path: a ``ModelBundle`` file readable by every Ray node.
        deployment: names the prediction log folder ``predictions/{deployment}``.
        serving: batching, replicas, resources, environment (default: ``cfg.serving``).
        timeout_s: how long to wait for the model to answer (default 180).

    Callers are authenticated at the door of every replica they reach, against the tokens in
    ``cfg.db_url``.

    Raises:
        InvalidInput: a bad name or version, a file that is not a bundle, or GPUs asked of
            a cluster that has none.
        NotFound: `bundle_path` does not exist.
        ConflictError: Serve is already running on another host or port.
        DeployFailed: Serve did not bring the model up within `timeout_s`.
    """
    serving = serving or cfg.serving
    _validate(model, version, deployment, bundle_path, serving.log_columns)
    _start_serve(cfg)
    _check_resources(serving)
    spec = _spec(
        cfg,
        model=model,
        version=version,
        bundle_path=bundle_path,
        deployment=deployment,
        serving=serving,
    )
    app_name = model_app_name(model)
    _run(cfg, _model_app(spec, serving), app_name, model_route(model))

    what = f"model {model!r} version {version!r}"
    deadline = time.monotonic() + timeout_s
    _wait(what, lambda: _running(app_name) and _running(APP_NAME), timeout_s)
    ingress = serve.get_app_handle(APP_NAME)
    _wait(
        f"{what} behind the ingress",
        lambda: (
            ingress.served_version.remote(model).result(timeout_s=_CONTROL_TIMEOUT_S) == version
        ),
        max(1.0, deadline - time.monotonic()),
    )
    url = _wait_http(cfg, deadline)
    _wait(f"{what} on its HTTP route", lambda: _routed_version(url, model) == version,
          max(1.0, deadline - time.monotonic()))
    return url


def _primary_deployment(model: str, timeout_s: float) -> str:
    """The prediction log folder (deployment name) `model`'s primary writes to."""
    handle = serve.get_app_handle(model_app_name(model))
    try:
        return handle.info.remote().result(timeout_s=timeout_s)["deployment"]
    except TimeoutError as exc:
        raise DeployFailed(
            f"model {model!r}'s primary did not answer within {timeout_s:.0f}s; "
            "check `serve status` before adding a canary"
        ) from exc


def deploy_canary(
    cfg: Config,
    *,
    model: str,
    version: str,
    bundle_path: Path,
    deployment: str,
    serving: ServingOptions | None = None,
    mode: str = "split",
    share: float = 0.1,
    timeout_s: float = 180.0,
) -> str:
    """Serve `version` of `model` as a canary next to its primary; return the base URL.

    The challenger runs the same replica class as the primary, in its own application
    (``canary-{model}``), logging to the same folder. Only
    inference is routed to it; health, metadata, readiness and feedback stay with the primary.
    Deploying a canary again (another version, mode or share) updates it in place. Returns
    once the primary routes to the canary with these settings.

    Args:
        cfg: the appliance configuration.
        model: the model name; its primary must be deployed (`deploy`).
        version: the challenger's version, returned in every answer it gives.
        bundle_path: the challenger's ``ModelBundle`` file, readable by every Ray node.
        deployment: the prediction log folder ``predictions/{deployment}``; must be the
            primary's, so that both versions' rows land side by side.
        serving: the challenger's serving options (default: ``cfg.serving``).
        mode: ``"split"`` (default): the challenger answers a `share` of requests, chosen by
            a hash of the request id so the same id always gets the same version; ``"shadow"``:
            the primary answers every request and the challenger scores a copy, logged with
            ``shadow`` true, which no client sees.
        share: the fraction of requests a split canary answers, strictly between 0 and 1
            (default 0.1); ignored in shadow mode.
        timeout_s: how long to wait for the canary to be routed to (default 180).

    Raises:
        InvalidInput: a bad name, version, mode or (split) share, a file that is
            not a bundle, or a `deployment` other than the primary's.
        NotFound: `bundle_path` does not exist, or `model` has no primary deployed.
        ConflictError: Serve is already running on another host or port.
        DeployFailed: the canary was not routed to within `timeout_s`.
    """
    routed_share = _validate_canary(mode, share)
    serving = serving or cfg.serving
    _validate(model, version, deployment, bundle_path, serving.log_columns)
    ensure_ray(cfg)
    if _app_status(model_app_name(model))[0] is None:
        raise NotFound(
            f"model {model!r} is not deployed, and a canary needs a primary: deploy() it first"
        )
    _start_serve(cfg)
    deadline = time.monotonic() + timeout_s
    primary_deployment = _primary_deployment(model, min(timeout_s, _CONTROL_TIMEOUT_S))
    if primary_deployment != deployment:
        raise InvalidInput(
            f"deployment {deployment!r} is not the one model {model!r} logs to "
            f"({primary_deployment!r}); a canary logs next to its primary"
        )
    _check_resources(serving)
    spec = _spec(
        cfg,
        model=model,
        version=version,
        bundle_path=bundle_path,
        deployment=deployment,
        serving=serving,
    )
    spec["canary"] = {"mode": mode, "share": routed_share}
    app_name = canary_app_name(model)
    _run(cfg, _model_app(spec, serving), app_name)

    what = f"canary of model {model!r} version {version!r} ({mode})"
    expected = {"version": version, "mode": mode, "share": routed_share}
    _wait(
        what,
        lambda: _running(app_name) and _running(APP_NAME),
        max(1.0, deadline - time.monotonic()),
    )
    primary = serve.get_app_handle(model_app_name(model))
    _wait(
        f"{what} behind its primary",
        # adopt: a remove_canary that died half-way may have left the primary ignoring it.
        lambda: (
            primary.canary_info.remote(model, adopt=True).result(timeout_s=_CONTROL_TIMEOUT_S)
            == expected
        ),
        max(1.0, deadline - time.monotonic()),
    )
    return _wait_http(cfg, deadline)


def remove_canary(cfg: Config, model: str) -> bool:
    """Serve `model` from its primary alone again; return whether it had a canary.

    The primary stops sending requests to the canary first, calls already sent finish (for up
    to 30 s), and only then is the canary's application deleted, so no request is dropped
    (another primary replica that still routes to it falls back to answering itself). Returns
    once the primary no longer routes to the canary. Idempotent.

    Args:
        cfg: the appliance configuration.
        model: the model name.
    """
    ensure_ray(cfg)
    app_name = canary_app_name(model)
    exists = _app_status(app_name)[0] is not None
    primary = _running_primary(model)
    try:
        if exists and primary is not None:
            deadline = time.monotonic() + _DRAIN_S
            # retire_canary answers how many calls to the canary are still in flight.
            while (
                primary.retire_canary.remote(model).result(timeout_s=_CONTROL_TIMEOUT_S)
                and time.monotonic() < deadline
            ):
                time.sleep(_POLL_S)
        if exists:
            serve.delete(app_name)
    finally:
        if primary is not None:
            # Also undoes the retirement above when the delete failed: the canary still runs.
            primary.forget_canary.remote(model).result(timeout_s=_CONTROL_TIMEOUT_S)
    return exists


def canary_info(cfg: Config, model: str) -> dict | None:
    """The canary `model`'s primary routes requests to, or None when there is none.

    Returns ``{"version": str, "mode": "split" | "shadow", "share": float | None}`` (share is
    None in shadow mode), as the primary sees it after looking it up afresh.

    Args:
        cfg: the appliance configuration.
        model: the model name.
    """
    ensure_ray(cfg)
    primary = _running_primary(model)
    if primary is None:
        return None
    return primary.canary_info.remote(model).result(timeout_s=_CONTROL_TIMEOUT_S)


def undeploy(cfg: Config, model: str) -> None:
    """Stop serving `model`, and its canary if it has one; its route answers 404 once this returns.

    Args:
        cfg: the appliance configuration.
        model: the model name given to `deploy`.

    Raises:
        NotFound: `model` is not deployed.
    """
    ensure_ray(cfg)
    app_name = model_app_name(model)
    if _app_status(app_name)[0] is None:
        raise NotFound(f"model {model!r} is not deployed")
    remove_canary(cfg, model)
    serve.delete(app_name)
    if _app_status(APP_NAME)[0] == "RUNNING":
        # One ingress replica: drop its cached handle now rather than after the recheck period.
        serve.get_app_handle(APP_NAME).forget.remote(model).result()
