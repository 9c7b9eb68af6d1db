"""Serving end to end: real Ray Serve, real HTTP on loopback, httpx and tritonclient.

One deployment per module (Serve takes ~10 s to come up on 2 cores); the tests run in file
order and the last ones promote version 2 and undeploy.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import tritonclient.http as httpclient
from serve_helpers import (
    AUTH,
    CATEGORICAL,
    DEPLOYMENT,
    MODEL,
    NUMERICAL,
    TOKEN,
    VIEWER_TOKEN,
    columns,
    drain,
    infer_request,
    logged_rows,
    logged_tables,
    make_bundle,
    pending_dir,
    published,
    serve_config,
)
from tritonclient.utils import InferenceServerException

from appliance.config import Config
from appliance.errors import ConflictError, InvalidInput, NotFound
from appliance.monitor import log_files
from appliance.monitor.feedback import FEEDBACK_SCHEMA, write_feedback
from cluster.bundle import ModelBundle
from cluster.serve import deploy, serve_url, undeploy
from cluster.serve._prediction_log import PredictionLog

pytestmark = pytest.mark.slow


def _logged(cfg: Config, request_id: str):
    """Every logged row of the request logged as `request_id` (published or in a journal)."""
    tables = logged_tables(pending_dir(cfg))
    rows = [t.filter(pc.equal(t.column("request_id"), request_id)) for t in tables]
    rows = [t for t in rows if t.num_rows]
    return pa.concat_tables(rows) if rows else None


def _logged_ids(cfg: Config) -> list[str]:
    return [r["request_id"] for r in logged_rows(pending_dir(cfg), ["request_id"])]


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    """Version 1 of the model served on a free port; Serve is shut down afterwards."""
    from ray import serve

    home = tmp_path_factory.mktemp("serve-home")
    bundle = make_bundle()
    path = home / "credit-v1.bundle"
    path.write_bytes(bundle.to_bytes())
    cfg = serve_config(home)
    start = time.monotonic()
    url = deploy(cfg, model=MODEL, version="1", bundle_path=path, deployment=DEPLOYMENT)
    print(f"deploy took {time.monotonic() - start:.1f}s")
    # What serving loads is what was written: compare against the bytes, not the object.
    loaded = ModelBundle.from_bytes(path.read_bytes())
    with httpx.Client(base_url=url, timeout=30) as client:
        yield {
            "cfg": cfg,
            "url": url,
            "bundle": loaded,
            "trained": bundle,
            "path": path,
            "client": client,
        }
    serve.shutdown()


# --- pure parts: no Serve needed -----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9000"),
        ("0.0.0.0", "http://127.0.0.1:9000"),
        ("::", "http://[::1]:9000"),
        ("10.1.2.3", "http://10.1.2.3:9000"),
    ],
)
def test_serve_url(tmp_path, host, url):
    cfg = Config(home=tmp_path, db_url="sqlite://", artifacts=tmp_path, serve_host=host)
    assert serve_url(Config(**{**cfg.__dict__, "serve_port": 9000})) == url


def test_prediction_log_file_layout(tmp_path):
    log = PredictionLog(
        tmp_path,
        deployment="d",
        model="m",
        version="7",
        features=["income", "region"],
        categorical=["region"],
        clock=lambda: 1_700_000_000_123_456_789,
    )
    path = log.write(
        "../odd id",
        {"income": np.array([1.0, np.nan]), "region": np.array(["a", "b"], dtype=object)},
        np.array([1, 0]),
        np.array([0.9, 0.1], dtype=np.float32),
    )
    assert path == tmp_path / "predictions/d/pending/01700000000123456789-___odd_id.parquet"
    table = pq.read_table(path)
    assert table.schema == log.schema
    assert table.column("request_id").to_pylist() == ["../odd id"] * 2
    assert table.column("row").to_pylist() == [0, 1]
    assert str(table.column("ts").type) == "timestamp[us, tz=UTC]"
    assert table.column("ts")[0].value == 1_700_000_000_123_456
    assert not list(path.parent.glob(".tmp-*"))


def test_prediction_log_rejects_reserved_feature_names(tmp_path):
    with pytest.raises(InvalidInput, match="'score'"):
        PredictionLog(tmp_path, deployment="d", model="m", version="1", features=["score"])


def test_feedback_file_layout(tmp_path):
    path = write_feedback(tmp_path, "d", "r1", np.array([0, 1]), np.array([1, 0]), clock=lambda: 42)
    assert path.parent == tmp_path / "feedback" / "d"
    assert path.name.startswith("00000000000000000042-")
    table = pq.read_table(path)
    assert table.schema == FEEDBACK_SCHEMA
    assert table.column("label").to_pylist() == [1, 0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": "bad/name"}, InvalidInput, "model name"),
        ({"version": ""}, InvalidInput, "version"),
        ({"deployment": "../x"}, InvalidInput, "deployment name"),
        ({"bundle_path": Path("/nonexistent/b.bundle")}, NotFound, "does not exist"),
        ({"bundle_path": "NOT_A_BUNDLE"}, InvalidInput, "not a model bundle"),
    ],
)
def test_deploy_rejects_bad_arguments_before_touching_ray(tmp_path, kwargs, error, message):
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"junk")
    args = {
        "model": "m",
        "version": "1",
        "deployment": "d",
        "bundle_path": junk,
    }
    args.update(kwargs)
    if args["bundle_path"] == "NOT_A_BUNDLE":
        args["bundle_path"] = junk
    cfg = Config(home=tmp_path, db_url="sqlite://", artifacts=tmp_path)
    with pytest.raises(error, match=message):
        deploy(cfg, **args)


# --- live endpoint -------------------------------------------------------------------------


def test_health_is_open(served):
    client = served["client"]
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "models": {MODEL: "READY"}}
    assert client.get("/v2").json()["name"] == "appliance"


def test_infer_json_names_version_and_logs_every_row(served):
    client, cfg, bundle = served["client"], served["cfg"], served["bundle"]
    cols = columns(5, seed=1)
    start = time.monotonic()
    resp = client.post(f"/v2/models/{MODEL}/infer", json=infer_request(cols, "req-1"), headers=AUTH)
    latency = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-model-version"] == "1"
    body = resp.json()
    # The client's id is echoed; the log uses an id of the appliance's own, returned beside it.
    assert body["model_name"] == MODEL and body["model_version"] == "1" and body["id"] == "req-1"
    logged_as = body["parameters"]["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", logged_as)
    assert resp.headers["x-appliance-request-id"] == logged_as
    outputs = {o["name"]: o for o in body["outputs"]}
    predictions, scores = bundle.predict(cols)
    assert outputs["predictions"]["datatype"] == "INT64"
    assert outputs["predictions"]["shape"] == [5]
    assert outputs["predictions"]["data"] == predictions.tolist()
    assert outputs["scores"]["datatype"] == "FP32"
    np.testing.assert_allclose(outputs["scores"]["data"], scores, rtol=1e-6)

    table = _logged(cfg, logged_as)
    assert table.column_names == [
        "request_id", "client_id", "row", "ts", "model", "version", "deployment", "shadow",
        *NUMERICAL, *CATEGORICAL, "prediction", "score",
    ]  # fmt: skip
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "request_id": "string",
        "client_id": "string",
        "row": "int32",
        "ts": "timestamp[us, tz=UTC]",
        "model": "string",
        "version": "string",
        "deployment": "string",
        "shadow": "bool",
        "income": "double",
        "age": "double",
        "region": "string",
        "prediction": "int64",
        "score": "float",
    }
    rows = table.to_pydict()
    assert rows["request_id"] == [logged_as] * 5 and rows["row"] == list(range(5))
    assert rows["client_id"] == ["req-1"] * 5
    assert set(rows["model"]) == {MODEL} and set(rows["version"]) == {"1"}
    assert set(rows["deployment"]) == {DEPLOYMENT}
    assert rows["shadow"] == [False] * 5
    np.testing.assert_allclose(rows["income"], cols["income"])
    assert rows["region"] == cols["region"].tolist()
    assert rows["prediction"] == predictions.tolist()
    print(f"first infer latency {latency * 1000:.0f} ms")


def test_serving_matches_the_trained_model(served):
    """No training/serving skew: the replica scores exactly as the in-memory trained model."""
    cols = columns(16, seed=11)
    resp = served["client"].post(
        f"/v2/models/{MODEL}/infer", json=infer_request(cols), headers=AUTH
    )
    scores = next(o["data"] for o in resp.json()["outputs"] if o["name"] == "scores")
    np.testing.assert_allclose(scores, served["trained"].predict_proba(cols), rtol=1e-5)


def test_request_without_id_gets_one(served):
    client, cfg = served["client"], served["cfg"]
    resp = client.post(f"/v2/models/{MODEL}/infer", json=infer_request(columns(2, 2)), headers=AUTH)
    assert resp.status_code == 200
    rid = resp.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and resp.json()["parameters"]["request_id"] == rid
    assert _logged(cfg, rid).column("client_id").to_pylist() == [None, None]


def test_a_client_id_used_twice_never_overwrites_or_aliases(served):
    client, cfg = served["client"], served["cfg"]
    logged = []
    for seed in (21, 22):
        resp = client.post(f"/v2/models/{MODEL}/infer",
                           json=infer_request(columns(2, seed), "same-id"), headers=AUTH)
        assert resp.status_code == 200 and resp.json()["id"] == "same-id"
        logged.append(resp.json()["parameters"]["request_id"])
    assert logged[0] != logged[1]
    assert [_logged(cfg, rid).num_rows for rid in logged] == [2, 2]


def test_served_rows_equal_logged_rows(served):
    client, cfg = served["client"], served["cfg"]
    sizes = [1, 3, 7, 2, 4, 1, 9, 5]
    timings, ids = [], []
    for i, n in enumerate(sizes):
        start = time.monotonic()
        resp = client.post(
            f"/v2/models/{MODEL}/infer", json=infer_request(columns(n, 10 + i)), headers=AUTH
        )
        timings.append(time.monotonic() - start)
        assert resp.status_code == 200
        ids.append(resp.headers["x-appliance-request-id"])
    # Logged once the 200 is out (in the replica's journal), every served row exactly once.
    logged = _logged_ids(cfg)
    assert [logged.count(rid) for rid in ids] == sizes
    # Published (fsync, rename) by a drain, or within the flush interval; many requests per
    # file.
    remaining = drain(MODEL)
    assert remaining == 0
    in_files = {p: log_files.read_log(p, ["request_id"]).column(0).to_pylist()
                for p in published(pending_dir(cfg))}
    counts = collections.Counter(rid for rids in in_files.values() for rid in rids)
    assert [counts[rid] for rid in ids] == sizes
    assert 1 <= sum(1 for rids in in_files.values() if set(rids) & set(ids)) <= len(sizes)
    print(f"infer latency median {sorted(timings)[len(timings) // 2] * 1000:.0f} ms")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient(served, binary):
    bundle = served["bundle"]
    cols = columns(4, seed=3)
    triton = httpclient.InferenceServerClient(url=served["url"].removeprefix("http://"))
    # tritonclient adds its own headers to the dict it is given: never hand it AUTH itself.
    auth = dict(AUTH)
    try:
        assert triton.is_server_live() and triton.is_server_ready()
        assert triton.is_model_ready(MODEL, headers=auth)
        meta = triton.get_model_metadata(MODEL, headers=auth)
        assert meta["versions"] == ["1"]
        assert [i["name"] for i in meta["inputs"]] == [*NUMERICAL, *CATEGORICAL]
        inputs = []
        for name in ["income", "age"]:
            tensor = httpclient.InferInput(name, [4, 1], "FP32")
            tensor.set_data_from_numpy(
                cols[name].astype(np.float32).reshape(4, 1), binary_data=binary
            )
            inputs.append(tensor)
        region = httpclient.InferInput("region", [4], "BYTES")
        region.set_data_from_numpy(cols["region"], binary_data=binary)
        inputs.append(region)
        result = triton.infer(MODEL, inputs, headers=auth, request_id=f"triton-{binary}")
        as_f32 = {**cols, **{n: cols[n].astype(np.float32) for n in ["income", "age"]}}
        predictions, scores = bundle.predict(as_f32)
        assert result.as_numpy("predictions").tolist() == predictions.tolist()
        np.testing.assert_allclose(result.as_numpy("scores"), scores, rtol=1e-6)
        assert result.get_response()["model_version"] == "1"
        assert result.get_response()["id"] == f"triton-{binary}"
        # Versioned route, and errors surface as the client's exception with our message.
        result = triton.infer(MODEL, inputs, model_version="1", headers=auth)
        assert result.get_response()["model_version"] == "1"
        with pytest.raises(InferenceServerException, match="not served"):
            triton.infer(MODEL, inputs, model_version="9", headers=auth)
        with pytest.raises(InferenceServerException, match="bearer token"):
            triton.infer(MODEL, inputs)
        # Binary outputs, as tritonclient asks for by default, decode to the same arrays.
        wanted = [httpclient.InferRequestedOutput(n, binary_data=True)
                  for n in ("scores", "predictions")]
        result = triton.infer(MODEL, inputs, outputs=wanted, headers=auth)
        assert result.as_numpy("predictions").tolist() == predictions.tolist()
        np.testing.assert_allclose(result.as_numpy("scores"), scores, rtol=1e-6)
    finally:
        triton.close()


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({}, f"/v2/models/{MODEL}"),
        ({"Authorization": "Bearer wrong"}, f"/v2/models/{MODEL}"),
        ({"Authorization": f"Basic {TOKEN}"}, f"/v2/models/{MODEL}/ready"),
        ({"Authorization": "Bearer"}, f"/v2/models/{MODEL}/ready"),
        ({}, "/v2/models/unknown-model"),
    ],
)
def test_model_routes_need_a_valid_token(served, headers, path):
    resp = served["client"].get(path, headers=headers)
    assert resp.status_code == 401
    assert "bearer token" in resp.json()["error"]
    assert resp.headers["www-authenticate"] == "Bearer"


def test_wrong_token_cannot_infer_or_log(served):
    client, cfg = served["client"], served["cfg"]
    before = len(_logged_ids(cfg))
    for headers in [{}, {"Authorization": "Bearer nope"}]:
        resp = client.post(
            f"/v2/models/{MODEL}/infer", json=infer_request(columns(2, 4)), headers=headers
        )
        assert resp.status_code == 401
    assert len(_logged_ids(cfg)) == before


BAD_BODIES = [
    ("empty body", b"", "empty"),
    ("malformed json", b'{"inputs": [', "not valid JSON"),
    ("missing feature", {"inputs": infer_request(columns(2, 5))["inputs"][:2]}, "'region'"),
    ("wrong length", "wrong_length", "'income'"),
    ("bad datatype", "bad_datatype", "'income'"),
    ("non-numeric", "non_numeric", "'age'"),
]


def _bad_body(kind):
    doc = infer_request(columns(2, 6))
    if kind == "wrong_length":
        doc["inputs"][0]["data"] = [1.0, 2.0, 3.0]
    elif kind == "bad_datatype":
        doc["inputs"][0]["datatype"] = "COMPLEX"
    elif kind == "non_numeric":
        doc["inputs"][1]["data"] = ["forty", 40.0]
    return doc


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_requests_are_400_and_not_logged(served, case, body, message):
    client, cfg = served["client"], served["cfg"]
    before = len(_logged_ids(cfg))
    if isinstance(body, str):
        body = _bad_body(body)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = client.post(f"/v2/models/{MODEL}/infer", content=content, headers=AUTH)
    assert resp.status_code == 400, case
    assert message in resp.json()["error"], case
    assert len(_logged_ids(cfg)) == before


def test_bad_binary_header_is_400(served):
    resp = served["client"].post(
        f"/v2/models/{MODEL}/infer",
        content=b"{}",
        headers={**AUTH, "Inference-Header-Content-Length": "many"},
    )
    assert resp.status_code == 400 and "Inference-Header-Content-Length" in resp.json()["error"]


def test_not_found(served):
    client = served["client"]
    resp = client.post("/v2/models/nope/infer", json=infer_request(columns(1, 7)), headers=AUTH)
    assert resp.status_code == 404
    assert resp.json() == {"error": "model 'nope' is not deployed"}
    assert client.get(f"/v2/models/{MODEL}/versions/2/ready", headers=AUTH).status_code == 404
    resp = client.get("/v2/no/such/route")
    assert resp.status_code == 404 and "error" in resp.json()


def test_deploy_on_another_port_is_a_conflict(served):
    cfg = served["cfg"]
    other = Config(**{**cfg.__dict__, "serve_port": cfg.serve_port + 1})
    with pytest.raises(ConflictError, match=f"already listens on 127.0.0.1:{cfg.serve_port}"):
        deploy(other, model="other", version="1", bundle_path=served["path"], deployment="other")


def test_feedback_writes_labels(served):
    client, cfg = served["client"], served["cfg"]
    folder = cfg.artifacts / "feedback" / DEPLOYMENT
    resp = client.post(
        f"/v2/models/{MODEL}/feedback",
        json={"request_id": "req-1", "labels": [1, 0, 1, 1, 0]},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"request_id": "req-1", "rows": 5}
    resp = client.post(
        f"/v2/models/{MODEL}/feedback",
        json={"request_id": "req-1", "row": 2, "label": 0},
        headers=AUTH,
    )
    assert resp.status_code == 200
    tables = [pq.read_table(p) for p in published(folder)]
    assert [t.num_rows for t in tables] == [5, 1]
    assert tables[0].schema == FEEDBACK_SCHEMA
    assert tables[0].column("label").to_pylist() == [1, 0, 1, 1, 0]
    assert tables[1].column("row").to_pylist() == [2]
    bad = client.post(f"/v2/models/{MODEL}/feedback", json={"labels": [1]}, headers=AUTH)
    assert bad.status_code == 400 and "request_id" in bad.json()["error"]
    assert client.post(f"/v2/models/{MODEL}/feedback", json={}).status_code == 401
    # Labels drive accuracy alerts and retraining: a viewer may infer but not post them.
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    denied = client.post(f"/v2/models/{MODEL}/feedback",
                         json={"request_id": "req-1", "labels": [1]}, headers=viewer)
    assert denied.status_code == 403 and "lacks scope 'feedback'" in denied.json()["error"]
    assert len(published(folder)) == 2
    ok = client.post(f"/v2/models/{MODEL}/infer", json=infer_request(columns(1, 3)),
                     headers=viewer)
    assert ok.status_code == 200


def test_unloggable_prediction_is_503_not_served(served):
    client, cfg = served["client"], served["cfg"]
    pending = pending_dir(cfg)
    # Published: the next request opens a new journal segment.
    assert drain(MODEL) == 0
    moved = pending.with_name("pending-moved")
    pending.rename(moved)
    # A file where the folder should be: opening the segment fails, even for root.
    pending.write_text("in the way")
    try:
        resp = client.post(
            f"/v2/models/{MODEL}/infer", json=infer_request(columns(2, 8)), headers=AUTH
        )
        assert resp.status_code == 503 and resp.headers["retry-after"]
        assert "could not be logged" in resp.json()["error"]
        refused = resp.headers["x-appliance-request-id"]
    finally:
        pending.unlink()
        moved.rename(pending)
    resp = client.post(f"/v2/models/{MODEL}/infer", json=infer_request(columns(2, 8)), headers=AUTH)
    assert resp.status_code == 200
    # Served == logged: the refused request's rows were never written, not even later.
    assert _logged(cfg, refused) is None


def test_deploying_version_2_swaps_in_place(served):
    client, cfg = served["client"], served["cfg"]
    v2 = served["path"].with_name("credit-v2.bundle")
    shutil.copy(served["path"], v2)
    start = time.monotonic()
    url = deploy(cfg, model=MODEL, version="2", bundle_path=v2, deployment=DEPLOYMENT)
    print(f"redeploy took {time.monotonic() - start:.1f}s")
    assert url == served["url"]
    resp = client.post(
        f"/v2/models/{MODEL}/infer", json=infer_request(columns(3, 9), "v2-req"), headers=AUTH
    )
    assert resp.status_code == 200
    assert resp.headers["x-model-version"] == "2" and resp.json()["model_version"] == "2"
    assert client.get(f"/v2/models/{MODEL}", headers=AUTH).json()["versions"] == ["2"]
    assert client.get(f"/v2/models/{MODEL}/versions/1", headers=AUTH).status_code == 404
    assert client.get(f"/v2/models/{MODEL}/versions/2/ready", headers=AUTH).status_code == 200
    logged = _logged(cfg, resp.json()["parameters"]["request_id"])
    assert set(logged.column("version").to_pylist()) == {"2"}


def test_undeploy_then_404(served):
    client, cfg = served["client"], served["cfg"]
    undeploy(cfg, MODEL)
    resp = client.get(f"/v2/models/{MODEL}/ready", headers=AUTH)
    assert resp.status_code == 404
    assert client.get("/v2/health/live").status_code == 200
    with pytest.raises(NotFound, match="not deployed"):
        undeploy(cfg, MODEL)
