"""The model replica (`cluster.serve._model_server`): its methods on replicas built in this
process (conftest's `make_server`: real bundle, token store and prediction log), and its HTTP
routes on the replica deployed on a real Serve (conftest's `live`), over loopback with httpx.

Serve's batching needs a replica, so in this process a batch is scored by the batch method's
own body (`_score_batch.__wrapped__`); the deployed replica batches for real. Routing to a
canary: test_canary_routing.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import numpy as np
import pytest
from serve_helpers import (
    AUTH,
    CATEGORICAL,
    MODEL,
    NUMERICAL,
    VIEWER_TOKEN,
    columns,
    drain,
    infer_request,
    logged_rows,
    pending_dir,
    published,
)

from appliance.monitor.feedback import FEEDBACK_SCHEMA
from cluster.serve._model_server import _concat, _http, _Job, _route
from cluster.serve._oip import Reply

pytestmark = pytest.mark.slow

ROUTE = f"/v2/models/{MODEL}"


def _score(server, *jobs: _Job):
    """`server`'s batch method's own body over `jobs`, as Serve's batching would call it."""
    return asyncio.run(type(server)._score_batch.__wrapped__(server, list(jobs)))


def _job(n: int, request_id: str, client_id: str | None = None, shadow: bool = False) -> _Job:
    return _Job(columns(n, seed=n), request_id, client_id, shadow)


def _logged(server) -> list[dict]:
    server.buffer.flush(30)
    return logged_rows(server.log.folder, ["request_id", "client_id", "shadow", "version"])


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("", ("metadata", None)),
        ("/", ("metadata", None)),
        ("/ready", ("ready", None)),
        ("/ready/", ("ready", None)),
        ("/infer", ("infer", None)),
        ("/feedback", ("feedback", None)),
        ("/versions/3", ("metadata", "3")),
        ("/versions/3/ready", ("ready", "3")),
        ("/versions/3/infer", ("infer", "3")),
        # Feedback names its request, not a version.
        ("/versions/3/feedback", None),
        ("/versions//infer", None),
        ("/versions", None),
        ("/infer/more", None),
        ("/predict", None),
    ],
)
def test_routes_under_the_models_route(path, found):
    assert _route(path) == found


def test_batch_parts_and_replies():
    one = columns(2, seed=1)
    assert _concat([one], ["income"]) is one
    two = _concat([columns(2, seed=1), columns(3, seed=2)], ["income", "region"])
    assert list(two) == ["income", "region"] and len(two["income"]) == len(two["region"]) == 5
    np.testing.assert_array_equal(two["income"][:2], one["income"])
    doc = _http(Reply(404, {"error": "x"}, {"x-model-version": "1"}))
    assert doc.status_code == 404 and json.loads(doc.body) == {"error": "x"}
    assert doc.headers["x-model-version"] == "1"
    raw = _http(Reply(200, bytearray(b"ab"), {"Inference-Header-Content-Length": "1"}))
    assert raw.body == b"ab" and raw.headers["inference-header-content-length"] == "1"


def test_info_names_the_role_a_replica_plays(make_server):
    primary = make_server().info()
    assert primary == {"model": MODEL, "version": "1", "deployment": primary["deployment"],
                       "role": "primary", "mode": None, "share": None, "packages": {}}
    canary = make_server("2", canary={"mode": "split", "share": 0.25}).info()
    assert (canary["role"], canary["mode"], canary["share"]) == ("canary", "split", 0.25)
    shadow = make_server("2", canary={"mode": "shadow", "share": None}).info()
    assert (shadow["role"], shadow["mode"], shadow["share"]) == ("canary", "shadow", None)


