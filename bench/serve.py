"""Serving bench: the appliance's OIP infer route vs a bare Ray Serve echo, on one Ray.

    .venv/bin/python bench/serve.py                          # writes bench/RESULTS.md
    .venv/bin/python bench/serve.py --seconds 2 --rounds 1 --results /tmp/r.md

One run starts one local Ray (``--ray-cpus``, default 2) in a throwaway HOME, and on its one
Serve HTTP proxy:

* ``/bare``: a plain `@serve.deployment` whose ``__call__`` answers the request body back (the
  ingress's CPU share and concurrency limit): Ray Serve's own cost, nothing of ours;
* the appliance (`cluster.serve.deploy`): the OIP ingress (bearer-token auth, routing) in front
  of three deployments of the same bundle, the demo model's shape trained in-process on
  `appliance.data.synthetic`: ``bench-log`` (the default serving options, every answered row
  logged: written to the replica's journal before the answer, published with fsync on an
  interval), ``bench-nolog`` (``log_predictions = false``) and ``bench-unbatched``
  (``max_batch_size = 1``, logging on).

The same bytes, a one-applicant OIP v2 JSON request, go to every endpoint through the same
client (httpx, keep-alive, closed loop) at 1 and ``--clients`` (16) requests in flight;
1,000-row requests go to ``bench-log`` at 16. Every cell runs ``--rounds`` times, interleaved
with the others so that a shared machine's load falls on all of them alike, each after a
warm-up, while the CPU time of every process of this Ray and of the client is read from /proc.
Then a stage breakdown at one client, its probes taking turns request by request: bare GET,
the ingress's open health route, the bare echo, each model's infer route, a handle call from
here straight to a model replica (logging off, on), and the replica's work done in this
process without Ray. On a CUDA host with NVML, a wider network with ``num_gpus = 0.5`` takes
1,000-row requests while NVML samples the GPU's utilisation.

It writes its section of bench/RESULTS.md (`_serve_report`) and prints it to stdout;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from _serve_load import (
    Cell,
    CpuMeter,
    NvmlSampler,
    gpu_unavailable,
    http_cell,
    http_probe,
    paired_cells,
    process_tree,
)
from _serve_report import GPU, LOG, NOLOG, UNBATCHED, section, write_section

# The drift bench's machine line (CPU model, cores, memory, load), so both sections agree.
from drift import _machine

from appliance.ports import free_port

HERE = Path(__file__).resolve().parent
# Each model's serving options over the appliance's defaults.
SERVINGS = {LOG: {}, NOLOG: {"log_predictions": False}, UNBATCHED: {"max_batch_size": 1}}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _isolate(tmp: Path) -> None:
    """A throwaway HOME and Ray token, before anything imports Ray (as tests/conftest.py does):
    Ray 2.59+ would otherwise write ~/.ray/auth_token, and join a cluster RAY_ADDRESS names."""
    os.environ["HOME"] = str(tmp / "home")
    os.environ["APPLIANCE_HOME"] = str(tmp / "home" / ".appliance")
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    # Before Ray, as in the appliance: `cluster` sets Ray's auth mode when it is imported.
    import cluster  # noqa: F401


# --------------------------------------------------------------------------- model and data


def _infer_body(table, features: list[str], categorical: list[str]) -> bytes:
    """An OIP v2 JSON inference request for every row of `table`."""
    from appliance.tables import table_columns

    cols = table_columns(table, features, categorical)
    doc = {"inputs": [
        {"name": name, "shape": [len(values)],
         "datatype": "BYTES" if name in categorical else "FP64", "data": values.tolist()}
        for name, values in cols.items()
    ]}
    return json.dumps(doc, separators=(",", ":")).encode()


# The share of the bench's rows kept back to report the model's accuracy on.
_HOLDOUT = 0.2


def _train_demo(rows: int, seed: int):
    """The demo model's network (`cluster.train_params.DEFAULT_PARAMS`) fitted here, without Ray
    Train, on `rows` synthetic applicants; returns (bundle, holdout accuracy, seconds)."""
    import torch

    from appliance.data import synthetic
    from appliance.tables import table_columns
    from cluster.bundle import ModelBundle, Preprocessor, build_mlp
    from cluster.evaluate import evaluate
    from cluster.train_params import DEFAULT_PARAMS

    t0 = time.perf_counter()
    params = DEFAULT_PARAMS
    table = synthetic.generate(rows, seed=seed)
    cut = int(rows * (1 - _HOLDOUT))
    train, valid = table.slice(0, cut), table.slice(cut)
    cols = table_columns(train, synthetic.FEATURES, synthetic.CATEGORICAL)
    pre = Preprocessor.fit(cols, synthetic.CATEGORICAL)
    x = torch.from_numpy(pre.transform(cols))
    y = torch.from_numpy(train.column(synthetic.LABEL).to_numpy().astype(np.float32))
    torch.manual_seed(seed)
    module = build_mlp(pre.width, params["hidden"], params["layers"])
    opt = torch.optim.AdamW(module.parameters(), lr=params["lr"],
                            weight_decay=params["weight_decay"])
    for _ in range(params["epochs"]):
        order = torch.randperm(len(x))
        for i in range(0, len(x), params["batch_size"]):
            idx = order[i:i + params["batch_size"]]
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                module(x[idx]).squeeze(-1), y[idx])
            loss.backward()
            opt.step()
    bundle = ModelBundle(pre, module, hidden=params["hidden"], layers=params["layers"],
                         label=synthetic.LABEL)
    accuracy = evaluate(bundle, valid, synthetic.LABEL)["accuracy"]
    return bundle, accuracy, time.perf_counter() - t0


def _token_store(home: Path) -> tuple[str, str]:
    """A migrated SQLite store under `home` with one operator's token: (URL, secret)."""
    from appliance.governance.users import create_user, issue_token
    from appliance.store import migrate, session_scope

    url = f"sqlite:///{home / 'appliance.db'}"
    migrate(url)
    with session_scope(url) as session:
        create_user(session, "bench", "operator", actor="bench")
        secret = issue_token(session, "bench", "bench", actor="bench")
    return url, secret


