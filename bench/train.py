"""Training bench: Ray Train against the plain loop it wraps, on the same data, model and seed.

    .venv/bin/python bench/train.py                          # writes bench/RESULTS.md
    .venv/bin/python bench/train.py --quick --results /tmp/r.md

One run starts one local Ray (``--ray-cpus``, default 2) in a throwaway HOME and measures, on
rows of `appliance.data.synthetic` (the last ``--holdout`` share kept as the holdout):

* the MLP: `cluster.train.fit` (Ray Train's TorchTrainer, one worker, CPU) against a plain
  PyTorch loop in this process doing the same epochs on the same design matrix
  (`cluster.fit_data.prepare`) with the same params, seed, batch order and thread count; the
  epochs are sized from a short probe so that the plain loop's epochs alone take
  ``--mlp-seconds`` (60);
* XGBoost: `cluster.train.fit(kind="xgboost")` (Ray Train's XGBoostTrainer, 1 and 2 workers)
  against `xgboost.train` here on the same design matrix, params and rounds; the rounds are
  sized the same way (``--xgb-seconds``); "not available" when this checkout has no xgboost
  kind;
* an ASHA sweep over the MLP: trials per minute, and how many trials ASHA stopped early;
* on a CUDA host with NVML: NVML's GPU utilisation while `fit` trains a scaled-up MLP.

Each side's holdout metric is reported next to its time: close metrics are the evidence that
both did the same work. It writes its section of bench/RESULTS.md (`_train_report`) and prints
it to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _serve_load import NvmlSampler, gpu_unavailable
from _train_report import section, write_section

# The drift bench's machine line, and the serving bench's isolation (HOME, Ray token).
from drift import _machine
from serve import _isolate

HERE = Path(__file__).resolve().parent
SEED = 7
# Ray Train and Tune give a one-CPU worker OMP_NUM_THREADS=1; the plain loops here match it.
THREADS = 1


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _data(rows: int, holdout: float, seed: int):
    """(training rows, holdout rows, label, categorical) of `rows` synthetic applicants."""
    from appliance.data import synthetic

    table = synthetic.generate(rows, seed=seed)
    cut = int(rows * (1 - holdout))
    return table.slice(0, cut), table.slice(cut), synthetic.LABEL, synthetic.CATEGORICAL


def _headline(metrics: dict) -> float:
    """The binary holdout metric both sides are compared by: AUC."""
    return float(metrics.get("auc") or float("nan"))


# --------------------------------------------------------------------------- MLP


def _plain_mlp(train, holdout, label: str, categorical: list[str], params: dict,
               seed: int) -> dict[str, Any]:
    """What `cluster.train.fit` does for one CPU worker, without Ray: the same prepare, the
    same network, optimiser, loss, per-epoch batch order and seed; no checkpoints. Returns
    {"seconds", "metrics", "epochs"}."""
    import torch

    from cluster.bundle import ModelBundle, build_mlp, output_width
    from cluster.evaluate import evaluate
    from cluster.fit_data import prepare
    from cluster.train_epoch import TaskLoss
    from cluster.train_params import resolve_params

    t0 = time.perf_counter()
    resolved = resolve_params(params)
    data = prepare(train, label=label, categorical=categorical, resolved=resolved, seed=seed,
                   num_workers=1, task="binary")
    torch.manual_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    model = build_mlp(data.pre.width, resolved["hidden"], resolved["layers"],
                      output_width("binary", None))
    opt = torch.optim.AdamW(model.parameters(), lr=resolved["lr"],
                            weight_decay=resolved["weight_decay"])
    loss_fn, batch, n = TaskLoss("binary"), resolved["batch_size"], len(y)
    t1 = time.perf_counter()
    for epoch in range(resolved["epochs"]):
        model.train()
        # The worker's generator for rank 0 (cluster.train_loop.train_loop).
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009)
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
    model.eval()
    train_s = time.perf_counter() - t1
    bundle = ModelBundle(data.pre, model, resolved["hidden"], resolved["layers"], label,
                         task="binary")
    metrics = evaluate(bundle, holdout, label)
    return {"seconds": time.perf_counter() - t0, "metrics": metrics,
            "epochs": resolved["epochs"], "train_s": train_s}


def _ray_fit(train, holdout, label: str, categorical: list[str], params: dict, seed: int,
             storage: Path, name: str, kind: str = "mlp", workers: int = 1,
             use_gpu: bool = False) -> dict[str, Any]:
    from cluster.train import fit

    t0 = time.perf_counter()
    res = fit(train, label=label, categorical=categorical, params=params, seed=seed,
              num_workers=workers, use_gpu=use_gpu, storage_path=str(storage), name=name,
              holdout=holdout, kind=kind)
    return {"seconds": time.perf_counter() - t0, "metrics": res.metrics, "epochs": res.epochs,
            "fit_s": res.seconds}


def _report_only(config: dict) -> None:
    import ray.train

    ray.train.report({"done": 1})


def _noop_trainer(storage: Path) -> float:
    """Seconds of a TorchTrainer whose one worker only reports: Ray Train's fixed cost (its
    controller and worker starting, the torch backend set up, one report taken in), with the
    poll interval `cluster.train_run.run_trainer` sets."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cluster.train_run import POLL_ENV, POLL_S

    trainer = TorchTrainer(_report_only, scaling_config=ScalingConfig(num_workers=1),
                           run_config=RunConfig(name="bench-noop", storage_path=str(storage)))
    # run_trainer's poll interval; not run_trainer itself, which refuses a run without a
    # checkpoint.
    previous = os.environ.get(POLL_ENV)
    os.environ.setdefault(POLL_ENV, POLL_S)
    t0 = time.perf_counter()
    try:
        trainer.fit()
    finally:
        if previous is None:
            os.environ.pop(POLL_ENV, None)
    return time.perf_counter() - t0


