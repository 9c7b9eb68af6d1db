"""The model replica (`cluster.serve._model_server`) as a plain object in this process: its
hand-made routing, its answers, the batch it scores and logs (served == logged), feedback,
and the choice between its own answer and its canary's. A real bundle, token store and
prediction log; Serve's controller, batching queue and handles are stood in for (conftest.py,
serve_stand_ins.py). On a real Serve: tests/cluster/test_serve.py, test_serve_canary.py,
test_serve_hardening.py (batching across requests, replicas killed, Prometheus)."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest
from serve_helpers import (
    AUTH,
    CATEGORICAL,
    MODEL,
    TOKEN,
    VIEWER_TOKEN,
    columns,
    infer_request,
    logged_rows,
)
from serve_stand_ins import Handle
from starlette.requests import Request

from appliance.errors import InvalidInput
from cluster.bundle import ModelBundle, Preprocessor, build_mlp
from cluster.serve._model_server import ModelServer, _concat, _http, _Job, _route
from cluster.serve._oip import Reply
from cluster.serve._routing import canary_app_name, to_canary

ROUTES = [
    ("", ("metadata", None)),
    ("/", ("metadata", None)),
    ("/ready", ("ready", None)),
    ("/infer", ("infer", None)),
    ("/feedback", ("feedback", None)),
    ("/versions/2", ("metadata", "2")),
    ("/versions/2/ready", ("ready", "2")),
    ("/versions/2/infer", ("infer", "2")),
    ("/versions/2/feedback", None),  # feedback names a request, not a version
    ("/versions//infer", None),
    ("/versions", None),
    ("/predict", None),
    ("/infer/more", None),
    ("/ready/infer", None),
]


@pytest.mark.parametrize(("path", "expected"), ROUTES, ids=[r[0] or "root" for r in ROUTES])
def test_route(path, expected):
    assert _route(path) == expected


def test_concat_and_http():
    one = {"a": np.arange(2)}
    assert _concat([one], ["a"]) is one
    both = _concat([one, {"a": np.arange(3)}], ["a"])
    assert both["a"].tolist() == [0, 1, 0, 1, 2]
    json_reply = _http(Reply(201, {"x": 1}, {"x-model-version": "1"}))
    assert json_reply.status_code == 201 and json.loads(json_reply.body) == {"x": 1}
    assert json_reply.headers["x-model-version"] == "1"
    binary = _http(Reply(200, bytearray(b"\x00\x01"), {"Inference-Header-Content-Length": "0"}))
    assert binary.body == b"\x00\x01" and binary.headers["inference-header-content-length"] == "0"


def _body(n: int, seed: int, client_id: str | None = None) -> bytes:
    return json.dumps(infer_request(columns(n, seed), client_id)).encode()


def _outputs(reply: Reply) -> dict[str, list]:
    return {o["name"]: o["data"] for o in reply.body["outputs"]}


def test_info_says_what_the_replica_serves(make_server):
    primary = make_server("1")
    assert primary.info() | {"packages": None} == {
        "model": MODEL, "version": "1", "deployment": "credit-prod", "role": "primary",
        "mode": None, "share": None, "packages": None}
    canary = make_server("2", canary={"mode": "split", "share": 0.25})
    assert {k: canary.info()[k] for k in ("role", "mode", "share", "version")} == {
        "role": "canary", "mode": "split", "share": 0.25, "version": "2"}


def test_metadata_and_ready_name_the_version_and_refuse_another(make_server):
    server = make_server("1")

    async def run():
        meta = await server.metadata()
        ready = await server.ready("1")
        wrong = await server.ready("7")
        return meta, ready, wrong, await server.metadata("7")

    meta, ready, wrong, wrong_meta = asyncio.run(run())
    assert meta.status == 200 and meta.headers == {"x-model-version": "1"}
    assert [i["name"] for i in meta.body["inputs"]] == ["income", "age", "region"]
    assert ready.body == {"name": MODEL, "version": "1", "ready": True}
    for reply in (wrong, wrong_meta):
        assert reply.status == 404 and "version '7' is not served" in reply.body["error"]


def test_infer_answers_what_the_bundle_predicts_and_logs_it_first(make_server, bundle_file):
    server = make_server("1")
    cols = columns(5, seed=3)
    body = json.dumps(infer_request(cols, "client-7")).encode()
    reply = asyncio.run(server.infer(body, request_id="rid-1"))
    assert reply.status == 200, reply.body
    assert reply.body["id"] == "client-7"  # the protocol echoes the client's id
    assert reply.body["parameters"] == {"request_id": "rid-1"}
    assert reply.headers == {"x-model-version": "1", "x-appliance-request-id": "rid-1"}
    predictions, scores = ModelBundle.from_bytes(bundle_file.read_bytes()).predict(cols)
    out = _outputs(reply)
    assert out["predictions"] == predictions.tolist()
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-6)
    # Answered means logged: the rows are in the journal before the reply exists.
    rows = logged_rows(server.log.folder, ["request_id", "client_id", "shadow", "income"])
    assert [r["request_id"] for r in rows] == ["rid-1"] * 5
    assert {r["client_id"] for r in rows} == {"client-7"} and not any(r["shadow"] for r in rows)
    np.testing.assert_allclose([r["income"] for r in rows], cols["income"])
    assert asyncio.run(server.drain()) == 0


def test_bad_bodies_and_wrong_versions_are_refused_and_not_logged(make_server):
    server = make_server("1")

    async def run():
        return (await server.infer(b'{"inputs": [', request_id="r1"),
                await server.infer(_body(2, 1), request_id="r2", version="9"))

    bad, wrong = asyncio.run(run())
    assert bad.status == 400 and bad.headers == {"x-model-version": "1"}
    assert wrong.status == 404
    assert logged_rows(server.log.folder, ["request_id"]) == []


def test_a_batch_is_scored_together_and_split_back_per_request(make_server):
    server = make_server("1")
    a, b = columns(2, seed=1), columns(3, seed=2)
    jobs = [_Job(a, "ra", None, False), _Job(b, "rb", "cb", True)]
    scored = asyncio.run(ModelServer.func_or_class._score_batch.__wrapped__(server, jobs))
    alone = [server._scorer.predict(c) for c in (a, b)]
    for out, (predictions, scores, *_) in zip(scored, alone, strict=True):
        assert out.refusal is None
        assert out.predictions.tolist() == predictions.tolist()
        np.testing.assert_allclose(out.scores, scores, rtol=1e-6)
    rows = logged_rows(server.log.folder, ["request_id", "client_id", "shadow"])
    assert [(r["request_id"], r["client_id"], r["shadow"]) for r in rows] == (
        [("ra", None, False)] * 2 + [("rb", "cb", True)] * 3)


def test_a_request_the_log_cannot_hold_is_413_and_a_full_log_503(make_server):
    server = make_server("1", log_max_rows=4)

    async def run():
        too_big = await server.infer(_body(5, 1), request_id="big")
        fits = await server.infer(_body(3, 2), request_id="fits")
        full = await server.infer(_body(3, 3), request_id="full")
        server.buffer.close()
        closed = await server.infer(_body(1, 4), request_id="closed")
        return too_big, fits, full, closed

    too_big, fits, full, closed = asyncio.run(run())
    assert too_big.status == 413 and "max_rows=4" in too_big.body["error"]
    assert too_big.headers["x-appliance-request-id"] == "big"
    assert fits.status == 200
    assert full.status == 503 and "the prediction log is full" in full.body["error"]
    assert int(full.headers["Retry-After"]) >= 1
    assert full.headers["x-appliance-request-id"] == "full"
    assert closed.status == 503 and "shutting down" in closed.body["error"]
    # Served == logged: only the request that was answered 200 has rows.
    assert {r["request_id"] for r in logged_rows(server.log.folder, ["request_id"])} == {"fits"}


def test_predictions_are_not_logged_when_the_deployment_says_so(make_server):
    server = make_server("1", log_predictions=False)
    assert asyncio.run(server.infer(_body(2, 1), request_id="r")).status == 200
    assert logged_rows(server.log.folder, ["request_id"]) == []


def test_feedback_is_stored_or_refused(make_server, tmp_path):
    server = make_server("1")
    ok = server.feedback(json.dumps({"request_id": "rid-1", "labels": [1, 0]}).encode())
    assert ok.status == 200 and ok.body == {"request_id": "rid-1", "rows": 2}
    assert len(list((tmp_path / "artifacts" / "feedback").rglob("*.parquet"))) == 1
    bad = server.feedback(b'{"request_id": "rid-1"}')
    assert bad.status == 400 and "'labels'" in bad.body["error"]


def _regressor(path):
    """An (untrained) regression MLP over serve_helpers' columns, written to `path`."""
    pre = Preprocessor.fit(columns(64, seed=0), CATEGORICAL)
    module = build_mlp(pre.width, hidden=4, layers=1)
    bundle = ModelBundle(pre, module, hidden=4, layers=1, label="age", task="regression",
                         target=(40.0, 12.0))
    path.write_bytes(bundle.to_bytes())
    return path