# --------------------------------------------------------------------------- deployments


def _echo_app():
    """The bare peer: Ray Serve's HTTP proxy, one replica, the body answered back."""
    # Deferred, like every Ray import here: Ray must not load before _isolate has run.
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    from cluster.serve._ingress import INGRESS_CPUS, INGRESS_MAX_ONGOING

    @serve.deployment(name="Echo", num_replicas=1, ray_actor_options={"num_cpus": INGRESS_CPUS},
                      max_ongoing_requests=INGRESS_MAX_ONGOING)
    class Echo:
        async def __call__(self, request: Request) -> Response:
            # A GET reads no body: the breakdown's probe of the bare request path alone.
            body = await request.body() if request.method == "POST" else b""
            return Response(body, media_type="application/json")

    return Echo.bind()


def _process_groups() -> dict[str, list[int]]:
    """This process (the client) and this Ray's processes, grouped for the CPU meter: the HTTP
    proxy, the ingress, each replica, and the rest (controller, raylet, GCS, idle workers)."""
    me = os.getpid()
    replicas = {"ServeReplica:oip:": "ingress", "ServeReplica:bare:": "bare",
                **{f"ServeReplica:model-{m}:": m for m in (*SERVINGS, GPU)}}
    groups: dict[str, list[int]] = {"client": [me], "proxy": [], "ingress": [], "rest": []}
    for pid, title in process_tree(me).items():
        if pid == me:
            continue
        name = "proxy" if "ProxyActor" in title else next(
            (g for tag, g in replicas.items() if tag in title), "rest")
        groups.setdefault(name, []).append(pid)
    return groups


