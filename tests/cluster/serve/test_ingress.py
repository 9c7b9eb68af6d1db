"""The front ingress (`cluster.serve._ingress`) in this process: its FastAPI routes driven over
ASGI with httpx, the way Serve's proxy calls the replica; what it answers itself (health,
server metadata, readiness, the repository, a model that is not deployed) and how it reaches a
model's primary (a real `ModelServer` replica behind a stand-in handle; Serve's controller
stood in for: conftest.py, serve_stand_ins.py). On a real Serve, with tritonclient, curl and
many replicas: tests/cluster/test_serve.py and test_serve_hardening.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serve_helpers import (
    ADMIN_TOKEN,
    AUTH,
    MODEL,
    VIEWER_TOKEN,
    columns,
    infer_request,
    logged_rows,
)
from serve_stand_ins import Handle

from cluster.serve import _ingress
from cluster.serve._grpc_front import _server_version
from cluster.serve._ingress import _error, _reply, ingress_settings, model_app_name
from cluster.serve._oip import Reply
from cluster.serve._routing import canary_app_name

PRIMARY = model_app_name(MODEL)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def _set(monkeypatch, name: str, value) -> None:
    """Set the ingress module's constant `name` as the ingress's methods read it.

    Serve pickled `OipIngress` by value when it was decorated: its methods read a copy of the
    module's globals, not `cluster.serve._ingress` itself.
    """
    monkeypatch.setitem(_ingress.OipIngress.func_or_class._handle.__globals__, name, value)


def _http(ingress, *requests: tuple) -> list[httpx.Response]:
    """(method, path, **httpx kwargs) requests, answered by `ingress` as an ASGI app."""
    async def run():
        transport = httpx.ASGITransport(app=ingress)
        async with httpx.AsyncClient(transport=transport, base_url="http://oip") as client:
            return [await client.request(method, path, **(kw[0] if kw else {}))
                    for method, path, *kw in requests]

    return asyncio.run(run())


def _infer_body(n: int = 2, client_id: str | None = None) -> bytes:
    return json.dumps(infer_request(columns(n, 1), client_id)).encode()


@pytest.fixture
def primary(make_server, controller) -> Handle:
    """MODEL version 1's primary replica, deployed (the controller knows its app)."""
    handle = Handle(make_server("1"))
    controller.apps[PRIMARY] = handle
    return handle


def test_settings_names_and_replies():
    assert model_app_name("credit") == "model-credit"
    assert ingress_settings("sqlite:///x.db") == {
        "db_url": "sqlite:///x.db", "max_body_bytes": 32 * 1024 * 1024,
        "token_refresh_s": 1.0, "replicas": 1}
    assert ingress_settings("u", max_body_bytes="10", token_refresh_s=2, replicas="3") == {
        "db_url": "u", "max_body_bytes": 10, "token_refresh_s": 2.0, "replicas": 3}
    json_reply = _reply(Reply(404, {"error": "x"}, {"x-model-version": "1"}))
    assert json.loads(json_reply.body) == {"error": "x"} and json_reply.status_code == 404
    binary = _reply(Reply(200, bytearray(b"ab"), {"Inference-Header-Content-Length": "1"}))
    assert binary.body == b"ab" and binary.headers["inference-header-content-length"] == "1"
    refused = _error(401, "no", **{"WWW-Authenticate": "Bearer"})
    assert json.loads(refused.body) == {"error": "no"}
    assert refused.headers["www-authenticate"] == "Bearer"


def test_health_and_server_metadata_are_open_and_errors_keep_the_protocols_shape(
        make_ingress):
    live, meta, unknown, wrong_method = _http(
        make_ingress(), ("GET", "/v2/health/live"), ("GET", "/v2"), ("GET", "/v3/nothing"),
        ("POST", "/v2/health/live"))
    assert live.status_code == 200 and live.json() == {"live": True}
    assert meta.json() == {"name": "appliance", "version": _server_version(),
                           "extensions": ["binary_tensor_data", "model_repository"]}
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
    assert wrong_method.status_code == 405 and wrong_method.json() == {
        "error": "Method Not Allowed"}


