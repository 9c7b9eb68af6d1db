"""A model version served by a real Triton Inference Server behind the appliance's front door.

The appliance's replica keeps auth, parsing, batching, logging and canary routing; the network
runs in Triton (pytriton's ``tritonserver`` on CPU, from ``.venv-triton``). Reached with the
real ``tritonclient`` through the appliance's endpoint, and compared with the same bundle
served by torch in the replica itself.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from serve_helpers import (
    AUTH,
    DEPLOYMENT,
    NUMERICAL,
    columns,
    infer_request,
    logged_rows,
    make_bundle,
    pending_dir,
    serve_config,
)

from appliance.serving import parse_serving
from cluster.serve import deploy

pytestmark = pytest.mark.slow

MODEL = "credit-triton"


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    home = tmp_path_factory.mktemp("triton-home")
    path = home / "credit.bundle"
    bundle = make_bundle()
    path.write_bytes(bundle.to_bytes())
    cfg = serve_config(home)
    url = deploy(cfg, model=MODEL, version="1", bundle_path=path, deployment=DEPLOYMENT,
                 serving=parse_serving({"backend": "triton"}), timeout_s=240)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {"cfg": cfg, "url": url, "client": client, "bundle": bundle}
    serve.shutdown()


def test_tritonclient_through_the_appliance_gets_tritons_answers(served):
    bundle, cfg = served["bundle"], served["cfg"]
    cols = columns(7, seed=4)
    client = httpclient.InferenceServerClient(url=served["url"].removeprefix("http://"))
    try:
        inputs = []
        for name in NUMERICAL:
            tensor = httpclient.InferInput(name, [7], "FP64")
            tensor.set_data_from_numpy(cols[name], binary_data=True)
            inputs.append(tensor)
        region = httpclient.InferInput("region", [7], "BYTES")
        region.set_data_from_numpy(cols["region"], binary_data=True)
        inputs.append(region)
        result = client.infer(MODEL, inputs, headers=dict(AUTH), request_id="via-triton")
        with pytest.raises(Exception, match="bearer token"):
            client.infer(MODEL, inputs)
    finally:
        client.close()
    predictions, scores = bundle.predict(cols)
    assert result.as_numpy("predictions").tolist() == predictions.tolist()
    np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-6)
    # Logged like any other answer, under the id the appliance returned.
    logged_as = result.get_response()["parameters"]["request_id"]
    rows = [r for r in logged_rows(pending_dir(cfg), ["request_id", "client_id"])
            if r["request_id"] == logged_as]
    assert len(rows) == 7 and {r["client_id"] for r in rows} == {"via-triton"}


def test_many_requests_batch_through_triton(served):
    client, bundle = served["client"], served["bundle"]
    for seed in range(5):
        cols = columns(1 + seed, seed=seed)
        resp = client.post(f"/v2/models/{MODEL}/infer", json=infer_request(cols), headers=AUTH)
        assert resp.status_code == 200, resp.text
        scores = next(o["data"] for o in resp.json()["outputs"] if o["name"] == "scores")
        np.testing.assert_allclose(scores, bundle.predict_proba(cols), atol=1e-6)


def test_the_replica_reports_triton_healthy(served):
    from ray import serve

    info = serve.get_app_handle(f"model-{MODEL}").info.remote().result(timeout_s=30)
    assert info["version"] == "1"
    assert served["client"].get("/v2/health/ready").json()["models"] == {MODEL: "READY"}