def test_metadata_and_readiness_answer_for_the_served_version_only(make_server):
    server = make_server()

    async def run():
        return [await server.metadata(), await server.metadata("1"), await server.metadata("2"),
                await server.ready(), await server.ready("9")]

    meta, same, other, ready, not_served = asyncio.run(run())
    assert meta.status == 200 and meta.headers == {"x-model-version": "1"}
    assert meta.body["name"] == MODEL and meta.body["versions"] == ["1"]
    assert [t["name"] for t in meta.body["inputs"]] == [*NUMERICAL, *CATEGORICAL]
    assert same == meta
    assert other.status == 404 and other.body == {
        "error": "model 'credit' version '2' is not served; the served version is '1'"}
    assert ready == Reply(200, {"name": MODEL, "version": "1", "ready": True},
                          {"x-model-version": "1"})
    assert not_served.status == 404 and "'9' is not served" in not_served.body["error"]


def test_a_batch_is_scored_once_and_each_request_gets_its_own_rows(make_server):
    server = make_server()
    a, b = _job(2, "rid-a"), _job(3, "rid-b", client_id="theirs", shadow=True)
    out = _score(server, a, b)
    both = _concat([a.columns, b.columns], server._features)
    predictions, scores = server.bundle.predict(both)
    assert [len(o.predictions) for o in out] == [2, 3]
    assert np.concatenate([o.predictions for o in out]).tolist() == predictions.tolist()
    np.testing.assert_allclose(np.concatenate([o.scores for o in out]), scores, rtol=1e-6)
    assert [o.refusal for o in out] == [None, None]
    assert _logged(server) == (
        [{"request_id": "rid-a", "client_id": None, "shadow": False, "version": "1"}] * 2
        + [{"request_id": "rid-b", "client_id": "theirs", "shadow": True, "version": "1"}] * 3)


def test_with_logging_off_nothing_is_logged(make_server):
    server = make_server(log_predictions=False)
    assert [o.refusal for o in _score(server, _job(2, "rid-quiet"))] == [None]
    assert _logged(server) == []


def test_a_request_larger_than_the_whole_log_buffer_is_refused_alone(make_server):
    server = make_server(log_max_rows=4)
    big, small = _score(server, _job(5, "rid-big"), _job(2, "rid-small"))
    assert big.refusal.status == 413
    assert big.refusal.body["error"].startswith(
        "request 'rid-big' has 5 rows, more than the prediction log buffer holds (max_rows=4)")
    assert big.refusal.headers["x-appliance-request-id"] == "rid-big"
    assert small.refusal is None
    assert [r["request_id"] for r in _logged(server)] == ["rid-small"] * 2


def test_a_full_log_refuses_the_batch_with_503_and_retry_after(make_server):
    server = make_server(log_max_rows=4)
    (first,) = _score(server, _job(3, "rid-fits"))
    second, third = _score(server, _job(1, "rid-over"), _job(1, "rid-over-too"))
    assert first.refusal is None
    for out, rid in ((second, "rid-over"), (third, "rid-over-too")):
        assert out.refusal.status == 503
        assert out.refusal.body["error"].startswith("the prediction log is full (3 rows")
        assert int(out.refusal.headers["Retry-After"]) >= 1
        assert out.refusal.headers["x-appliance-request-id"] == rid
    # Served == logged: what was refused is not in the log.
    assert [r["request_id"] for r in _logged(server)] == ["rid-fits"] * 3


def test_a_closed_log_refuses_with_503(make_server):
    server = make_server()
    server.buffer.close()
    (out,) = _score(server, _job(1, "rid-late"))
    assert out.refusal.status == 503 and out.refusal.headers["Retry-After"] == "1"
    assert out.refusal.body == {"error": "this replica is shutting down; retry"}


def test_shutting_down_publishes_what_is_buffered(make_server):
    server = make_server()
    _score(server, _job(2, "rid-kept"))
    assert published(server.log.folder) == []  # flushed on an interval of 60 s
    server.__del__()
    assert [r["request_id"] for r in logged_rows(server.log.folder, ["request_id"])] == [
        "rid-kept"] * 2
    assert len(published(server.log.folder)) == 1


def test_health_needs_a_writable_log_folder(make_server):
    server = make_server()
    assert server.check_health() is None
    shutil.rmtree(server.log.folder)
    with pytest.raises(RuntimeError, match="prediction log folder .* is not writable"):
        server.check_health()