def test_model_routes_reach_the_primary_or_say_it_is_not_deployed(
        make_ingress, primary, controller, monkeypatch):
    _set(monkeypatch, "RECHECK_S", 60.0)  # look-ups counted below, however slow the machine
    ingress = make_ingress()
    meta, version_meta, ready, wrong_version, absent, bad_name, no_token = _http(
        ingress,
        ("GET", f"/v2/models/{MODEL}", {"headers": AUTH}),
        ("GET", f"/v2/models/{MODEL}/versions/1", {"headers": AUTH}),
        ("GET", f"/v2/models/{MODEL}/ready", {"headers": AUTH}),
        ("GET", f"/v2/models/{MODEL}/versions/2/ready", {"headers": AUTH}),
        ("GET", "/v2/models/other", {"headers": AUTH}),
        ("GET", "/v2/models/Not a name", {"headers": AUTH}),
        ("GET", f"/v2/models/{MODEL}"),
    )
    assert meta.status_code == 200 and meta.json()["name"] == MODEL
    assert meta.headers["x-model-version"] == "1"
    assert version_meta.json() == meta.json()
    assert ready.json() == {"name": MODEL, "version": "1", "ready": True}
    assert wrong_version.status_code == 404 and "'2' is not served" in wrong_version.json()[
        "error"]
    assert absent.status_code == 404 and absent.json() == {
        "error": "model 'other' is not deployed"}
    assert bad_name.status_code == 404
    assert no_token.status_code == 401 and no_token.headers["www-authenticate"] == "Bearer"
    # Asked once for the primary (then cached), once for "other"; never for a bad name.
    assert controller.handle_lookups == [PRIMARY, "model-other"]


def test_inference_gets_a_request_id_of_the_ingress_and_is_logged_under_it(
        make_ingress, primary, controller):
    ingress = make_ingress(max_body_bytes=2048)
    ok, wrong_version, bad_length, too_large, viewer_ok = _http(
        ingress,
        ("POST", f"/v2/models/{MODEL}/infer", {"headers": AUTH,
                                               "content": _infer_body(2, "mine")}),
        ("POST", f"/v2/models/{MODEL}/versions/9/infer", {"headers": AUTH,
                                                         "content": _infer_body()}),
        ("POST", f"/v2/models/{MODEL}/infer", {
            "headers": {**AUTH, "Inference-Header-Content-Length": "ten"},
            "content": _infer_body()}),
        ("POST", f"/v2/models/{MODEL}/infer", {"headers": AUTH,
                                               "content": _infer_body(40)}),
        ("POST", f"/v2/models/{MODEL}/infer", {"headers": VIEWER, "content": _infer_body(1)}),
    )
    assert ok.status_code == 200 and ok.json()["id"] == "mine"
    rid = ok.headers["x-appliance-request-id"]
    assert ok.json()["parameters"] == {"request_id": rid}
    rows = logged_rows(primary.target.log.folder, ["request_id", "client_id"])
    assert {(r["request_id"], r["client_id"]) for r in rows} == {
        (rid, "mine"), (viewer_ok.headers["x-appliance-request-id"], None)}
    # A refusal made on the way names the request too.
    assert wrong_version.status_code == 404
    assert wrong_version.headers["x-appliance-request-id"] not in ("", rid)
    assert bad_length.status_code == 400 and "must be an integer" in bad_length.json()["error"]
    assert too_large.status_code == 413 and "limit of 2048 bytes" in too_large.json()["error"]
    # The primary was asked for its canary on the first inference, and has none.
    assert canary_app_name(MODEL) in controller.handle_lookups


def test_feedback_needs_its_scope(make_ingress, primary, tmp_path):
    body = json.dumps({"request_id": "r1", "labels": [1, 0]}).encode()
    ok, viewer = _http(make_ingress(),
                       ("POST", f"/v2/models/{MODEL}/feedback", {"headers": AUTH,
                                                                 "content": body}),
                       ("POST", f"/v2/models/{MODEL}/feedback", {"headers": VIEWER,
                                                                 "content": body}))
    assert ok.status_code == 200 and ok.json() == {"request_id": "r1", "rows": 2}
    assert viewer.status_code == 403 and "lacks scope 'feedback'" in viewer.json()["error"]
    assert len(list((tmp_path / "artifacts" / "feedback").rglob("*.parquet"))) == 1


def test_a_primary_that_fails_answers_5xx_never_a_traceback(make_ingress, primary, controller,
                                                            monkeypatch):
    ingress = make_ingress()

    async def run():
        handle = await ingress._handle(MODEL)
        # An error in the replica's own method (here a call its code does not take).
        failed = await ingress._answer(handle, MODEL, "ready", "1", "extra")
        _set(monkeypatch, "CALL_TIMEOUT_S", 0.05)
        primary.delay_s = 60.0
        slow = await ingress._answer(handle, MODEL, "ready")
        primary.delay_s, primary.broken = 0.0, ConnectionError("replica gone")
        gone = await ingress._answer(handle, MODEL, "ready")
        return failed, slow, gone

    failed, slow, gone = asyncio.run(run())
    assert failed.status == 500 and failed.body == {"error": "model 'credit' failed: TypeError"}
    assert slow.status == 503 and slow.headers == {"Retry-After": "1"}
    assert "did not answer within 0s" in slow.body["error"] and primary.responses[1].cancelled
    assert gone.status == 503 and "is unavailable: ConnectionError" in gone.body["error"]
    assert MODEL not in ingress._handles  # asked anew next time


