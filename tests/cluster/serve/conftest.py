"""Fixtures of the cluster.serve module tests: a trained bundle file, and one real Ray Serve
for the replica and ingress modules, whose classes also run in this process against it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from serve_helpers import DEPLOYMENT, MODEL, make_bundle, serve_config

# The live endpoint's body limit: small, so that a request over it is cheap to make.
MAX_BODY_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def bundle_file(tmp_path_factory) -> Path:
    """serve_helpers' small trained model, as the bundle file a replica loads."""
    path = tmp_path_factory.mktemp("bundle") / "credit.bundle"
    path.write_bytes(make_bundle().to_bytes())
    return path


# The live deployment while this folder's modules use it (see `live`).
_LIVE: dict = {}


def _used_again(request) -> bool:
    """Whether a later test uses `live` before the run leaves this folder (whose other tests
    start no Serve of their own)."""
    items = request.session.items
    mine = [i for i, item in enumerate(items) if item.module is request.module]
    for item in items[mine[-1] + 1:] if mine else ():
        if item.path.parent != Path(__file__).parent:
            return False
        if "live" in getattr(item, "fixturenames", ()):
            return True
    return False


@pytest.fixture(scope="module")
def live(request, ray_session, tmp_path_factory, bundle_file):
    """MODEL version 1 deployed on a real Serve (HTTP and gRPC on free loopback ports), its
    bodies limited to MAX_BODY_BYTES.

    Shared by the replica, ingress, gRPC and canary module tests (Serve takes ~10 s to come up
    on 2 cores); each test leaves the primary as it found it. Module-scoped, but kept running
    while later tests of this folder use it: pytest's package scope needs an ``__init__.py``,
    which this folder has not, and Serve must be down before the next module that deploys its
    own (tests/cluster/test_serve*.py, on other ports).
    """
    from ray import serve

    from cluster.serve import deploy

    if not _LIVE:
        home = tmp_path_factory.mktemp("serve-units")
        paths = {}
        for version in ("1", "2"):
            paths[version] = home / f"credit-v{version}.bundle"
            shutil.copy(bundle_file, paths[version])
        cfg = serve_config(home, serve_max_body_bytes=MAX_BODY_BYTES)
        start = time.monotonic()
        url = deploy(cfg, model=MODEL, version="1", bundle_path=paths["1"],
                     deployment=DEPLOYMENT)
        print(f"deploy took {time.monotonic() - start:.1f}s")
        _LIVE.update(cfg=cfg, url=url, paths=paths)
    yield _LIVE
    if not _used_again(request):
        _LIVE.clear()
        serve.shutdown()


@pytest.fixture
def make_server(live, tmp_path):
    """Build `ModelServer` replicas (the class under Serve's deployment) in this process.

    ``make_server(version="1", canary=None, **serving)``: `canary` is the spec's ``{"mode",
    "share"}``; each logs under ``tmp_path / "artifacts"`` and reads the live store's tokens.
    Its handles to other applications (its canary) are the live Serve's. Serve's batching
    needs a replica, so in this process a batch is scored by calling `_score_batch`'s own
    body (see tests/cluster/serve/test_model_server.py); the deployed replica (``live``)
    batches for real.
    """
    from cluster.serve._ingress import ingress_settings
    from cluster.serve._model_server import ModelServer

    built = []

    def build(version: str = "1", canary: dict | None = None, **serving):
        spec = {
            "door": ingress_settings(live["cfg"].db_url, max_body_bytes=4096,
                                     token_refresh_s=60),
            "model": MODEL, "version": version,
            "deployment": DEPLOYMENT, "bundle_path": str(live["paths"][version]),
            "artifacts": str(tmp_path / "artifacts"),
            "serving": {"log_flush_s": 60.0, **serving},
        }
        if canary is not None:
            spec["canary"] = canary
        server = ModelServer.func_or_class(spec)
        built.append(server)
        return server

    yield build
    for server in built:
        server.__del__()


@pytest.fixture
def ingress(live):
    """The front ingress's own class (`OipIngress` under Serve's ASGI wrapper) built in this
    process over the live store's tokens; its handles and `serve.status` are the live Serve's.
    Its routes are driven over HTTP on the live ingress; here its methods are called."""
    from cluster.serve._ingress import OipIngress, ingress_settings

    # Serve's ingress wrapper subclasses ours; its own constructor builds the ASGI app.
    own = OipIngress.func_or_class.__mro__[1]
    assert own.__module__ == OipIngress.func_or_class.__module__ and "__init__" in vars(own)
    return own(ingress_settings(live["cfg"].db_url, max_body_bytes=4096, token_refresh_s=60))
