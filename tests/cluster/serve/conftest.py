"""Fixtures of the serving module tests: real replicas and a real token store in this process,
and Serve's controller stood in for (`serve_stand_ins`), so no Ray or Serve starts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from serve_helpers import DEPLOYMENT, MODEL, make_bundle, token_store
from serve_stand_ins import Controller


@pytest.fixture(scope="session")
def token_db(tmp_path_factory) -> str:
    """A migrated SQLite store holding serve_helpers' tokens; its URL."""
    return token_store(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="session")
def bundle_file(tmp_path_factory) -> Path:
    """serve_helpers' small trained model, as the bundle file a replica loads."""
    path = tmp_path_factory.mktemp("bundle") / "credit.bundle"
    path.write_bytes(make_bundle().to_bytes())
    return path


@pytest.fixture
def controller(monkeypatch) -> Controller:
    """Serve's controller as `serve.get_app_handle` and `serve.status` reach it.

    The real ones need a running Serve, and without one they would look for a Ray cluster to
    join: every test that could reach them gets this stand-in instead.
    """
    from ray import serve

    found = Controller()
    monkeypatch.setattr(serve, "get_app_handle", found.get_app_handle)
    monkeypatch.setattr(serve, "status", found.status)
    return found


@pytest.fixture
def make_server(tmp_path, token_db, bundle_file, controller):
    """Build real `ModelServer` replicas (the class under Serve's deployment) over the bundle.

    ``make_server(version="1", canary=None, max_body_bytes=..., bundle_path=..., **serving)``;
    `canary` is the spec's ``{"mode", "share"}``; `bundle_path` defaults to `bundle_file`. All
    log under one artifact root, `tmp_path / "artifacts"`.

    Serve's batching (`serve.batch`) needs a replica's context: a request is scored here as a
    batch of one, through the replica's own batch method (`_score_batch`'s unwrapped body).
    """
    from cluster.serve._ingress import ingress_settings
    from cluster.serve._model_server import ModelServer

    cls = ModelServer.func_or_class
    built = []

    def build(version: str = "1", canary: dict | None = None,
              max_body_bytes: int = 1 << 20, bundle_path: Path = bundle_file, **serving):
        spec = {
            "door": ingress_settings(token_db, max_body_bytes=max_body_bytes,
                                     token_refresh_s=60),
            "model": MODEL, "version": version,
            "deployment": DEPLOYMENT if canary is None else f"{DEPLOYMENT}-canary",
            "bundle_path": str(bundle_path), "artifacts": str(tmp_path / "artifacts"),
            "serving": {"log_flush_s": 60.0, **serving},
        }
        if canary is not None:
            spec["canary"] = canary
        server = cls(spec)
        score = cls._score_batch.__wrapped__

        async def one(job):
            return (await score(server, [job]))[0]

        server._score_batch = one
        built.append(server)
        return server

    yield build
    for server in built:
        server.__del__()


@pytest.fixture
def make_ingress(token_db, controller, monkeypatch):
    """Build the real front ingress (`OipIngress`, the class Serve wraps around its FastAPI app)
    in this process: ``make_ingress(max_body_bytes=1 MiB, db_url=the token store)``. Drive its
    routes through the instance itself, an ASGI app, as Serve's proxy does."""
    from ray import serve

    from cluster.serve._ingress import OipIngress, ingress_settings

    def build(max_body_bytes: int = 1 << 20, db_url: str | None = None):
        cls = OipIngress.func_or_class
        ingress = cls.__new__(cls)
        # Serve awaits the wrapper's constructor: it builds ours, then the ASGI app's.
        asyncio.run(cls.__init__(ingress, ingress_settings(
            db_url or token_db, max_body_bytes=max_body_bytes, token_refresh_s=60)))
        # A route's `self` is Serve's replica context's object, which only a replica has.
        monkeypatch.setattr(serve, "get_replica_context",
                            lambda: SimpleNamespace(servable_object=ingress))
        return ingress

    return build