def test_a_regressor_answers_its_value_as_the_prediction(make_server, tmp_path):
    server = make_server("1", bundle_path=_regressor(tmp_path / "age.bundle"))
    cols = columns(3, seed=5)
    reply = asyncio.run(server.infer(json.dumps(infer_request(cols)).encode(),
                                     request_id="r"))
    _, values = server.bundle.predict(cols)
    out = _outputs(reply)
    np.testing.assert_allclose(out["predictions"], values, rtol=1e-6)
    np.testing.assert_allclose(out["scores"], values, rtol=1e-6)


def test_the_triton_backend_refuses_what_it_cannot_serve(make_server, tmp_path):
    with pytest.raises(InvalidInput, match="binary MLP classifiers only.*backend 'torch'"):
        make_server("1", bundle_path=_regressor(tmp_path / "age.bundle"), backend="triton")


def test_check_health_fails_without_the_log_folder(make_server):
    server = make_server("1")
    server.check_health()
    shutil.rmtree(server.log.folder)
    with pytest.raises(RuntimeError, match="not writable"):
        server.check_health()


def _request(method: str, path: str, body: bytes = b"", headers: dict | None = None,
             root_path: str = "") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"content-length", str(len(body)).encode()))
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": method, "path": root_path + path,
             "root_path": root_path, "headers": raw, "query_string": b""}
    return Request(scope, receive)