def _mlp(args, storage: Path) -> dict[str, Any]:
    train, holdout, label, categorical = _data(args.mlp_rows, args.holdout, SEED)
    base = {"hidden": args.hidden, "layers": args.layers, "batch_size": args.batch_size}
    epochs = args.epochs
    probe = None
    if not epochs:
        # Size the run from a short probe of the plain loop: epochs for --mlp-seconds.
        # From the epochs' time alone, and from the difference of two probes: the first
        # epochs run cold (torch's first passes): one 2-epoch probe made 48 s of a 60 s ask.
        # The epochs then take --mlp-seconds, the whole plain side more.
        short = _plain_mlp(train, holdout, label, categorical, {**base, "epochs": 2}, SEED)
        probe = _plain_mlp(train, holdout, label, categorical, {**base, "epochs": 6}, SEED)
        per_epoch = max(probe["train_s"] - short["train_s"], 1e-3) / 4
        epochs = max(2, math.ceil(args.mlp_seconds / per_epoch))
        _say(f"  probe: {per_epoch:.2f} s/epoch -> {epochs} epochs")
    params = {**base, "epochs": epochs}
    _say(f"MLP, Ray Train: {len(train):,} rows, {epochs} epochs ...")
    ray_side = _ray_fit(train, holdout, label, categorical, params, SEED, storage, "bench-mlp")
    _say(f"  {ray_side['seconds']:.1f} s; plain loop ...")
    plain = _plain_mlp(train, holdout, label, categorical, params, SEED)
    _say(f"  {plain['seconds']:.1f} s; a TorchTrainer that only reports ...")
    noop = _noop_trainer(storage)
    _say(f"  {noop:.1f} s")
    # The trainer's own cadence: a checkpoint (and a report) every epoch.
    every = 1
    checkpoints = epochs
    return {"rows": len(train), "holdout": holdout.num_rows, "params": params,
            "ray": ray_side, "plain": plain, "probe_s": probe and probe["seconds"],
            "checkpoints": checkpoints, "every": every, "noop_s": noop,
            "poll_s": _poll_s()}


def _poll_s() -> str:
    from cluster.train_run import POLL_S

    return POLL_S


# --------------------------------------------------------------------------- XGBoost


def _xgboost_available() -> str | None:
    """Why the XGBoost part cannot run in this checkout, or None."""
    try:
        import xgboost  # noqa: F401

        from cluster.train_params import KINDS
    except ImportError as exc:
        return f"not available ({exc})"
    if "xgboost" not in KINDS:
        return "not available (this checkout's cluster.train_params has no xgboost kind)"
    return None


