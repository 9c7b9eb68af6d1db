"""The GPU check's model sections: the training step and batched inference, on CUDA and CPU.

train(cfg, deadline, work) -> dict     `cluster.train_epoch.run_epoch` on the device, NVML traced
infer(cfg, deadline, work) -> dict     `cluster.scoring.TorchScorer` on CUDA against the CPU

Training runs, without Ray, what a Ray Train worker runs for the MLP kind
(`cluster.train_loop.train_loop`): the design matrix from `cluster.fit_data.prepare`,
`cluster.bundle.build_mlp`, AdamW, the task's loss, and one `run_epoch` per epoch over a seeded
order, with the rows and the order on the device. Two phases, each bounded by seconds rather
than epochs: the product's default MLP (small: its steps are short and the GPU waits on Python
and on each step's loss read) and a wide one (the GPU busy). NVML samples every GPU during both;
the records are the trace.

Inference scores the two trained networks as bundles read back from their bytes, through the
scorer serving uses: 1,000-row batches (one request's worth) and 65,536-row ones, on the CPU with
one torch thread (as a CPU replica runs) and on CUDA; and the network alone on the design matrix,
CPU with every core against CUDA, to show what the preprocessing costs around it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from _gpu_env import NvmlTrace, Timer

ROOT = Path(__file__).resolve().parent.parent
SEED = 7


def _phases(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any], float]]:
    from cluster.train_params import DEFAULT_PARAMS

    default = {k: DEFAULT_PARAMS[k] for k in ("hidden", "layers", "batch_size")}
    return [("default", default, cfg["default_seconds"]),
            ("wide", dict(cfg["wide"]), cfg["wide_seconds"])]


def train(cfg: dict[str, Any], deadline: float, work: Path) -> dict[str, Any]:
    """Train each phase's MLP for its seconds on the device; write its bundle and the trace."""
    sys.path.insert(0, str(ROOT))
    import torch

    from appliance.data import synthetic
    from cluster.bundle import ModelBundle, build_mlp, output_width
    from cluster.fit_data import prepare
    from cluster.train_epoch import TaskLoss, run_epoch
    from cluster.train_params import resolve_params

    device = "cuda" if cfg["mode"] == "gpu" else "cpu"
    table = synthetic.generate(cfg["rows"], seed=SEED)
    out: dict[str, Any] = {"device": device, "rows": cfg["rows"], "phases": {}}
    records = 0
    t_start = time.monotonic()
    for phase, shape, seconds in _phases(cfg):
        resolved = resolve_params({**shape, "epochs": 10_000})
        data = prepare(table, label=synthetic.LABEL, categorical=synthetic.CATEGORICAL,
                       resolved=resolved, seed=SEED, num_workers=1, task="binary")
        torch.manual_seed(SEED)
        outputs = output_width("binary", None)
        model = build_mlp(data.pre.width, resolved["hidden"], resolved["layers"], outputs)
        model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=resolved["lr"],
                                weight_decay=resolved["weight_decay"])
        loss_fn = TaskLoss("binary")
        x = torch.from_numpy(data.x_train).to(device)
        y = torch.from_numpy(data.y_train).to(device)
        n = len(y)
        stop_at = min(time.monotonic() + seconds, deadline)
        losses, epoch_s = [], []
        with NvmlTrace(every=cfg["trace_every"], phase=phase, origin=t_start) as trace:
            while not losses or time.monotonic() < stop_at:
                gen = torch.Generator().manual_seed(SEED * 1_000_003 + len(losses) * 1009)
                order = torch.randperm(n, generator=gen).to(device)
                with Timer(None) as t:
                    losses.append(run_epoch(model, opt, loss_fn, x, y, order,
                                            resolved["batch_size"]))
                    if device == "cuda":
                        torch.cuda.synchronize()
                epoch_s.append(t.seconds)
        # Appended phase by phase: a run killed in a later phase keeps the earlier ones' samples.
        with open(work / "trace.jsonl", "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in trace.records)
        records += len(trace.records)
        params = sum(p.numel() for p in model.parameters())
        steps = -(-n // resolved["batch_size"]) * len(losses)
        # Forward + backward of the linear layers: about 6 FLOP per weight per row.
        flops = 6.0 * params * n * len(losses)
        train_s = sum(epoch_s)
        # Rates over the epochs after the first, whose time holds one-off start-up work (CUDA
        # kernels loaded, cuBLAS handles made), when there are any.
        steady = epoch_s[1:] or epoch_s
        per = len(steady) / len(epoch_s)
        out["phases"][phase] = {
            **shape, "params": params, "epochs": len(losses), "train_s": train_s,
            "first_epoch_s": epoch_s[0], "epoch_s_median": sorted(epoch_s)[len(epoch_s) // 2],
            "steps": steps, "steps_per_s": steps * per / sum(steady),
            "rows_per_s": n * len(steady) / sum(steady),
            "tflops": flops * per / sum(steady) / 1e12,
            "loss_first": losses[0], "loss_last": losses[-1],
            # A diverged loss is reported, not raised: the timings stand either way.
            "loss_finite": math.isfinite(losses[-1]),
            "nvml": trace.summary() if trace.error is None else {"error": trace.error},
        }
        bundle = ModelBundle(data.pre, model.to("cpu").eval(), resolved["hidden"],
                             resolved["layers"], synthetic.LABEL, task="binary")
        (work / f"bundle_{phase}.pt").write_bytes(bundle.to_bytes())
        del model, opt, x, y
        if device == "cuda":
            torch.cuda.empty_cache()
    out["trace_records"] = records
    return out


def _rate(fn: Any, batches: list[Any], rows: list[int], budget: float, sync: Any) -> dict:
    """Rows/s of `fn` over `batches` in turn for about `budget` seconds, after one warm-up call;
    when that call alone takes the budget, it is the measurement (`calls` 1)."""
    t0 = time.perf_counter()
    fn(batches[0])
    sync()
    first = time.perf_counter() - t0
    if first >= budget:
        return {"rows": rows[0], "calls": 1, "seconds": first, "rows_per_s": rows[0] / first}
    done, calls, t0 = 0, 0, time.perf_counter()
    while True:
        i = calls % len(batches)
        fn(batches[i])
        done += rows[i]
        calls += 1
        if time.perf_counter() - t0 >= budget:
            break
    sync()
    seconds = time.perf_counter() - t0
    return {"rows": done, "calls": calls, "seconds": seconds, "rows_per_s": done / seconds}


def infer(cfg: dict[str, Any], deadline: float, work: Path) -> dict[str, Any]:
    """Rows/s of each trained bundle through the serving scorer and as a bare network."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from appliance.data import synthetic
    from cluster.bundle import ModelBundle
    from cluster.fit_data import table_columns
    from cluster.scoring import TorchScorer

    gpu = cfg["mode"] == "gpu"
    table = synthetic.generate(cfg["rows"], seed=SEED + 4)
    columns = table_columns(table, synthetic.FEATURES, synthetic.CATEGORICAL)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out: dict[str, Any] = {"rows": cfg["rows"], "cores": cores, "bundles": {}}

    def nosync() -> None:
        pass

    cuda_sync = torch.cuda.synchronize if gpu else nosync
    phases = sorted(work.glob("bundle_*.pt"))
    budget, max_call = cfg["seconds_per_measure"], cfg["max_call_s"]
    for path in phases:
        name = path.stem.removeprefix("bundle_")
        blob = path.read_bytes()
        res: dict[str, Any] = {"bytes": len(blob)}
        cpu_rate = None
        for batch in cfg["batches"]:
            slices = [{k: v[a : a + batch] for k, v in columns.items()}
                      for a in range(0, cfg["rows"], batch)][: max(1, cfg["rows"] // batch)]
            sizes = [len(next(iter(s.values()))) for s in slices]
            cpu = TorchScorer(ModelBundle.from_bytes(blob), num_gpus=0)  # one torch thread
            # A wide network on one thread takes tens of seconds per 65,536 rows: estimated
            # from the smaller batch's rate, such a call is left out and said so.
            if cpu_rate is not None and batch / cpu_rate > max_call:
                res[f"scorer_cpu_1thread@{batch}"] = {
                    "skipped": f"about {batch / cpu_rate:.0f} s per call"}
            else:
                res[f"scorer_cpu_1thread@{batch}"] = _rate(cpu.predict, slices, sizes, budget,
                                                           nosync)
                cpu_rate = res[f"scorer_cpu_1thread@{batch}"]["rows_per_s"]
            if gpu and time.monotonic() < deadline:
                dev = TorchScorer(ModelBundle.from_bytes(blob), num_gpus=1)
                res[f"scorer_cuda@{batch}"] = _rate(dev.predict, slices, sizes, budget,
                                                    cuda_sync)
                want, got = cpu.predict(slices[0]), dev.predict(slices[0])
                res[f"agree@{batch}"] = {
                    "predictions_equal": float(np.mean(want.predictions == got.predictions)),
                    "max_abs_score_diff": float(np.max(np.abs(want.scores - got.scores))),
                }
        bundle = ModelBundle.from_bytes(blob)
        x = bundle.preprocessor.transform(columns)
        with torch.no_grad():
            torch.set_num_threads(cores)
            module = bundle.module.eval()
            big = cfg["batches"][-1]
            xs = [torch.from_numpy(x[a : a + big]) for a in range(0, len(x), big)]
            sizes = [len(b) for b in xs]
            res[f"network_cpu_{cores}threads@{big}"] = _rate(module, xs, sizes, budget, nosync)
            if gpu and time.monotonic() < deadline:
                module = module.to("cuda")
                xs = [b.to("cuda") for b in xs]
                res[f"network_cuda@{big}"] = _rate(module, xs, sizes, budget, cuda_sync)
        with Timer(None) as t:
            bundle.preprocessor.transform(columns)
        res["transform_rows_per_s"] = cfg["rows"] / t.seconds
        out["bundles"][name] = res
    return out