def _call(server, *requests):
    async def run():
        return [await server(r) for r in requests]

    return [(r.status_code, json.loads(r.body) if r.body else None, r.headers)
            for r in asyncio.run(run())]


def test_http_routes_check_the_token_method_and_path(make_server, controller):
    server = make_server("1")
    root = "/v2/models/credit"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    answers = _call(
        server,
        _request("GET", "", headers=AUTH, root_path=root),
        _request("HEAD", "/ready", headers=AUTH, root_path=root),
        _request("GET", "/infer", headers=AUTH, root_path=root),
        _request("GET", "/nope", headers=AUTH, root_path=root),
        _request("POST", "/infer", _body(2, 1), root_path=root),
        _request("POST", "/infer", _body(2, 1), {**bearer, "Inference-Header-Content-Length":
                                                 "x"}, root_path=root),
        _request("POST", "/feedback", b'{"request_id": "r", "labels": [1]}', viewer,
                 root_path=root),
        _request("POST", "/infer", _body(2, 1, "c"), bearer, root_path=root),
    )
    meta, ready, get_infer, unknown, no_token, bad_length, viewer_feedback, ok = answers
    assert meta[0] == 200 and meta[1]["name"] == MODEL
    assert ready[0] == 200
    assert get_infer[0] == 405 and get_infer[2]["allow"] == "POST"
    assert unknown[0] == 404 and "no route" in unknown[1]["error"]
    # Refusals name the version: the control plane reads it to see the route is this model's.
    assert no_token[0] == 401 and no_token[2]["x-model-version"] == "1"
    assert no_token[2]["www-authenticate"] == "Bearer"
    assert bad_length[0] == 400 and "must be an integer" in bad_length[1]["error"]
    assert viewer_feedback[0] == 403
    assert ok[0] == 200 and ok[1]["id"] == "c"
    rid = ok[2]["x-appliance-request-id"]
    assert ok[1]["parameters"] == {"request_id": rid} and len(rid) == 32
    assert controller.handle_lookups == [canary_app_name(MODEL)]  # it looked for a canary


