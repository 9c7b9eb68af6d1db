"""Serving under hostile input, with scoped tokens that change live, under load and failure.

Real Ray Serve, real HTTP (httpx, raw sockets, curl) and gRPC (tritonclient.grpc). One
deployment with two replicas and batching; the tests run in file order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http.aio as aioclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import (
    ADMIN_TOKEN,
    AUTH,
    CATEGORICAL,
    DEPLOYMENT,
    MODEL,
    NUMERICAL,
    TOKEN,
    VIEWER_TOKEN,
    columns,
    infer_request,
    logged_rows,
    make_bundle,
    pending_dir,
    published,
    serve_config,
)
from tritonclient.utils import InferenceServerException

from appliance.errors import InvalidInput
from appliance.governance.users import issue_token, revoke_token
from appliance.monitor import log_files
from appliance.serving import parse_serving
from appliance.store import session_scope, utcnow
from cluster.serve import deploy

pytestmark = pytest.mark.slow

MAX_BODY = 256 * 1024
INFER = f"/v2/models/{MODEL}/infer"
# Revocation and expiry must reach every replica within this many seconds.
PROPAGATION_S = 5.0


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    home = tmp_path_factory.mktemp("hardening-home")
    path = home / "credit.bundle"
    path.write_bytes(make_bundle().to_bytes())
    serving = parse_serving({"replicas": 2, "max_batch_size": 16, "batch_wait_s": 0.01,
                             "max_ongoing_requests": 32})
    cfg = serve_config(home, serve_max_body_bytes=MAX_BODY, serving=serving)
    url = deploy(cfg, model=MODEL, version="1", bundle_path=path, deployment=DEPLOYMENT)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"cfg": cfg, "url": url, "client": client, "bundle": make_bundle(), "path": path}
    serve.shutdown()


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _until(condition, timeout_s: float) -> float:
    """Seconds until `condition()` held; fails past `timeout_s`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, "condition not met in time"
        time.sleep(0.1)
    return time.monotonic() - start


def _rows(cfg) -> list[dict]:
    return logged_rows(pending_dir(cfg), ["request_id", "row"])


# --- auth at the door ----------------------------------------------------------------------


def test_the_token_is_checked_before_the_body_is_read(served):
    """A client without a token that announces a large body and sends none is refused at once:
    had the ingress waited for the body, this would hang."""
    url = urllib.parse.urlsplit(served["url"])
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY - 1}\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 401"), head[:200]


@pytest.mark.parametrize(
    ("token", "method", "path", "status"),
    [
        (VIEWER_TOKEN, "post_infer", INFER, 200),
        (VIEWER_TOKEN, "post_feedback", f"/v2/models/{MODEL}/feedback", 403),
        (VIEWER_TOKEN, "post_empty", "/v2/repository/index", 403),
        (TOKEN, "post_feedback", f"/v2/models/{MODEL}/feedback", 200),
        (TOKEN, "post_empty", "/v2/repository/index", 403),
        (ADMIN_TOKEN, "post_empty", "/v2/repository/index", 200),
        (None, "post_infer", INFER, 401),
        ("not-a-token", "post_infer", INFER, 401),
        # Every mutating route: no token, a wrong one, and too small a scope (above).
        (None, "post_feedback", f"/v2/models/{MODEL}/feedback", 401),
        ("not-a-token", "post_feedback", f"/v2/models/{MODEL}/feedback", 401),
        (None, "post_empty", "/v2/repository/index", 401),
        ("not-a-token", "post_empty", "/v2/repository/index", 401),
        ("not-a-token", "get", f"/v2/models/{MODEL}", 401),
        (None, "get", "/v2/health/live", 200),
    ],
)
def test_scopes(served, token, method, path, status):
    client = served["client"]
    headers = _auth(token) if token else {}
    if method == "get":
        resp = client.get(path, headers=headers)
    elif method == "post_infer":
        resp = client.post(path, json=infer_request(columns(1, 0)), headers=headers)
    elif method == "post_feedback":
        resp = client.post(path, json={"request_id": "r", "labels": [1]}, headers=headers)
    else:
        resp = client.post(path, headers=headers)
    assert resp.status_code == status, resp.text
    if status >= 400:
        assert resp.json()["error"]
    if status == 403:
        assert "lacks scope" in resp.json()["error"]
    if path.endswith("index") and status == 200:
        assert resp.json() == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]