def test_a_handle_is_cached_then_rechecked_and_kept(make_ingress, primary, controller,
                                                     monkeypatch):
    ingress = make_ingress()

    async def run():
        first = await ingress._handle(MODEL)
        again = await ingress._handle(MODEL)
        asked = len(controller.handle_lookups)
        _set(monkeypatch, "RECHECK_S", 0.0)
        controller.apps[PRIMARY] = Handle(primary.target)  # what a new look-up returns
        rechecked = await ingress._handle(MODEL)
        del controller.apps[PRIMARY]
        gone = await ingress._handle(MODEL)
        return first, again, asked, rechecked, gone

    first, again, asked, rechecked, gone = asyncio.run(run())
    assert first is primary and again is primary and asked == 1
    # Rechecked with the controller, but the old handle kept: its router knows the replicas.
    assert rechecked is primary and len(controller.handle_lookups) == 3
    assert gone is None and MODEL not in ingress._handles


def _ready(ingress):
    [reply] = _http(ingress, ("GET", "/v2/health/ready"))
    return reply.status_code, reply.json()


def test_ready_when_tokens_are_loaded_and_every_primary_answers(make_ingress, primary,
                                                                controller, monkeypatch):
    _set(monkeypatch, "_READY_CACHE_S", 0.0)
    _set(monkeypatch, "_READY_TIMEOUT_S", 0.3)
    ingress = make_ingress()
    # Other applications (the ingress, a canary) are not models of the repository.
    controller.statuses.update({"oip": "RUNNING", canary_app_name(MODEL): "DEPLOYING"})
    assert _ready(ingress) == (200, {"ready": True, "models": {MODEL: "READY"}})
    controller.statuses["model-other"] = "DEPLOYING"
    status, doc = _ready(ingress)
    assert status == 503 and doc["models"] == {MODEL: "READY", "other": "UNAVAILABLE"}
    assert doc["error"] == "model(s) ['other'] do not answer"
    del controller.statuses["model-other"]
    primary.delay_s = 60.0
    assert _ready(ingress)[1]["models"] == {MODEL: "UNAVAILABLE"}
    controller.failure = ConnectionError("controller restarting")
    status, doc = _ready(ingress)
    assert status == 503 and doc["error"].startswith("Serve's controller did not answer")


def test_readiness_is_cached_and_needs_the_token_set(make_ingress, primary, controller,
                                                     tmp_path, monkeypatch):
    _set(monkeypatch, "_READY_CACHE_S", 60.0)
    ingress = make_ingress()
    assert _ready(ingress)[0] == 200
    controller.failure = ConnectionError("controller restarting")
    assert _ready(ingress)[0] == 200  # within _READY_CACHE_S: the last answer
    unloaded = make_ingress(db_url=f"sqlite:///{tmp_path / 'absent' / 'store.db'}")
    assert _ready(unloaded) == (503, {"ready": False,
                                      "error": "the token set has not been loaded yet"})


def test_the_repository_needs_admin_and_says_why_a_model_is_unavailable(
        make_ingress, primary, make_server, controller, monkeypatch):
    _set(monkeypatch, "_READY_TIMEOUT_S", 0.3)
    controller.statuses["model-broken"] = "DEPLOY_FAILED"
    controller.apps["model-slow"] = Handle(make_server("3"), delay_s=60.0)
    controller.statuses["model-vanished"] = "RUNNING"  # no handle to be had any more
    ingress = make_ingress()
    index, operator, anonymous = _http(
        ingress, ("POST", "/v2/repository/index", {"headers": ADMIN}),
        ("POST", "/v2/repository/index", {"headers": AUTH}), ("POST", "/v2/repository/index"))
    assert operator.status_code == 403 and anonymous.status_code == 401
    assert index.json() == [
        {"name": "broken", "version": "", "state": "UNAVAILABLE", "reason": "DEPLOY_FAILED"},
        {"name": MODEL, "version": "1", "state": "READY", "reason": ""},
        {"name": "slow", "version": "", "state": "UNAVAILABLE",
         "reason": "its replica did not answer: TimeoutError"},
        {"name": "vanished", "version": "", "state": "UNAVAILABLE", "reason": "not deployed"},
    ]


def test_the_control_planes_calls(make_ingress, primary, controller):
    ingress = make_ingress()

    async def run():
        config = await ingress.ingress_config()
        served = await ingress.served_version(MODEL)
        asked = len(controller.handle_lookups)
        again = await ingress.served_version(MODEL)  # never from the cache
        asked_again = len(controller.handle_lookups)
        await ingress.forget(MODEL)
        forgotten = MODEL not in ingress._handles
        other = await ingress.served_version("other")
        return config, served, again, asked_again - asked, forgotten, other

    config, served, again, asked, forgotten, other = asyncio.run(run())
    assert config == ingress.settings and config["max_body_bytes"] == 1 << 20
    assert served == again == "1" and asked == 1
    assert forgotten and other is None
