"""A canary behind one model route: real Ray Serve, real HTTP on loopback, httpx.

One primary deployment per module (Serve takes ~10 s to come up on 2 cores); the tests run
in file order: split, a canary deleted behind the ingress's back, shadow, removal, promotion
under load, and last undeploy.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import re
import shutil
import threading
import time

import httpx
import pytest
import tritonclient.http as httpclient
from serve_helpers import (
    AUTH,
    DEPLOYMENT,
    MODEL,
    columns,
    infer_request,
    logged_rows,
    make_bundle,
    pending_dir,
    serve_config,
)

from appliance.config import Config
from appliance.errors import InvalidInput, NotFound
from cluster.serve import (
    canary_info,
    deploy,
    deploy_canary,
    remove_canary,
    undeploy,
)
from cluster.serve._ingress import model_app_name
from cluster.serve._routing import canary_app_name, to_canary

pytestmark = pytest.mark.slow

SHARE = 0.3
INFER = f"/v2/models/{MODEL}/infer"


def _canary_kwargs(served, version: str, **extra) -> dict:
    return {
        "model": MODEL,
        "version": version,
        "bundle_path": served["paths"][version],
        "deployment": DEPLOYMENT,
        **extra,
    }


def _applications() -> set[str]:
    from ray import serve

    return set(serve.status().applications)


def _ids_on(side: bool, prefix: str, n: int) -> list[str]:
    """The first `n` ids ``{prefix}{i}`` a split canary with SHARE answers (side True) or not."""
    out = []
    i = 0
    while len(out) < n:
        rid = f"{prefix}{i}"
        if to_canary(rid, SHARE) == side:
            out.append(rid)
        i += 1
    return out


def _post(client: httpx.Client, rid: str | None, seed: int = 0, path: str = INFER):
    resp = client.post(path, json=infer_request(columns(1, seed), rid), headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # Every answer names the version that gave it, in the body and the header alike.
    assert resp.headers["x-model-version"] == body["model_version"]
    return body


def _logged(cfg: Config, prefix: str = "") -> list[dict]:
    """Every logged row whose key starts with `prefix`: (key, request_id, version, shadow).

    The key is the client's id when it sent one, else the id the appliance made (which the
    answer's ``id`` then carries).
    """
    rows = []
    for row in logged_rows(pending_dir(cfg), ["request_id", "client_id", "version", "shadow"]):
        row["key"] = row["client_id"] or row["request_id"]
        if row["key"].startswith(prefix):
            rows.append(row)
    return rows


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    """Version 1 of the model served on a free port; Serve is shut down afterwards."""
    from ray import serve

    home = tmp_path_factory.mktemp("canary-home")
    paths = {"1": home / "credit-v1.bundle"}
    paths["1"].write_bytes(make_bundle().to_bytes())
    for version in ("2", "3"):
        paths[version] = home / f"credit-v{version}.bundle"
        shutil.copy(paths["1"], paths[version])
    cfg = serve_config(home)
    start = time.monotonic()
    url = deploy(cfg, model=MODEL, version="1", bundle_path=paths["1"], deployment=DEPLOYMENT)
    print(f"deploy took {time.monotonic() - start:.1f}s")
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"cfg": cfg, "url": url, "paths": paths, "client": client}
    serve.shutdown()


# --- live endpoint -------------------------------------------------------------------------


def test_a_canary_needs_its_primary_and_its_folder(served):
    cfg = served["cfg"]
    with pytest.raises(NotFound, match="'ghost' is not deployed"):
        deploy_canary(cfg, **{**_canary_kwargs(served, "2"), "model": "ghost"})
    with pytest.raises(InvalidInput, match="'elsewhere' is not the one"):
        deploy_canary(cfg, **{**_canary_kwargs(served, "2"), "deployment": "elsewhere"})
    assert canary_info(cfg, MODEL) is None
    assert remove_canary(cfg, MODEL) is False
    assert canary_app_name(MODEL) not in _applications()


def test_split_answers_a_sticky_share(served):
    client, cfg = served["client"], served["cfg"]
    start = time.monotonic()
    url = deploy_canary(cfg, **_canary_kwargs(served, "2", mode="split", share=SHARE))
    print(f"deploy_canary took {time.monotonic() - start:.1f}s")
    assert url == served["url"]
    assert canary_info(cfg, MODEL) == {"version": "2", "mode": "split", "share": SHARE}

    ids = [f"split-{i:03d}" for i in range(400)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda rid: _post(client, rid), ids))
    answered = {b["id"]: b["model_version"] for b in bodies}
    assert list(answered) == ids
    # Each id lands where the rule says, and the rule's share is binomially close to SHARE.
    assert answered == {rid: "2" if to_canary(rid, SHARE) else "1" for rid in ids}
    n, canary = len(ids), sum(v == "2" for v in answered.values())
    sd = math.sqrt(n * SHARE * (1 - SHARE))
    assert abs(canary - n * SHARE) <= 4 * sd, canary
    print(f"split: {canary}/{n} answered by the canary at share {SHARE}")

    # Sticky: the same id gets the same version every time.
    again = ids[:30]
    for _ in range(2):
        assert {rid: _post(client, rid)["model_version"] for rid in again} == {
            rid: answered[rid] for rid in again
        }

    # Both versions log into the one pending folder, each under its own version, none shadow.
    rows = _logged(cfg, "split-")
    assert len(rows) == 400 + 2 * 30
    assert {r["version"] for r in rows} == {"1", "2"}
    assert all(r["version"] == answered[r["key"]] for r in rows)
    assert not any(r["shadow"] for r in rows)


def test_split_request_without_id_gets_one_that_routes_and_logs_it(served):
    client, cfg = served["client"], served["cfg"]
    bodies = [_post(client, None, seed=i) for i in range(24)]
    for body in bodies:
        rid = body["id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert body["model_version"] == ("2" if to_canary(rid, SHARE) else "1")
        assert [r["version"] for r in _logged(cfg, rid)] == [body["model_version"]]


@pytest.mark.parametrize("side", [True, False], ids=["canary", "primary"])
def test_split_reads_the_id_from_the_binary_header(served, side):
    (rid,) = _ids_on(side, "binary-", 1)
    cols = columns(3, seed=5)
    triton = httpclient.InferenceServerClient(url=served["url"].removeprefix("http://"))
    try:
        inputs = []
        for name in ["income", "age"]:
            tensor = httpclient.InferInput(name, [3], "FP64")
            tensor.set_data_from_numpy(cols[name], binary_data=True)
            inputs.append(tensor)
        region = httpclient.InferInput("region", [3], "BYTES")
        region.set_data_from_numpy(cols["region"], binary_data=True)
        inputs.append(region)
        result = triton.infer(MODEL, inputs, headers=dict(AUTH), request_id=rid)
    finally:
        triton.close()
    assert result.get_response()["id"] == rid
    assert result.get_response()["model_version"] == ("2" if side else "1")


def test_split_keeps_everything_else_with_the_primary(served):
    client = served["client"]
    (to_the_canary,) = _ids_on(True, "pinned-", 1)
    # Not parseable: the primary answers the proper 400.
    resp = client.post(INFER, content=b'{"inputs": [', headers=AUTH)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    assert resp.headers["x-model-version"] == "1"
    # A named version goes to whichever app serves it.
    assert _post(client, "any", path=f"/v2/models/{MODEL}/versions/2/infer")["model_version"] == "2"
    body = _post(client, to_the_canary, path=f"/v2/models/{MODEL}/versions/1/infer")
    assert body["model_version"] == "1"
    resp = client.post(
        f"/v2/models/{MODEL}/versions/9/infer", json=infer_request(columns(1, 0)), headers=AUTH
    )
    assert resp.status_code == 404
    # Metadata, readiness and feedback: the primary's.
    assert client.get(f"/v2/models/{MODEL}", headers=AUTH).json()["versions"] == ["1"]
    assert client.get(f"/v2/models/{MODEL}/ready", headers=AUTH).json()["version"] == "1"
    resp = client.post(
        f"/v2/models/{MODEL}/feedback",
        json={"request_id": to_the_canary, "labels": [1]},
        headers=AUTH,
    )
    assert resp.status_code == 200 and resp.headers["x-model-version"] == "1"
    assert client.post(INFER, json=infer_request(columns(1, 0))).status_code == 401


def test_a_canary_that_vanishes_falls_back_to_the_primary(served):
    from ray import serve

    client, cfg = served["client"], served["cfg"]
    assert canary_info(cfg, MODEL) == {"version": "2", "mode": "split", "share": SHARE}
    canary_side = _ids_on(True, "vanish-", 8)
    assert {_post(client, rid)["model_version"] for rid in canary_side[:2]} == {"2"}
    # Deleted behind the ingress's back, while it still has the canary cached.
    serve.delete(canary_app_name(MODEL))
    start = time.monotonic()
    assert {_post(client, rid)["model_version"] for rid in canary_side} == {"1"}
    print(f"fell back in {time.monotonic() - start:.2f}s")
    assert remove_canary(cfg, MODEL) is False
    assert canary_info(cfg, MODEL) is None


def test_shadow_scores_every_request_and_only_logs_it(served):
    from ray import serve

    client, cfg = served["client"], served["cfg"]
    # The share means nothing to a shadow: it is not checked, and not reported.
    deploy_canary(cfg, **_canary_kwargs(served, "2", mode="shadow", share=0))
    assert canary_info(cfg, MODEL) == {"version": "2", "mode": "shadow", "share": None}

    bodies = [_post(client, f"shadow-{i}", seed=i) for i in range(16)]
    bodies += [_post(client, None, seed=i) for i in range(4)]
    assert {b["model_version"] for b in bodies} == {"1"}
    expected = {(b["id"], "1", False) for b in bodies} | {(b["id"], "2", True) for b in bodies}

    ids = {b["id"] for b in bodies}

    def logged() -> set[tuple]:
        return {(r["key"], r["version"], r["shadow"]) for r in _logged(cfg) if r["key"] in ids}

    deadline = time.monotonic() + 20
    while logged() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged() == expected
    # Nothing left behind in the ingress once the shadow calls are done.
    primary = serve.get_app_handle(f"model-{MODEL}")
    while (stats := primary.shadow_stats.remote().result(timeout_s=30))["in_flight"]:
        assert time.monotonic() < deadline, stats
        time.sleep(0.1)
    assert stats == {"in_flight": 0, "skipped": 0}


def test_remove_canary_goes_back_to_the_primary_alone(served):
    client, cfg = served["client"], served["cfg"]
    start = time.monotonic()
    assert remove_canary(cfg, MODEL) is True  # the shadow canary of the test above
    print(f"remove_canary took {time.monotonic() - start:.1f}s")
    assert canary_info(cfg, MODEL) is None
    assert canary_app_name(MODEL) not in _applications()
    bodies = [_post(client, rid) for rid in _ids_on(True, "removed-", 10)]
    assert {b["model_version"] for b in bodies} == {"1"}
    time.sleep(0.5)
    rows = _logged(cfg, "removed-")
    assert len(rows) == len(bodies) and not any(r["shadow"] for r in rows)  # no shadows
    assert remove_canary(cfg, MODEL) is False


def test_promotion_drops_no_request(served):
    cfg = served["cfg"]
    deploy_canary(cfg, **_canary_kwargs(served, "2", mode="split", share=0.5))
    stop = threading.Event()
    results: list[tuple[str, int | str, str | None]] = []
    lock = threading.Lock()

    def traffic(worker: int) -> None:
        with httpx.Client(base_url=served["url"], timeout=60) as client:
            n = 0
            while not stop.is_set():
                rid = f"promo-{worker}-{n}"
                n += 1
                try:
                    resp = client.post(INFER, json=infer_request(columns(1, n), rid), headers=AUTH)
                    outcome = (rid, resp.status_code, resp.headers.get("x-model-version"))
                except httpx.HTTPError as exc:
                    outcome = (rid, f"{type(exc).__name__}: {exc}", None)
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=traffic, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    start = time.monotonic()
    deploy(cfg, model=MODEL, version="2", bundle_path=served["paths"]["2"], deployment=DEPLOYMENT)
    assert remove_canary(cfg, MODEL) is True
    print(f"promotion took {time.monotonic() - start:.1f}s")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:10]
    assert len(results) >= 30, len(results)
    print(f"promotion: {len(results)} requests, all 200")
    client = served["client"]
    for i in range(20):
        assert _post(client, f"after-{i}")["model_version"] == "2"
    assert canary_info(cfg, MODEL) is None


def test_undeploy_removes_the_canary_too(served):
    client, cfg = served["client"], served["cfg"]
    deploy_canary(cfg, **_canary_kwargs(served, "3", mode="split", share=0.5))
    assert canary_info(cfg, MODEL)["version"] == "3"
    undeploy(cfg, MODEL)
    assert not {model_app_name(MODEL), canary_app_name(MODEL)} & _applications()
    assert canary_info(cfg, MODEL) is None
    assert client.post(INFER, json=infer_request(columns(1, 0)), headers=AUTH).status_code == 404
    assert remove_canary(cfg, MODEL) is False
    with pytest.raises(NotFound):
        undeploy(cfg, MODEL)
    body = json.loads(client.get("/v2/health/ready").content)
    assert body == {"ready": True, "models": {}}
