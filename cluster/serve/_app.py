"""Deploy and remove models on Ray Serve.

Two kinds of Serve application: ``oip`` (route ``/``), the one HTTP ingress for every model,
and ``model-{name}`` (no route), one per model, holding that model's replica. Deploying a new
version of a model re-runs its application under the same name, which Serve updates in place:
the ingress keeps routing to ``model-{name}`` and reaches the new version once it is up.
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from ray import serve

from appliance.config import Config
from appliance.errors import CheckFailed, ConflictError, InvalidInput, NotFound
from cluster.bundle import ModelBundle
from cluster.runtime import ensure_ray
from cluster.serve._ingress import APP_NAME, NAME_RE, OipIngress, model_app_name
from cluster.serve._model_server import ModelServer
from cluster.serve._prediction_log import prediction_schema

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_POLL_S = 0.2


class DeployFailed(CheckFailed):
    """Serve was asked to run a model and it did not come up in time."""


def hash_token(token: str) -> str:
    """The sha256 hex digest of a bearer token, the form in which serving accepts tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


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


def _check_name(kind: str, value: str, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInput(
            f"{kind} {value!r} is not valid: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _validate(
    model: str, version: str, deployment: str, bundle_path: Path, token_hashes: list[str]
) -> None:
    _check_name("model name", model, NAME_RE)
    _check_name("version", version, _VERSION_RE)
    _check_name("deployment name", deployment, NAME_RE)
    if not token_hashes:
        raise InvalidInput(
            f"no token may call model {model!r}: pass at least one token hash (hash_token(token))"
        )
    bad = [h for h in token_hashes if not isinstance(h, str) or not _HEX64.match(h.lower())]
    if bad:
        raise InvalidInput(f"token hash(es) {bad} are not sha256 hex digests; use hash_token()")
    path = Path(bundle_path)
    if not path.is_file():
        raise NotFound(f"model bundle {str(path)!r} does not exist or is not a file")
    # Load it here: a bad bundle should fail this call, not crash-loop a replica.
    bundle = ModelBundle.from_bytes(path.read_bytes())
    prediction_schema(bundle.feature_names, bundle.categorical)


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


def _running(name: str) -> bool:
    status, message = _app_status(name)
    if status == "DEPLOY_FAILED":
        raise DeployFailed(f"Serve could not deploy application {name!r}: {message}")
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


def deploy(
    cfg: Config,
    *,
    model: str,
    version: str,
    bundle_path: Path,
    deployment: str,
    token_hashes: list[str],
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
        token_hashes: sha256 hex digests (`hash_token`) of the bearer tokens allowed to call.
        timeout_s: how long to wait for the model to answer (default 180).

    Raises:
        InvalidInput: a bad name, version or token hash, or a file that is not a bundle.
        NotFound: `bundle_path` does not exist.
        ConflictError: Serve is already running on another host or port.
        DeployFailed: Serve did not bring the model up within `timeout_s`.
    """
    _validate(model, version, deployment, bundle_path, token_hashes)
    ensure_ray(cfg)
    serve.start(http_options={"host": cfg.serve_host, "port": cfg.serve_port})
    _check_http_bind(cfg)
    spec = {
        "model": model,
        "version": version,
        "deployment": deployment,
        "bundle_path": str(Path(bundle_path).resolve()),
        "artifacts": str(Path(cfg.artifacts).resolve()),
        "token_hashes": [h.lower() for h in token_hashes],
    }
    app_name = model_app_name(model)
    targets = [serve.RunTarget(ModelServer.bind(spec), name=app_name, route_prefix=None)]
    # Re-running an unchanged ingress would restart it (Serve versions code per run).
    if _app_status(APP_NAME)[0] not in ("RUNNING", "DEPLOYING"):
        targets.append(serve.RunTarget(OipIngress.bind(), name=APP_NAME, route_prefix="/"))
    serve.run_many(targets, wait_for_applications_running=False)

    what = f"model {model!r} version {version!r}"
    deadline = time.monotonic() + timeout_s
    _wait(what, lambda: _running(app_name) and _running(APP_NAME), timeout_s)
    ingress = serve.get_app_handle(APP_NAME)
    _wait(
        f"{what} behind the ingress",
        lambda: ingress.served_version.remote(model).result(timeout_s=60) == version,
        max(1.0, deadline - time.monotonic()),
    )
    url = serve_url(cfg)
    _wait(f"HTTP endpoint {url}", lambda: _http_ready(url), max(1.0, deadline - time.monotonic()))
    return url


def undeploy(cfg: Config, model: str) -> None:
    """Stop serving `model`; its route answers 404 once this returns.

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
    serve.delete(app_name)
    if _app_status(APP_NAME)[0] == "RUNNING":
        # One ingress replica: drop its cached handle now rather than after the recheck period.
        serve.get_app_handle(APP_NAME).forget.remote(model).result()