def test_http_bodies_over_the_limit_are_413(make_server, controller):
    server = make_server("1", max_body_bytes=64)
    [(status, body, headers)] = _call(
        server, _request("POST", "/infer", _body(3, 1), AUTH, "/v2/models/credit"))
    assert status == 413 and "limit of 64 bytes" in body["error"]
    assert headers["x-model-version"] == "1"


# The primary decides who answers: itself, or its canary (a real replica, behind a handle).


def _with_canary(make_server, controller, mode: str, share: float | None):
    primary = make_server("1")
    canary = make_server("2", canary={"mode": mode, "share": share})
    controller.apps[canary_app_name(MODEL)] = Handle(canary)
    return primary, canary


def _route_infer(primary, bodies, **kwargs):
    async def run():
        replies = [await primary.route_infer(b, request_id=f"rid-{i}", **kwargs)
                   for i, b in enumerate(bodies)]
        await asyncio.gather(*primary._shadows)
        return replies

    return asyncio.run(run())


def test_a_split_canary_answers_its_share_by_the_client_id(make_server, controller):
    primary, canary = _with_canary(make_server, controller, "split", 0.5)
    ids = [f"client-{i}" for i in range(12)]
    replies = _route_infer(primary, [_body(1, i, cid) for i, cid in enumerate(ids)])
    answered = [r.headers["x-model-version"] for r in replies]
    assert answered == ["2" if to_canary(cid, 0.5) else "1" for cid in ids]
    assert "1" in answered and "2" in answered
    canary_rows = logged_rows(canary.log.folder, ["client_id", "shadow"])
    assert {r["client_id"] for r in canary_rows} == {c for c in ids if to_canary(c, 0.5)}
    assert not any(r["shadow"] for r in canary_rows)


def test_a_version_in_the_url_goes_to_whoever_serves_it(make_server, controller):
    primary, canary = _with_canary(make_server, controller, "split", 1.0)
    to_primary, to_canary_ = _route_infer(primary, [_body(1, 1)], version="1") + _route_infer(
        primary, [_body(1, 2)], version="2")
    assert to_primary.headers["x-model-version"] == "1"
    assert to_canary_.headers["x-model-version"] == "2"
    missing = _route_infer(primary, [_body(1, 3)], version="3")[0]
    assert missing.status == 404 and "version '3' is not served" in missing.body["error"]


def test_a_shadow_canary_scores_everything_but_the_primary_answers(make_server, controller):
    primary, canary = _with_canary(make_server, controller, "shadow", None)
    replies = _route_infer(primary, [_body(2, i) for i in range(3)])
    assert [r.headers["x-model-version"] for r in replies] == ["1"] * 3
    shadow = logged_rows(canary.log.folder, ["request_id", "shadow"])
    assert sorted({r["request_id"] for r in shadow}) == ["rid-0", "rid-1", "rid-2"]
    assert all(r["shadow"] for r in shadow) and len(shadow) == 6


def test_a_canary_never_routes_and_a_failed_one_leaves_the_answer_to_the_primary(
        make_server, controller):
    primary, canary = _with_canary(make_server, controller, "split", 1.0)
    [first] = _route_infer(primary, [_body(1, 1)])
    assert first.headers["x-model-version"] == "2"
    controller.apps[canary_app_name(MODEL)].broken = ConnectionError("replica gone")
    [second] = _route_infer(primary, [_body(1, 2)])
    assert second.status == 200 and second.headers["x-model-version"] == "1"
    [own] = _route_infer(canary, [_body(1, 3)])
    assert own.headers["x-model-version"] == "2"
    assert canary._canaries == {} and canary._lookups == {}  # a canary does not look for one