def test_a_new_token_works_and_a_revoked_one_stops_without_redeploy(served):
    client, cfg = served["client"], served["cfg"]
    with session_scope(cfg.db_url) as s:
        fresh = issue_token(s, "app", "fresh", actor="test")

    def answers(token: str) -> int:
        # Several calls: two ingress-side token tables may not be shared; each must agree.
        codes = {client.post(INFER, json=infer_request(columns(1, 1)),
                             headers=_auth(token)).status_code for _ in range(4)}
        assert len(codes) == 1 or time.monotonic() < deadline, codes
        return codes.pop() if len(codes) == 1 else -1

    deadline = time.monotonic() + PROPAGATION_S
    took = _until(lambda: answers(fresh) == 200, PROPAGATION_S)
    print(f"new token honoured after {took:.2f}s")
    with session_scope(cfg.db_url) as s:
        revoke_token(s, "app", "fresh", actor="test")
    deadline = time.monotonic() + PROPAGATION_S
    took = _until(lambda: answers(fresh) == 401, PROPAGATION_S)
    print(f"revoked token refused after {took:.2f}s")
    assert answers(VIEWER_TOKEN) == 200


def test_an_expired_token_is_refused(served):
    client, cfg = served["client"], served["cfg"]
    with session_scope(cfg.db_url) as s:
        brief = issue_token(s, "app", "brief", actor="test",
                            expires_at=utcnow() + dt.timedelta(seconds=3))
    _until(lambda: client.get(f"/v2/models/{MODEL}/ready",
                              headers=_auth(brief)).status_code == 200, PROPAGATION_S)
    time.sleep(max(0.0, 3.2))
    resp = client.get(f"/v2/models/{MODEL}/ready", headers=_auth(brief))
    assert resp.status_code == 401 and "expired" in resp.json()["error"]


# --- limits and hostile input --------------------------------------------------------------


