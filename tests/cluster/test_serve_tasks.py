"""A multiclass and a regression model served side by side through the same OIP endpoint:
real Ray Serve, real HTTP on loopback, the real prediction log."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from serve_helpers import AUTH, CATEGORICAL, columns, infer_request, logged_tables, serve_config

from cluster.bundle import ModelBundle, Preprocessor, build_mlp
from cluster.serve import deploy

pytestmark = pytest.mark.slow
CLASSES = ["east", "north", "south"]


def _trees() -> ModelBundle:
    """A binary gradient-boosted trees bundle over the same columns (xgboost.train here)."""
    import xgboost

    cols = columns(256, seed=0)
    pre = Preprocessor.fit(cols, CATEGORICAL)
    y = (cols["income"] > 50.0).astype(np.float32)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2, "seed": 0},
                            xgboost.DMatrix(pre.transform(cols), label=y), num_boost_round=10)
    return ModelBundle(pre, booster, 0, 0, label="y", kind="xgboost")


def _bundle(task: str) -> ModelBundle:
    """A small model of `task` over serve_helpers' columns, fitted for a few steps: multiclass
    learns which third of incomes a row is in (string classes), regression its age in years."""
    cols = columns(256, seed=0)
    pre = Preprocessor.fit(cols, CATEGORICAL)
    torch.manual_seed(0)
    x = torch.from_numpy(pre.transform(cols))
    if task == "multiclass":
        module = build_mlp(pre.width, hidden=8, layers=1, outputs=len(CLASSES))
        y = torch.from_numpy(np.digitize(cols["income"], [45.0, 55.0]))
        loss_fn = torch.nn.CrossEntropyLoss()
        target = None
    else:
        module = build_mlp(pre.width, hidden=8, layers=1)
        age = cols["age"]
        target = (float(age.mean()), float(age.std()))
        y = torch.from_numpy(((age - target[0]) / target[1]).astype(np.float32)).unsqueeze(-1)
        loss_fn = torch.nn.MSELoss()
    opt = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss_fn(module(x), y).backward()
        opt.step()
    return ModelBundle(pre, module, hidden=8, layers=1, label="y", task=task,
                       classes=CLASSES if task == "multiclass" else None, target=target)


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    home = tmp_path_factory.mktemp("serve-tasks")
    cfg = serve_config(home)
    bundles = {}
    for model, task in (("segment", "multiclass"), ("age", "regression"), ("trees", "binary")):
        path = home / f"{model}.bundle"
        path.write_bytes((_trees() if model == "trees" else _bundle(task)).to_bytes())
        bundles[model] = ModelBundle.from_bytes(path.read_bytes())
        url = deploy(cfg, model=model, version="1", bundle_path=path, deployment=f"{model}-prod")
    with httpx.Client(base_url=url, timeout=30) as client:
        yield {"cfg": cfg, "client": client, "bundles": bundles}
    serve.shutdown()


def _logged(cfg, deployment: str, request_id: str) -> pa.Table:
    folder = cfg.artifacts / "predictions" / deployment / "pending"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tables = [t.filter(pc.equal(t.column("request_id"), request_id))
                  for t in logged_tables(folder)]
        tables = [t for t in tables if t.num_rows]
        if tables:
            return pa.concat_tables(tables)
        time.sleep(0.2)
    raise AssertionError(f"request {request_id} was never logged in {folder}")


def test_multiclass_answers_class_and_probabilities(served):
    client, bundle = served["client"], served["bundles"]["segment"]
    cols = columns(6, seed=3)
    resp = client.post("/v2/models/segment/infer", json=infer_request(cols, "m-1"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    outputs = {o["name"]: o for o in body["outputs"]}
    assert list(outputs) == ["predictions", "scores", "probabilities"]
    want = bundle.score(cols)
    assert outputs["predictions"]["datatype"] == "INT64"
    assert outputs["predictions"]["data"] == want.predictions.tolist()
    assert outputs["probabilities"]["shape"] == [6, 3]
    proba = np.array(outputs["probabilities"]["data"]).reshape(6, 3)
    np.testing.assert_allclose(proba, want.probabilities, rtol=1e-5)
    np.testing.assert_allclose(outputs["scores"]["data"], proba.max(axis=1), rtol=1e-5)
    # The class list the predictions index is in the model's metadata.
    meta = client.get("/v2/models/segment", headers=AUTH).json()
    assert meta["parameters"] == {"task": "multiclass", "classes": CLASSES}
    assert [o["name"] for o in meta["outputs"]] == ["predictions", "scores", "probabilities"]
    logged = _logged(served["cfg"], "segment-prod", body["parameters"]["request_id"])
    assert logged.column("prediction").to_pylist() == want.predictions.tolist()


def test_regression_answers_the_value_in_label_units(served):
    client, bundle = served["client"], served["bundles"]["age"]
    cols = columns(5, seed=4)
    resp = client.post("/v2/models/age/infer", json=infer_request(cols, "r-1"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    assert outputs["predictions"]["datatype"] == "FP32"
    values = np.array(outputs["predictions"]["data"])
    np.testing.assert_allclose(values, bundle.score(cols).scores, rtol=1e-5)
    # Years, not standard deviations: the bundle undid the standardisation it trained on.
    assert 20 < values.mean() < 60
    # A regressor has no class probabilities: asking for them is the client's mistake.
    ask = {**infer_request(cols), "outputs": [{"name": "probabilities"}]}
    refused = client.post("/v2/models/age/infer", json=ask, headers=AUTH)
    assert refused.status_code == 400
    assert "probabilities" in refused.json()["error"]


def test_trees_answer_through_the_same_endpoint(served):
    client, bundle = served["client"], served["bundles"]["trees"]
    cols = columns(5, seed=5)
    resp = client.post("/v2/models/trees/infer", json=infer_request(cols, "t-1"), headers=AUTH)
    assert resp.status_code == 200, resp.text
    outputs = {o["name"]: o for o in resp.json()["outputs"]}
    predictions, scores = bundle.predict(cols)
    assert outputs["predictions"]["data"] == predictions.tolist()
    np.testing.assert_allclose(outputs["scores"]["data"], scores, rtol=1e-6)