def _check(client, url: str, body: bytes, headers: dict, rows: int, echo: bool) -> None:
    """One request before measuring: a 200 with the right answer, or the bench stops."""
    resp = client.post(url, content=body, headers=headers)
    if resp.status_code != 200:
        raise SystemExit(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    if echo:
        ok = resp.content == body
    else:
        outputs = {o["name"]: o for o in resp.json().get("outputs", [])}
        ok = outputs.get("scores", {}).get("shape") == [rows]
    if not ok:
        raise SystemExit(f"{url} answered 200 but not as expected: {resp.text[:300]}")


# --------------------------------------------------------------------------- measuring


def _plan(url: str, bodies: dict[int, bytes], clients: int, batch_rows: int) -> list[dict]:
    """The HTTP cells: key, endpoint, model URL, clients, rows per request."""
    cells = [("bare", "bare echo", f"{url}/bare", 1)]
    cells += [(m, f"appliance {m}", f"{url}/v2/models/{m}/infer", 1)
              for m in (LOG, NOLOG, UNBATCHED)]
    plan = [{"key": f"{key}@{c}", "label": label, "url": u, "clients": c, "rows": rows,
             "replica": key} for key, label, u, rows in cells for c in (1, clients)]
    plan.append({"key": f"{LOG}-rows@{clients}", "label": f"appliance {LOG}",
                 "url": f"{url}/v2/models/{LOG}/infer", "clients": clients, "rows": batch_rows,
                 "replica": LOG})
    for cell in plan:
        cell["body"] = bodies[cell["rows"]]
    return plan


def _measure(plan: list[dict], headers: dict, args) -> dict[str, Cell]:
    out: dict[str, Cell] = {}
    meter = CpuMeter(_process_groups())
    for r in range(args.rounds):
        for spec in plan:
            cell = http_cell(spec["key"], spec["url"], spec["body"], headers,
                             concurrency=spec["clients"], seconds=args.seconds,
                             warmup_s=args.warmup, rows=spec["rows"], meter=meter)
            out[spec["key"]] = out[spec["key"]].merge(cell) if spec["key"] in out else cell
            _say(f"  round {r + 1}/{args.rounds} {spec['key']:<24} p50 {cell.p50_ms:7.2f} ms  "
                 f"{cell.rps:8.1f} req/s  errors {cell.errors}")
    return out


def _breakdown(url: str, body: bytes, headers: dict, bundle, args) -> dict[str, Cell]:
    """Where one request's time goes: probes of each stage at one client, taking turns."""
    from ray import serve

    from cluster.scoring import TorchScorer
    from cluster.serve import _oip
    from cluster.serve._ingress import model_app_name

    handles = {m: serve.get_app_handle(model_app_name(m)) for m in (NOLOG, LOG)}
    scorer = TorchScorer(bundle, 0)
    features, categorical = bundle.feature_names, set(bundle.categorical)

    def by_handle(model: str):
        async def probe() -> str:
            reply = await handles[model].infer.remote(body, request_id=uuid.uuid4().hex)
            return "" if reply.status == 200 else f"status {reply.status}: {reply.body}"
        return probe

    async def in_process() -> str:
        req = _oip.parse_infer_request(body, features=features, categorical=categorical)
        predictions, scores = scorer.predict(req.columns)[:2]
        rid = uuid.uuid4().hex
        reply = _oip.infer_reply(model=NOLOG, version="1", request=req, request_id=rid,
                                 predictions=predictions, scores=scores,
                                 headers={"x-model-version": "1"},
                                 parameters={"request_id": rid})
        json.dumps(reply.body)
        return ""

    def probes(client) -> dict:
        out = {
            "bare-get": http_probe(client, "GET", f"{url}/bare", None, headers),
            "live": http_probe(client, "GET", f"{url}/v2/health/live", None, headers),
            "bare": http_probe(client, "POST", f"{url}/bare", body, headers),
        }
        for model in (NOLOG, LOG, UNBATCHED):
            out[model] = http_probe(client, "POST", f"{url}/v2/models/{model}/infer", body,
                                    headers)
        out.update({f"handle-{NOLOG}": by_handle(NOLOG), f"handle-{LOG}": by_handle(LOG),
                    "in-process": in_process})
        return out

    parts = paired_cells(probes, seconds=args.breakdown_seconds, warmup_s=args.warmup)
    for key, cell in parts.items():
        _say(f"  {key:<24} p50 {cell.p50_ms:7.3f} ms  errors {cell.errors}")
    return parts


def _gpu(cfg, url: str, body: bytes, headers: dict, pre, args) -> dict:
    """Batched throughput of a wider network on a GPU, and NVML's utilisation during it."""
    why = "skipped (--skip-gpu)" if args.skip_gpu else gpu_unavailable()
    if why:
        return {"skipped": why}
    import ray

    from appliance.data import synthetic
    from appliance.serving import parse_serving
    from cluster.bundle import ModelBundle, build_mlp
    from cluster.serve import deploy

    if ray.cluster_resources().get("GPU", 0) <= 0:
        return {"skipped": "torch sees a GPU but this Ray has none"}
    module = build_mlp(pre.width, args.gpu_hidden, args.gpu_layers)
    bundle = ModelBundle(pre, module, hidden=args.gpu_hidden, layers=args.gpu_layers,
                         label=synthetic.LABEL)
    path = cfg.home / f"{GPU}.bundle"
    path.write_bytes(bundle.to_bytes())
    serving = {"num_gpus": 0.5, "log_predictions": False}
    _say(f"deploying {GPU} ({args.gpu_layers} x {args.gpu_hidden} units, num_gpus 0.5) ...")
    deploy(cfg, model=GPU, version="1", bundle_path=path, deployment=GPU,
           serving=parse_serving(serving))
    target = f"{url}/v2/models/{GPU}/infer"
    rows = args.batch_rows
    http_cell("warm", target, body, headers, concurrency=args.clients, seconds=args.warmup,
              warmup_s=0, rows=rows)
    meter = CpuMeter(_process_groups())
    with NvmlSampler() as nvml:
        cell = http_cell(GPU, target, body, headers, concurrency=args.clients,
                         seconds=args.seconds * args.rounds, warmup_s=0, rows=rows, meter=meter)
    params = sum(p.numel() for p in module.parameters())
    _say(f"  {GPU} {cell.rows_per_s:,.0f} rows/s, GPU {nvml.busiest()}")
    return {"cell": cell, "nvml": nvml.busiest(), "params": params, "serving": serving}


# --------------------------------------------------------------------------- driver


def _run(tmp: Path, args) -> str:
    # Deferred: Ray must load after _isolate.
    import httpx
    import ray
    import torch
    from ray import serve

    from appliance.config import Config
    from appliance.data import synthetic
    from appliance.serving import ServingOptions, parse_serving
    from cluster.runtime import init_local
    from cluster.serve import deploy
    from cluster.serve._ingress import INGRESS_CPUS

    meta = {"machine": _machine(), "ray": ray.__version__, "torch": torch.__version__,
            "httpx": httpx.__version__, "ingress_cpus": INGRESS_CPUS,
            "defaults": ServingOptions()}
    _say(f"training the demo network on {args.train_rows:,} rows ...")
    bundle, meta["accuracy"], meta["train_s"] = _train_demo(args.train_rows, seed=0)
    meta.update(hidden=bundle.hidden, layers=bundle.layers, width=bundle.preprocessor.width)
    home = tmp / "appliance"
    home.mkdir()
    path = home / "demo.bundle"
    path.write_bytes(bundle.to_bytes())
    table = synthetic.generate(args.batch_rows, seed=1)
    bodies = {n: _infer_body(table.slice(0, n), synthetic.FEATURES, synthetic.CATEGORICAL)
              for n in (1, args.batch_rows)}
    meta["bytes"] = {n: len(b) for n, b in bodies.items()}
    db_url, secret = _token_store(home)
    cfg = Config(home=home, db_url=db_url, artifacts=home / "artifacts",
                 serve_port=free_port(), serve_grpc_port=0, ray_num_cpus=args.ray_cpus)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    init_local(args.ray_cpus, logging_level="ERROR", log_to_driver=False)
    try:
        url = ""
        for model, serving in SERVINGS.items():
            _say(f"deploying {model} {serving or '(defaults)'} ...")
            url = deploy(cfg, model=model, version="1", bundle_path=path, deployment=model,
                         serving=parse_serving(serving))
        _say("deploying the bare echo ...")
        serve.run(_echo_app(), name="bare", route_prefix="/bare")
        with httpx.Client(timeout=60) as client:
            _check(client, f"{url}/bare", bodies[1], headers, 1, echo=True)
            for model in SERVINGS:
                for n, body in bodies.items():
                    _check(client, f"{url}/v2/models/{model}/infer", body, headers, n,
                           echo=False)
        plan = _plan(url, bodies, args.clients, args.batch_rows)
        _say(f"measuring {len(plan)} cells x {args.rounds} round(s) ...")
        cells = _measure(plan, headers, args)
        _say("stage breakdown at one client ...")
        parts = _breakdown(url, bodies[1], headers, bundle, args)
        gpu = _gpu(cfg, url, bodies[args.batch_rows], headers, bundle.preprocessor, args)
    finally:
        serve.shutdown()
        ray.shutdown()
    return section(meta, plan, cells, parts, gpu, args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell/round")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every cell")
    p.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each")
    p.add_argument("--clients", type=int, default=16, help="requests in flight, the high cell")
    p.add_argument("--breakdown-seconds", type=float, default=20.0,
                   help="seconds of the one-client stage breakdown")
    p.add_argument("--batch-rows", type=int, default=1000, help="rows of the large request")
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--gpu-hidden", type=int, default=2048, help="units per layer, GPU model")
    p.add_argument("--gpu-layers", type=int, default=4, help="hidden layers, GPU model")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        _isolate(tmp)
        text = _run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_section(args.results, text)
    print(text)


if __name__ == "__main__":
    main()