def test_oversized_bodies_are_413(served):
    client = served["client"]
    big = b'{"inputs": [' + b" " * MAX_BODY + b"]}"
    resp = client.post(INFER, content=big, headers=AUTH)
    assert resp.status_code == 413 and str(MAX_BODY) in resp.json()["error"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(MAX_BODY // 4096 + 2):
            yield b" " * 4096

    resp = client.post(INFER, content=chunks(), headers=AUTH)
    assert resp.status_code == 413
    resp = client.post(f"/v2/models/{MODEL}/feedback", content=big, headers=AUTH)
    assert resp.status_code == 413


HOSTILE = [
    ("deep nesting", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("deep object", b'{"id": "a", "x": ' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"}"),
    ("huge number", json.dumps(infer_request(columns(1, 0))).replace(
        '"FP64", "data": [', '"FP64", "data": [1' + "0" * 400 + ", ", 1).encode()),
    ("1e400", b'{"inputs": [{"name": "income", "datatype": "FP64", "shape": [1], '
              b'"data": [1e400]}]}'),
    ("NaN literal", b'{"inputs": [{"name": "income", "datatype": "FP64", "shape": [1], '
                    b'"data": [NaN]}]}'),
    ("huge shape", b'{"inputs": [{"name": "income", "datatype": "FP64", '
                   b'"shape": [1000000000000000000], "data": [1]}]}'),
    ("not utf-8", b'{"id": "\xff\xfe"}'),
    ("lone surrogate", b'{"id": "\\ud800", "inputs": []}'),
]


@pytest.mark.parametrize(("case", "body"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_are_400(served, case, body):
    resp = served["client"].post(INFER, content=body, headers=AUTH)
    assert resp.status_code == 400, (case, resp.status_code, resp.text[:300])
    assert resp.json()["error"]


_ROUTES = [
    ("POST", INFER), ("POST", f"/v2/models/{MODEL}/versions/1/infer"),
    ("POST", f"/v2/models/{MODEL}/feedback"), ("GET", f"/v2/models/{MODEL}"),
    ("GET", f"/v2/models/{MODEL}/ready"), ("GET", "/v2/health/ready"), ("GET", "/v2"),
    ("POST", "/v2/repository/index"), ("POST", "/v2/models/nope/infer"),
]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@st.composite
def _bodies(draw) -> tuple[bytes, dict]:
    kind = draw(st.sampled_from(["bytes", "json", "near-valid"]))
    headers = {}
    if draw(st.booleans()):
        headers["Inference-Header-Content-Length"] = str(draw(st.integers(-5, 400)))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), headers
    if kind == "json":
        return json.dumps(draw(_json)).encode(), headers
    doc = infer_request(columns(2, 0))
    tensor = draw(st.sampled_from(doc["inputs"]))
    field = draw(st.sampled_from(["datatype", "shape", "data", "name", "parameters"]))
    tensor[field] = draw(_json)
    if draw(st.booleans()):
        doc["id"] = draw(_json)
    if draw(st.booleans()):
        doc["outputs"] = draw(_json)
    return json.dumps(doc).encode(), headers


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(_ROUTES), body=_bodies(),
       token=st.sampled_from([TOKEN, VIEWER_TOKEN, ADMIN_TOKEN, None, "junk"]))
def test_fuzzed_requests_get_only_2xx_or_4xx(served, route, body, token):
    method, path = route
    content, headers = body
    if token:
        headers = {**headers, **_auth(token)}
    resp = served["client"].request(method, path, content=content, headers=headers)
    assert resp.status_code < 500, (method, path, content[:200], resp.text[:300])
    if resp.status_code >= 400:
        assert resp.json()["error"]


def test_the_replicas_still_answer_after_the_fuzzing(served):
    client = served["client"]
    assert client.get("/v2/health/ready").json()["ready"] is True
    resp = client.post(INFER, json=infer_request(columns(3, 5)), headers=AUTH)
    assert resp.status_code == 200


# --- every client ----------------------------------------------------------------------------


def _triton_inputs(module, cols, n: int):
    inputs = []
    for name in NUMERICAL:
        tensor = module.InferInput(name, [n], "FP64")
        tensor.set_data_from_numpy(cols[name])
        inputs.append(tensor)
    region = module.InferInput("region", [n], "BYTES")
    region.set_data_from_numpy(cols["region"])
    inputs.append(region)
    return inputs


def _grpc_auth(token: str) -> dict:
    # gRPC metadata keys are lower case (grpc refuses "Authorization").
    return {"authorization": f"Bearer {token}"}


def test_grpc_with_tritonclient(served):
    cfg, bundle = served["cfg"], served["bundle"]
    cols = columns(6, seed=8)
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{cfg.serve_grpc_port}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL, headers=_grpc_auth(TOKEN))
        meta = client.get_model_metadata(MODEL, headers=_grpc_auth(TOKEN))
        assert meta.versions == ["1"]
        assert [i.name for i in meta.inputs] == [*NUMERICAL, *CATEGORICAL]
        result = client.infer(MODEL, _triton_inputs(grpcclient, cols, 6), headers=_grpc_auth(TOKEN),
                              request_id="grpc-1")
        predictions, scores = bundle.predict(cols)
        assert result.as_numpy("predictions").tolist() == predictions.tolist()
        np.testing.assert_allclose(result.as_numpy("scores"), scores, rtol=1e-6)
        response = result.get_response()
        assert response.id == "grpc-1" and response.model_version == "1"
        logged_as = response.parameters["request_id"].string_param
        assert logged_as and logged_as != "grpc-1"
        with pytest.raises(InferenceServerException, match="bearer token") as denied:
            client.infer(MODEL, _triton_inputs(grpcclient, cols, 6))
        assert "UNAUTHENTICATED" in str(denied.value.status())
        with pytest.raises(InferenceServerException, match="not served"):
            client.infer(MODEL, _triton_inputs(grpcclient, cols, 6), model_version="7",
                         headers=_grpc_auth(TOKEN))
        with pytest.raises(InferenceServerException, match="lacks scope"):
            client.get_model_repository_index(headers=_grpc_auth(TOKEN))
        index = client.get_model_repository_index(headers=_grpc_auth(ADMIN_TOKEN))
        assert [(m.name, m.version, m.state) for m in index.models] == [(MODEL, "1", "READY")]
    finally:
        client.close()


def test_aio_tritonclient_json_and_binary(served):
    bundle = served["bundle"]
    cols = columns(5, seed=9)
    predictions, scores = bundle.predict(cols)

    async def run():
        client = aioclient.InferenceServerClient(url=served["url"].removeprefix("http://"))
        try:
            assert await client.is_server_ready()
            results = []
            for binary in (False, True):
                outputs = [aioclient.InferRequestedOutput(n, binary_data=binary)
                           for n in ("predictions", "scores")]
                results.append(await client.infer(
                    MODEL, _triton_inputs(aioclient, cols, 5), outputs=outputs,
                    headers=dict(AUTH)))
            return results
        finally:
            await client.close()

    for result in asyncio.run(run()):
        assert result.as_numpy("predictions").tolist() == predictions.tolist()
        np.testing.assert_allclose(result.as_numpy("scores"), scores, rtol=1e-6)


def test_curl(served):
    if shutil.which("curl") is None:
        # CI installs curl (.ci/run): there a missing curl is a failure.
        (pytest.fail if os.environ.get("CI") else pytest.skip)("curl is not installed")
    body = json.dumps(infer_request(columns(2, 3), "curl-1"))
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{served['url']}{INFER}", "-H",
         f"Authorization: Bearer {TOKEN}", "-H", "Content-Type: application/json",
         "--data-binary", body, "-w", "\n%{http_code}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    doc, code = out.rsplit("\n", 1)
    assert code == "200" and json.loads(doc)["id"] == "curl-1"


# --- batching, load, failure ---------------------------------------------------------------


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(served):
    client, bundle = served["client"], served["bundle"]
    sizes = [1 + i % 7 for i in range(64)]

    def call(i: int):
        cols = columns(sizes[i], seed=100 + i)
        resp = client.post(INFER, json=infer_request(cols, f"batch-{i}"), headers=AUTH)
        assert resp.status_code == 200, resp.text
        out = {o["name"]: o["data"] for o in resp.json()["outputs"]}
        np.testing.assert_allclose(out["scores"], bundle.predict_proba(cols), rtol=1e-5)
        return resp.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(call, range(64))) == [f"batch-{i}" for i in range(64)]


def _replica_actors() -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if "ModelServer" in a["name"] and f"model-{MODEL}" in a["name"])