def _plain_xgboost(train, holdout, label: str, categorical: list[str], params: dict,
                   seed: int) -> dict[str, Any]:
    """`xgboost.train` here on what `fit(kind="xgboost")` trains on: the same prepare, the
    same booster params (one thread, as a one-CPU Ray worker has), the same rounds."""
    import xgboost

    from cluster.bundle import ModelBundle
    from cluster.evaluate import evaluate
    from cluster.fit_data import prepare
    from cluster.train_params import resolve_params
    from cluster.train_xgboost import booster_params

    t0 = time.perf_counter()
    resolved = resolve_params(params, kind="xgboost")
    data = prepare(train, label=label, categorical=categorical, resolved=resolved, seed=seed,
                   num_workers=1, task="binary")
    dtrain = xgboost.DMatrix(data.x_train, label=data.y_train)
    t1 = time.perf_counter()
    booster = xgboost.train({**booster_params(resolved, "binary", 0, seed, False),
                             "nthread": THREADS},
                            dtrain, num_boost_round=resolved["num_boost_round"],
                            evals=[(dtrain, "train")], verbose_eval=False)
    train_s = time.perf_counter() - t1
    bundle = ModelBundle(data.pre, booster, 0, 0, label, task="binary", kind="xgboost")
    metrics = evaluate(bundle, holdout, label)
    return {"seconds": time.perf_counter() - t0, "metrics": metrics,
            "epochs": booster.num_boosted_rounds(), "train_s": train_s}


def _xgboost(args, storage: Path) -> dict[str, Any]:
    why = _xgboost_available()
    if why:
        _say(f"XGBoost: {why}")
        return {"skipped": why}
    train, holdout, label, categorical = _data(args.xgb_rows, args.holdout, SEED)
    base = {"max_depth": args.max_depth}
    rounds = args.rounds
    if not rounds:
        # Two probes, and the difference: the first rounds (the histogram cuts, the deepest
        # splits) cost more than the later ones; one 10-round probe made 21 s of a 60 s ask.
        short, long_ = (_plain_xgboost(train, holdout, label, categorical,
                                       {**base, "num_boost_round": n}, SEED)["train_s"]
                        for n in (20, 120))
        per_round = max(long_ - short, 1e-3) / 100
        rounds = max(10, math.ceil(args.xgb_seconds / per_round))
        _say(f"  probe: {per_round:.3f} s/round -> {rounds} rounds")
    params = {**base, "num_boost_round": rounds}
    out: dict[str, Any] = {"rows": len(train), "holdout": holdout.num_rows, "params": params,
                           "ray": {}}
    for workers in args.xgb_workers:
        _say(f"XGBoost on Ray, {workers} worker(s): {len(train):,} rows, {rounds} rounds ...")
        out["ray"][workers] = _ray_fit(train, holdout, label, categorical, params, SEED,
                                       storage, f"bench-xgb{workers}", kind="xgboost",
                                       workers=workers)
        _say(f"  {out['ray'][workers]['seconds']:.1f} s")
    _say("plain xgboost.train ...")
    out["plain"] = _plain_xgboost(train, holdout, label, categorical, params, SEED)
    _say(f"  {out['plain']['seconds']:.1f} s")
    return out


# --------------------------------------------------------------------------- ASHA sweep


