"""The front ingress (`cluster.serve._ingress`): its routes on the ingress deployed on a real
Serve (conftest's `live`), over loopback with httpx, and its methods on its own class built in
this process (conftest's `ingress`), reaching the live Serve's controller and model replica
through real handles. gRPC: test_grpc_front.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serve_helpers import ADMIN_TOKEN, AUTH, MODEL, VIEWER_TOKEN, columns, infer_request

from cluster.serve._grpc_front import _server_version
from cluster.serve._ingress import _error, _reply, ingress_settings, model_app_name
from cluster.serve._oip import Reply

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


def _set(monkeypatch, ingress, name: str, value) -> None:
    """Set the ingress module's constant `name` as the ingress's methods read it: Serve pickled
    the class by value when it was decorated, so they read a copy of the module's globals."""
    monkeypatch.setitem(type(ingress)._answer.__globals__, name, value)


def _body(client_id: str | None = None) -> bytes:
    return json.dumps(infer_request(columns(2, seed=3), client_id)).encode()


def test_settings_names_and_replies():
    assert model_app_name("credit") == "model-credit"
    assert ingress_settings("sqlite:///x.db") == {
        "db_url": "sqlite:///x.db", "max_body_bytes": 32 * 1024 * 1024,
        "token_refresh_s": 1.0, "replicas": 1}
    assert ingress_settings("u", max_body_bytes="10", token_refresh_s=2, replicas="3") == {
        "db_url": "u", "max_body_bytes": 10, "token_refresh_s": 2.0, "replicas": 3}
    doc = _reply(Reply(404, {"error": "x"}, {"x-model-version": "1"}))
    assert json.loads(doc.body) == {"error": "x"} and doc.status_code == 404
    raw = _reply(Reply(200, bytearray(b"ab"), {"Inference-Header-Content-Length": "1"}))
    assert raw.body == b"ab" and raw.headers["inference-header-content-length"] == "1"
    refused = _error(401, "no", **{"WWW-Authenticate": "Bearer"})
    assert json.loads(refused.body) == {"error": "no"}
    assert refused.headers["www-authenticate"] == "Bearer"


# --- the deployed ingress, over HTTP -------------------------------------------------------


@pytest.fixture
def client(live):
    with httpx.Client(base_url=live["url"], timeout=60) as c:
        yield c


def test_health_and_server_metadata_are_open_and_errors_keep_the_protocols_shape(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True,
                                                         "models": {MODEL: "READY"}}
    assert client.get("/v2").json() == {
        "name": "appliance", "version": _server_version(),
        "extensions": ["binary_tensor_data", "model_repository"]}
    unknown = client.get("/v3/nothing")
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not Found"}
    wrong = client.post("/v2/health/live")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}


def test_a_model_that_is_not_deployed(client):
    # Who may not call learns nothing of what is deployed.
    anonymous = client.get("/v2/models/ghost")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    for method, path in (("GET", "/v2/models/ghost"), ("GET", "/v2/models/ghost/ready"),
                         ("GET", "/v2/models/ghost/versions/1"),
                         ("POST", "/v2/models/ghost/infer")):
        resp = client.request(method, path, headers=AUTH, content=_body())
        assert resp.status_code == 404, path
        assert resp.json() == {"error": "model 'ghost' is not deployed"}


def test_the_repository_needs_the_admin_scope(client):
    viewer = client.post("/v2/repository/index", headers=VIEWER)
    assert viewer.status_code == 403 and "lacks scope 'admin'" in viewer.json()["error"]
    index = client.post("/v2/repository/index", headers=ADMIN)
    assert index.json() == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]


# --- the ingress's own methods, in this process ---------------------------------------------


def test_a_models_handle_is_looked_up_once_and_only_for_a_name(ingress, monkeypatch):
    _set(monkeypatch, ingress, "RECHECK_S", 60.0)

    async def run():
        first = await ingress._handle(MODEL)
        return (first, await ingress._handle(MODEL), await ingress._handle("ghost"),
                await ingress._handle("Not a name"), sorted(ingress._handles))

    first, again, ghost, bad, cached = asyncio.run(run())
    assert first is not None and again is first
    assert ghost is None and bad is None and cached == [MODEL]


def test_an_inference_carries_the_request_id_the_ingress_made(ingress):
    async def run():
        return (await ingress._route_infer(MODEL, None, _body("mine"), None),
                await ingress._route_infer(MODEL, "7", _body(), None),
                await ingress._route_infer("ghost", None, _body(), None))

    ok, other_version, ghost = asyncio.run(run())
    rid = ok.headers["x-appliance-request-id"]
    assert ok.status == 200 and ok.body["id"] == "mine"
    assert ok.body["parameters"]["request_id"] == rid
    # An error the model made names the request too; one made before any request did not.
    assert other_version.status == 404 and other_version.headers["x-appliance-request-id"]
    assert other_version.headers["x-appliance-request-id"] != rid
    assert ghost == Reply(404, {"error": "model 'ghost' is not deployed"}, None)


def test_a_failure_in_the_model_is_500_and_no_answer_in_time_is_503(ingress, monkeypatch):
    async def run():
        handle = await ingress._handle(MODEL)
        # The replica's own method raises (arguments it does not take).
        failed = await ingress._answer(handle, MODEL, "metadata", "1", "extra", "more")
        _set(monkeypatch, ingress, "CALL_TIMEOUT_S", 0.0)
        late = await ingress._answer(handle, MODEL, "metadata")
        return failed, late

    failed, late = asyncio.run(run())
    assert failed == Reply(500, {"error": "model 'credit' failed: TypeError"}, None)
    assert late.status == 503 and late.headers == {"Retry-After": "1"}
    assert late.body == {"error": "model 'credit' did not answer within 0s"}


def test_the_repository_and_readiness_ask_every_model(ingress, monkeypatch):
    _set(monkeypatch, ingress, "_READY_CACHE_S", 60.0)

    async def run():
        return (await ingress._model_apps(), await ingress._repository(),
                await ingress._probe(MODEL, "DEPLOYING"), await ingress._probe("ghost", "RUNNING"),
                await ingress._readiness(), await ingress._readiness())

    apps, repository, deploying, ghost, ready, again = asyncio.run(run())
    assert apps == {MODEL: "RUNNING"}
    assert repository == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]
    assert deploying == {"name": MODEL, "version": "", "state": "UNAVAILABLE",
                         "reason": "DEPLOYING"}
    assert ghost["state"] == "UNAVAILABLE" and ghost["reason"] == "not deployed"
    assert ready == {"ready": True, "models": {MODEL: "READY"}}
    assert again is ready  # cached for _READY_CACHE_S


def test_not_ready_before_the_token_set_is_loaded(ray_session, tmp_path):
    from cluster.serve._ingress import OipIngress

    own = OipIngress.func_or_class.__mro__[1]
    # A store that cannot be read: requests would get 503 until it answers.
    blind = own(ingress_settings(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    assert asyncio.run(blind._readiness()) == {
        "ready": False, "error": "the token set has not been loaded yet"}