def test_feedback_is_stored_for_the_deployment_and_bad_feedback_named(make_server, tmp_path):
    import pyarrow.parquet as pq

    server = make_server()
    ok = server.feedback(json.dumps({"request_id": "rid-a", "labels": [1, 0]}).encode())
    assert ok == Reply(200, {"request_id": "rid-a", "rows": 2}, {"x-model-version": "1"})
    (path,) = (tmp_path / "artifacts" / "feedback" / server.deployment).iterdir()
    table = pq.read_table(path)
    assert table.schema.names == FEEDBACK_SCHEMA.names
    assert table.select(["request_id", "row", "label"]).to_pylist() == [
        {"request_id": "rid-a", "row": 0, "label": 1},
        {"request_id": "rid-a", "row": 1, "label": 0}]
    bad = server.feedback(b'{"labels": [1]}')
    assert bad.status == 400 and "'request_id'" in bad.body["error"]


# --- the deployed replica, over HTTP -------------------------------------------------------


@pytest.fixture
def client(live):
    with httpx.Client(base_url=live["url"], timeout=60) as c:
        yield c


def test_http_metadata_readiness_and_what_is_not_a_route(client):
    meta = client.get(ROUTE, headers=AUTH)
    assert meta.status_code == 200 and meta.headers["x-model-version"] == "1"
    head = client.head(ROUTE, headers=AUTH)
    assert head.status_code == 200 and head.content == b""
    assert client.get(f"{ROUTE}/versions/1/ready", headers=AUTH).json() == {
        "name": MODEL, "version": "1", "ready": True}
    assert client.get(f"{ROUTE}/versions/2/ready", headers=AUTH).status_code == 404
    unknown = client.get(f"{ROUTE}/predict", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["error"].startswith(
        f"no route '{ROUTE}/predict' for model 'credit'")
    wrong = client.get(f"{ROUTE}/infer", headers=AUTH)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert "method GET is not allowed" in wrong.json()["error"]
    # The door answers before the route: no token, 401, and the version it would have been.
    refused = client.get(ROUTE)
    assert refused.status_code == 401 and refused.headers["x-model-version"] == "1"


def test_http_inference_is_logged_under_the_id_it_returns(live, client):
    resp = client.post(f"{ROUTE}/infer", json=infer_request(columns(3, seed=4), "mine"),
                       headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    rid = resp.headers["x-appliance-request-id"]
    assert body["id"] == "mine" and body["parameters"]["request_id"] == rid
    assert drain(MODEL) == 0
    rows = logged_rows(pending_dir(live["cfg"]), ["request_id", "client_id"])
    assert [r for r in rows if r["request_id"] == rid] == [
        {"request_id": rid, "client_id": "mine"}] * 3


def test_http_inference_errors_name_the_request(client):
    bad_length = client.post(f"{ROUTE}/infer", content=b"{}", headers={
        **AUTH, "Inference-Header-Content-Length": "ten"})
    assert bad_length.status_code == 400 and bad_length.json() == {
        "error": "Inference-Header-Content-Length must be an integer, got 'ten'"}
    other = client.post(f"{ROUTE}/versions/7/infer", json=infer_request(columns(1, 0)),
                        headers=AUTH)
    assert other.status_code == 404 and other.headers["x-appliance-request-id"]
    broken = client.post(f"{ROUTE}/infer", content=b'{"inputs": 3}', headers=AUTH)
    assert broken.status_code == 400 and broken.headers["x-appliance-request-id"]


def test_http_feedback_needs_its_scope(client):
    body = {"request_id": "rid-fed", "row": 0, "label": 1}
    viewer = client.post(f"{ROUTE}/feedback", json=body,
                         headers={"Authorization": f"Bearer {VIEWER_TOKEN}"})
    assert viewer.status_code == 403
    ok = client.post(f"{ROUTE}/feedback", json=body, headers=AUTH)
    assert ok.status_code == 200 and ok.json() == {"request_id": "rid-fed", "rows": 1}