def test_served_equals_logged_with_a_replica_killed_mid_run(served):
    """Every 200 is logged exactly once, and every request whose rows are not in the log got
    an error; a replica is SIGKILLed (ray.kill) while the load runs."""
    import ray

    client, cfg = served["client"], served["cfg"]
    before = {r["request_id"] for r in _rows(cfg)}
    stop = threading.Event()
    outcomes: list[tuple[int, str | None, int]] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        with httpx.Client(base_url=served["url"], timeout=60) as c:
            n = 0
            while not stop.is_set():
                rows = 1 + (worker + n) % 5
                n += 1
                try:
                    resp = c.post(INFER, json=infer_request(columns(rows, n)), headers=AUTH)
                    logged_as = resp.headers.get("x-appliance-request-id")
                    outcome = (resp.status_code, logged_as, rows)
                except httpx.HTTPError:
                    outcome = (-1, None, rows)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    victim = _replica_actors()[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    time.sleep(4.0)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    # The killed replica's journal is published by its replacement, or else by whoever
    # recovers first (the monitor does at each pass); once, either way.
    log_files.recover_segments(pending_dir(cfg))
    assert log_files.recover_segments(pending_dir(cfg)) == []
    logged: dict[str, int] = {}
    for row in _rows(cfg):
        if row["request_id"] not in before:
            logged[row["request_id"]] = logged.get(row["request_id"], 0) + 1
    ok = [(rid, rows) for code, rid, rows in outcomes if code == 200]
    failed = [o for o in outcomes if o[0] != 200]
    assert len(ok) >= 50, len(ok)
    # Every 200 is in the log, with exactly its rows (so logged once).
    assert all(logged.get(rid) == rows for rid, rows in ok), "a 200 that is not logged once"
    # Whatever is in the log and was not answered 200 was answered with an error: one naming
    # its id, or (at most one per such failure) a connection that broke with no answer.
    answered = {rid for rid, _ in ok}
    unexplained = set(logged) - answered - {o[1] for o in failed}
    assert len(unexplained) <= sum(1 for o in failed if o[1] is None), unexplained
    assert all(code in (-1, 500, 502, 503, 504) for code, _, _ in failed), failed[:5]
    print(f"load: {len(ok)} answered 200, {len(failed)} errors, {len(logged)} logged, "
          f"{len(set(logged) - answered)} logged but answered with an error")
    # The replica is replaced and the endpoint recovers.
    _until(lambda: client.get("/v2/health/ready").status_code == 200, 120)


# --- deployment options ----------------------------------------------------------------------


def test_serving_options_reach_serve(served):
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    app = details["applications"][f"model-{MODEL}"]
    config = app["deployments"]["ModelServer"]["deployment_config"]
    assert config["num_replicas"] == 2 and config["max_ongoing_requests"] == 32
    assert config["ray_actor_options"]["num_cpus"] == pytest.approx(0.2)


def test_gpu_replicas_on_a_cluster_without_gpus_are_refused(served):
    import ray

    if ray.cluster_resources().get("GPU"):
        pytest.skip("this cluster has GPUs")
    cfg = served["cfg"]
    with pytest.raises(InvalidInput, match="has no GPU"):
        deploy(cfg, model="gpu-model", version="1", bundle_path=served["path"],
               deployment="gpu-model", serving=parse_serving({"num_gpus": 0.5}))


def test_a_full_log_answers_503_with_retry_after_and_logs_only_what_it_answered(served):
    """A model whose log holds 5 unpublished rows and publishes every 4 s: a second request
    while the first's rows wait is refused with 503 and Retry-After, one larger than the
    buffer with 413; only the answered request is ever logged, and it is published."""
    cfg = served["cfg"]
    folder = cfg.artifacts / "predictions" / "tiny-log" / "pending"
    deploy(cfg, model="tiny-log", version="1", bundle_path=served["path"], deployment="tiny-log",
           serving=parse_serving({"log_max_rows": 5, "log_flush_s": 4.0}))
    path = "/v2/models/tiny-log/infer"
    post = served["client"].post
    first = post(path, json=infer_request(columns(3, 1)), headers=AUTH)
    full = post(path, json=infer_request(columns(3, 2)), headers=AUTH)
    huge = post(path, json=infer_request(columns(6, 3)), headers=AUTH)
    assert first.status_code == 200, first.text
    assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
    assert "prediction log is full" in full.json()["error"]
    assert huge.status_code == 413 and "max_rows" in huge.json()["error"]
    answered = [first.json()["parameters"]["request_id"]] * 3
    assert [r["request_id"] for r in logged_rows(folder, ["request_id"])] == answered
    # Published within the interval, and then the log takes rows again.
    _until(lambda: published(folder), timeout_s=15)
    assert [rid for p in published(folder)
            for rid in log_files.read_log(p, ["request_id"]).column(0).to_pylist()] == answered
    again = post(path, json=infer_request(columns(3, 4)), headers=AUTH)
    assert again.status_code == 200, again.text


def test_autoscaling_options_reach_serve(served):
    from ray.serve.context import _get_global_client

    cfg = served["cfg"]
    scaling = {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 8}
    deploy(cfg, model="scaled", version="1", bundle_path=served["path"], deployment="scaled",
           serving=parse_serving({"autoscaling": scaling, "max_batch_size": 8}))
    config = (_get_global_client().get_serve_details()["applications"]["model-scaled"]
              ["deployments"]["ModelServer"]["deployment_config"])
    got = config["autoscaling_config"]
    assert (got["min_replicas"], got["max_replicas"]) == (1, 3)
    assert got["target_ongoing_requests"] == 8


def test_prometheus_metrics(served):
    import ray

    client = served["client"]
    for _ in range(5):
        client.post(INFER, json=infer_request(columns(2, 1)), headers=AUTH)
    client.post(INFER, json=infer_request(columns(2, 1)))  # a 401
    port = ray.nodes()[0]["MetricsExportPort"]
    text = ""

    def scraped() -> bool:
        nonlocal text
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return ('code="401"' in text and "ray_appliance_batch_rows_bucket" in text
                and "ray_appliance_log_backlog_rows" in text)

    _until(scraped, 60)
    lines = [ln for ln in text.splitlines() if ln.startswith("ray_appliance_requests_total")]
    assert any(f'model="{MODEL}"' in ln and 'version="1"' in ln and 'code="200"' in ln
               for ln in lines), lines[:5]
    assert "ray_appliance_request_latency_ms_bucket" in text