def _trial(config: dict, x=None, y=None, xv=None, yv=None) -> None:
    """One MLP configuration trained in the trial's process (the single-fit trainer's
    network, loss and batch order), reporting the validation loss after every epoch."""
    import torch
    from ray import tune

    from cluster.bundle import build_mlp
    from cluster.train_epoch import TaskLoss

    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    x, y, xv, yv = (torch.from_numpy(a) for a in (x, y, xv, yv))
    model = build_mlp(x.shape[1], config["hidden"], config["layers"], 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    loss_fn, batch = TaskLoss("binary"), config["batch_size"]
    for epoch in range(config["epochs"]):
        model.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            tune.report({"valid_loss": float(loss_fn(model(xv), yv)), "epoch": epoch})


# The sweep's search space, for both paths: (distribution, arguments) as a spec declares it.
SPACE = {"lr": ("loguniform", [1e-4, 3e-2]), "hidden": ("choice", [8, 16, 32, 64]),
         "layers": ("choice", [1, 2, 3])}


def _sweep(args, storage: Path) -> dict[str, Any]:
    """ASHA over the MLP's learning rate, width and depth: through the product's
    `cluster.tune.sweep` when this checkout has it, else a `ray.tune.Tuner` of the bench's own."""
    try:
        from cluster.tune import KINDS as TRIAL_KINDS
        from cluster.tune import sweep
    except ImportError:
        return _own_sweep(args, storage)
    train, _, label, categorical = _data(args.tune_rows, args.holdout, SEED)
    cut = int(train.num_rows * 0.8)
    fit_rows, valid = train.slice(0, cut), train.slice(cut)
    concurrent = args.ray_cpus
    _say(f"ASHA sweep (cluster.tune.sweep): {args.tune_trials} trials x up to "
         f"{args.tune_epochs} epochs, {fit_rows.num_rows:,} rows, {concurrent} at once ...")
    t0 = time.perf_counter()
    outcomes = sweep(TRIAL_KINDS["mlp"], fit_rows, valid, label=label, categorical=categorical,
                     task="binary", seed=SEED, fixed={"batch_size": 512}, space=SPACE,
                     metric="log_loss", mode="min", num_samples=args.tune_trials,
                     max_steps=args.tune_epochs, grace_period=1, reduction_factor=2,
                     max_concurrent=concurrent, storage_path=str(storage), name="bench-asha")
    seconds = time.perf_counter() - t0
    losses = [t.metrics.get("log_loss") for t in outcomes if t.metrics.get("log_loss")]
    out = {"via": "`cluster.tune.sweep` (the product's sweep)", "metric": "log_loss",
           "trials": len(outcomes), "seconds": seconds, "epochs": args.tune_epochs,
           "stopped": sum(t.status == "stopped" for t in outcomes),
           "errors": sum(t.status == "failed" for t in outcomes),
           "epochs_run": sum(t.steps for t in outcomes), "rows": fit_rows.num_rows,
           "concurrent": concurrent, "best": min(losses) if losses else float("nan")}
    _say(f"  {out['trials']} trials in {seconds:.1f} s, {out['stopped']} stopped early")
    return out


def _own_sweep(args, storage: Path) -> dict[str, Any]:
    """A small `ray.tune.Tuner` with ASHA over the MLP's learning rate, width and depth."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from cluster.fit_data import prepare
    from cluster.train_params import resolve_params

    train, _, label, categorical = _data(args.tune_rows, args.holdout, SEED)
    data = prepare(train, label=label, categorical=categorical,
                   resolved=resolve_params({"early_stopping": 1, "valid_fraction": 0.2}),
                   seed=SEED, num_workers=1, task="binary")
    space = {"lr": tune.loguniform(*SPACE["lr"][1]), "hidden": tune.choice(SPACE["hidden"][1]),
             "layers": tune.choice(SPACE["layers"][1]), "batch_size": 512,
             "epochs": args.tune_epochs}
    concurrent = args.ray_cpus
    _say(f"ASHA sweep: {args.tune_trials} trials x up to {args.tune_epochs} epochs, "
         f"{len(data.y_train):,} rows, {concurrent} at once ...")
    trainable = tune.with_resources(
        tune.with_parameters(_trial, x=data.x_train, y=data.y_train, xv=data.x_valid,
                             yv=data.y_valid), {"cpu": 1})
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(
            metric="valid_loss", mode="min", num_samples=args.tune_trials,
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=args.tune_epochs,
                                    grace_period=1, reduction_factor=2),
            search_alg=BasicVariantGenerator(random_state=SEED, max_concurrent=concurrent),
            reuse_actors=True),
        run_config=tune.RunConfig(name="bench-asha", storage_path=str(storage), verbose=0),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - t0
    steps = [int((r.metrics or {}).get("training_iteration") or 0) for r in grid]
    errors = sum(r.error is not None for r in grid)
    best = grid.get_best_result()
    out = {"via": "a `ray.tune.Tuner` of the bench's own (this checkout has no "
                  "`cluster.tune.sweep`)", "metric": "valid_loss",
           "trials": len(steps), "seconds": seconds, "epochs": args.tune_epochs,
           "stopped": sum(0 < s < args.tune_epochs for s in steps), "errors": errors,
           "epochs_run": sum(steps), "rows": len(data.y_train), "concurrent": concurrent,
           "best": float(best.metrics["valid_loss"]) if best and best.metrics else float("nan")}
    _say(f"  {out['trials']} trials in {seconds:.1f} s, {out['stopped']} stopped early")
    return out


# --------------------------------------------------------------------------- GPU


def _gpu(args, storage: Path) -> dict[str, Any]:
    """NVML's utilisation of the busiest GPU while `fit` trains a scaled-up MLP on it."""
    if args.skip_gpu:
        return {"skipped": "skipped (--skip-gpu)"}
    why = gpu_unavailable()
    if why:
        return {"skipped": why}
    train, holdout, label, categorical = _data(args.gpu_rows, args.holdout, SEED)
    # The bundle scores the holdout on the CPU: a few thousand rows of a wide network suffice.
    holdout = holdout.slice(0, 5_000)
    params = {"hidden": args.gpu_hidden, "layers": args.gpu_layers,
              "batch_size": args.gpu_batch, "epochs": args.gpu_epochs}
    _say(f"GPU: fit {params} on {len(train):,} rows ...")
    with NvmlSampler(every_s=0.1) as sampler:
        res = _ray_fit(train, holdout, label, categorical, params, SEED, storage, "bench-gpu",
                       use_gpu=True)
    whole = sampler.busiest()
    # The steady part: from the first to the last sample with the GPU busy (start-up, data
    # shipping and evaluation on the CPU excluded).
    rows = sampler.samples.get(whole.get("index", 0), [])
    busy = [i for i, (_, u, _) in enumerate(rows) if u > 0]
    steady = [u for _, u, _ in rows[busy[0]:busy[-1] + 1]] if busy else []
    return {"fit": res, "params": params, "rows": len(train), "nvml": whole,
            "steady_mean": sum(steady) / len(steady) if steady else float("nan"),
            "steady_s": (rows[busy[-1]][0] - rows[busy[0]][0]) if busy else 0.0}


# --------------------------------------------------------------------------- driver


def _run(tmp: Path, args) -> str:
    import ray
    import torch

    from cluster.runtime import init_local

    torch.set_num_threads(THREADS)
    storage = tmp / "ray_results"
    meta = {"machine": _machine(), "ray": ray.__version__, "torch": torch.__version__}
    try:
        import xgboost

        meta["xgboost"] = xgboost.__version__
    except ImportError:
        meta["xgboost"] = "absent"
    gpus = 0 if args.skip_gpu or gpu_unavailable() else 1
    t0 = time.perf_counter()
    # The appliance's own local start (`cluster.runtime.init_local`), as `appliance train` gets.
    init_local(args.ray_cpus, num_gpus=gpus, logging_level="ERROR", log_to_driver=False)
    meta["ray_init_s"] = time.perf_counter() - t0
    try:
        mlp = _mlp(args, storage)
        xgb = _xgboost(args, storage)
        sweep = _sweep(args, storage)
        gpu = _gpu(args, storage)
    finally:
        ray.shutdown()
    meta["total_s"] = time.perf_counter() - t0
    return section(meta, mlp, xgb, sweep, gpu, args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a tiny smoke run (seconds per part; no meaningful ratios)")
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--holdout", type=float, default=0.2, help="share of rows kept as holdout")
    p.add_argument("--mlp-rows", type=int, default=200_000)
    p.add_argument("--mlp-seconds", type=float, default=60.0,
                   help="the plain loop's target seconds; sets the epochs")
    p.add_argument("--epochs", type=int, default=0, help="MLP epochs (0: sized by a probe)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--xgb-rows", type=int, default=200_000)
    p.add_argument("--xgb-seconds", type=float, default=60.0,
                   help="plain xgboost.train's target seconds; sets the rounds")
    p.add_argument("--rounds", type=int, default=0, help="boosting rounds (0: sized by a probe)")
    p.add_argument("--max-depth", type=int, default=6)
    p.add_argument("--xgb-workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--tune-rows", type=int, default=20_000)
    p.add_argument("--tune-trials", type=int, default=16)
    p.add_argument("--tune-epochs", type=int, default=8)
    p.add_argument("--gpu-rows", type=int, default=500_000)
    p.add_argument("--gpu-hidden", type=int, default=2048)
    p.add_argument("--gpu-layers", type=int, default=4)
    p.add_argument("--gpu-batch", type=int, default=8192)
    p.add_argument("--gpu-epochs", type=int, default=100)
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    return p


QUICK = {"mlp_rows": 5_000, "epochs": 3, "xgb_rows": 5_000, "rounds": 10, "tune_rows": 2_000,
         "tune_trials": 4, "tune_epochs": 3, "gpu_rows": 20_000, "gpu_epochs": 2}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    tmp = Path(tempfile.mkdtemp(prefix="train-bench-"))
    try:
        _isolate(tmp)
        # stdout carries the section only: Ray Tune prints its experiment table there.
        with contextlib.redirect_stdout(sys.stderr):
            text = _run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_section(args.results, text)
    print(text)


if __name__ == "__main__":
    main()
