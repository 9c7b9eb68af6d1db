"""The training bench's section of bench/RESULTS.md: its tables, its targets, and where it goes.

section(meta, mlp, xgb, sweep, gpu, args) -> str     the Markdown between the markers
write_section(path, section)                         in place of the last one, or appended

The issue's targets live here, with the text that states them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from _serve_report import write_section as _write_between

START, END = "<!-- train:start -->", "<!-- train:end -->"
# Ray wall time <= 1.3x the plain loop's (MLP on CPU, XGBoost); GPU utilisation >= 85%.
TARGET_RATIO, TARGET_GPU = 1.3, 85.0


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _verdict(ok: bool, quick: bool) -> str:
    return "smoke run" if quick else ("PASS" if ok else "FAIL")


def _auc(side: dict) -> str:
    auc = side["metrics"].get("auc")
    return "n/a" if auc is None or (isinstance(auc, float) and math.isnan(auc)) else f"{auc:.4f}"


def _mlp_lines(mlp: dict, quick: bool) -> list[str]:
    ray, plain, p = mlp["ray"], mlp["plain"], mlp["params"]
    ratio = _ratio(ray["seconds"], plain["seconds"])
    return [
        "### MLP: Ray Train vs a plain PyTorch loop (CPU)",
        "",
        f"{mlp['rows']:,} training rows, holdout {mlp['holdout']:,}; MLP {p['hidden']} x "
        f"{p['layers']}, batch {p['batch_size']}, {p['epochs']} epochs, the same seed; one "
        "torch thread on each side (a one-CPU Ray Train worker gets OMP_NUM_THREADS=1).",
        "",
        "| side | wall s | epochs | holdout AUC | holdout accuracy |",
        "|---|---:|---:|---:|---:|",
        f"| `cluster.train.fit` (TorchTrainer, 1 worker) | {ray['seconds']:.1f} | "
        f"{ray['epochs']} | {_auc(ray)} | {ray['metrics'].get('accuracy', float('nan')):.4f} |",
        f"| plain loop in the bench's process | {plain['seconds']:.1f} | {plain['epochs']} | "
        f"{_auc(plain)} | {plain['metrics'].get('accuracy', float('nan')):.4f} |",
        "",
        "| target | measured | ratio | result |",
        "|---|---|---:|---|",
        f"| Ray Train <= {TARGET_RATIO}x the plain loop | {ray['seconds']:.1f} vs "
        f"{plain['seconds']:.1f} s | {ratio:.2f}x | {_verdict(ratio <= TARGET_RATIO, quick)} |",
        "",
        "Both sides: `cluster.fit_data.prepare` (Preprocessor fit, design matrix), the epochs, "
        "scoring the holdout. The Ray side also holds: the TorchTrainer's controller and worker "
        "actors starting (the worker importing torch), the design matrix put into the object "
        f"store and read by the worker, {mlp['checkpoints']} checkpoint(s) (the state dict and "
        f"the optimiser's, every {mlp['every']} epoch(s), one report each), the controller's "
        f"polls of its worker (`RAY_TRAIN_HEALTH_CHECK_INTERVAL_S` = {mlp['poll_s']} s, set by "
        "`cluster.train_run.run_trainer`), and loading the last checkpoint back into the bundle. "
        "Ray's own start (`ray.init`) is not in it.",
        "",
        f"The plain loop's epochs alone took {plain['train_s']:.2f} s of its "
        f"{plain['seconds']:.2f} s; Ray's cost over the same work in this run: "
        f"{ray['seconds'] - plain['seconds']:+.1f} s. A TorchTrainer whose one worker only "
        f"reports (no data, no epochs, no checkpoint) took {mlp['noop_s']:.1f} s: Ray Train's "
        "fixed cost per fit here (its controller and worker processes starting and importing "
        "Ray Train and torch, the torch backend's process group, the report taken in).",
    ]


def _xgb_lines(xgb: dict, quick: bool) -> list[str]:
    head = ["### XGBoost: Ray Train's XGBoostTrainer vs `xgboost.train`", ""]
    if "skipped" in xgb:
        return [*head, f"XGBoost: {xgb['skipped']}."]
    plain, p = xgb["plain"], xgb["params"]
    lines = [
        *head,
        f"{xgb['rows']:,} training rows, holdout {xgb['holdout']:,}; binary:logistic, hist, "
        f"max_depth {p['max_depth']}, {p['num_boost_round']} rounds, the same seed. Plain: "
        "`xgboost.train` here on a DMatrix of the same design matrix, `nthread = 1` (a "
        "one-CPU Ray worker's OMP_NUM_THREADS); Ray: `cluster.train.fit(kind=\"xgboost\")`, "
        "the rows shipped as a Ray Data dataset, each worker one CPU.",
        "",
        "| side | wall s | rounds | holdout AUC | holdout accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for workers, side in xgb["ray"].items():
        lines.append(f"| XGBoostTrainer, {workers} worker(s) | {side['seconds']:.1f} | "
                     f"{side['epochs']} | {_auc(side)} | "
                     f"{side['metrics'].get('accuracy', float('nan')):.4f} |")
    lines += [
        f"| plain `xgboost.train` | {plain['seconds']:.1f} | {plain['epochs']} | "
        f"{_auc(plain)} | {plain['metrics'].get('accuracy', float('nan')):.4f} |",
        "",
        "| target | measured | ratio | result |",
        "|---|---|---:|---|",
    ]
    for workers, side in xgb["ray"].items():
        ratio = _ratio(side["seconds"], plain["seconds"])
        target = (f"XGBoost on Ray <= {TARGET_RATIO}x plain, 1 worker" if workers == 1 else
                  f"(also) {workers} workers (as many CPUs) against the same 1-thread plain")
        lines.append(f"| {target} | {side['seconds']:.1f} vs {plain['seconds']:.1f} s | "
                     f"{ratio:.2f}x | {_verdict(ratio <= TARGET_RATIO, quick)} |")
    lines += [
        "",
        "The Ray side also holds: the trainer's controller and workers starting (each importing "
        "xgboost), the dataset's blocks written to the object store and read by each worker "
        "into its DMatrix, the workers' rabit collective, about three checkpoints of the "
        "booster plus the last, and loading the booster back.",
        "",
        f"`xgboost.train` alone took {plain['train_s']:.2f} s of the plain side's "
        f"{plain['seconds']:.2f} s; Ray's cost over the same work in this run: "
        + ", ".join(f"{side['seconds'] - plain['seconds']:+.1f} s with {w} worker(s)"
                    for w, side in xgb["ray"].items()) + ".",
    ]
    return lines


def _sweep_lines(sweep: dict) -> list[str]:
    per_min = _ratio(sweep["trials"] * 60.0, sweep["seconds"])
    return [
        "### ASHA sweep throughput",
        "",
        f"Through {sweep['via']}: `ASHAScheduler(grace_period=1, reduction_factor=2, "
        f"max_t={sweep['epochs']})` over the MLP's lr, width and depth, {sweep['trials']} "
        f"trials of up to {sweep['epochs']} epochs on {sweep['rows']:,} rows (the validation "
        f"slice's `{sweep['metric']}` after each epoch), one CPU each, {sweep['concurrent']} "
        "at once, actors reused; the wall time is `Tuner.fit`'s (trial start-up included).",
        "",
        "| trials | wall s | trials/min | stopped early by ASHA | epochs run | errors "
        f"| best {sweep['metric']} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {sweep['trials']} | {sweep['seconds']:.1f} | {per_min:.1f} | {sweep['stopped']} "
        f"| {sweep['epochs_run']} of {sweep['trials'] * sweep['epochs']} | {sweep['errors']} "
        f"| {sweep['best']:.4f} |",
    ]


def _gpu_lines(gpu: dict, quick: bool) -> list[str]:
    if "skipped" in gpu:
        return [f"- GPU: not measured ({gpu['skipped']})."]
    nvml, p, fit = gpu["nvml"], gpu["params"], gpu["fit"]
    steady = gpu["steady_mean"]
    return [
        f"- GPU: {nvml.get('name', '?')}: `cluster.train.fit` (1 worker, `use_gpu`) of an MLP "
        f"{p['hidden']} x {p['layers']}, batch {p['batch_size']}, {p['epochs']} epochs on "
        f"{gpu['rows']:,} rows took {fit['seconds']:.1f} s (holdout AUC {_auc(fit)}). NVML "
        f"utilisation over the whole fit mean {nvml.get('mean', float('nan')):.0f}% "
        f"(max {nvml.get('max', 0)}%, {nvml.get('samples', 0)} samples, peak memory "
        f"{nvml.get('memory_mib', 0):,.0f} MiB); from the first busy sample to the last "
        f"({gpu['steady_s']:.1f} s of training) mean {steady:.0f}%: target >= "
        f"{TARGET_GPU:.0f}%: {_verdict(steady >= TARGET_GPU, quick)}.",
    ]


def section(meta: dict, mlp: dict, xgb: dict, sweep: dict, gpu: dict, args) -> str:
    m = meta["machine"]
    command = "python bench/train.py" + (" --quick" if args.quick else "")
    lines = [
        START,
        "## Training",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/train.py` "
        f"(`{command}`), {meta['total_s']:.0f} s in all.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, Python {m['python']}, "
        f"Ray {meta['ray']}, torch {meta['torch']}, xgboost {meta['xgboost']}; 1-min load "
        f"average at start: {m['load']}.",
        f"- One local Ray (`num_cpus = {args.ray_cpus}`, started in "
        f"{meta['ray_init_s']:.1f} s, not counted in any row), rows of "
        "`appliance.data.synthetic` (binary label), the last "
        f"{args.holdout:.0%} of them the holdout. Each pair runs one after the other in this "
        "one run, on the same rows, model, params and seed; the epochs and rounds are sized "
        "from a probe of the plain side (`--mlp-seconds`, `--xgb-seconds`).",
    ]
    if args.quick:
        lines.append("- A `--quick` smoke run: seconds-long fits, where Ray's fixed start-up "
                     "dominates; its ratios say nothing about the targets.")
    lines += [
        "",
        *_mlp_lines(mlp, args.quick),
        "",
        *_xgb_lines(xgb, args.quick),
        "",
        *_sweep_lines(sweep),
        "",
        *_gpu_lines(gpu, args.quick),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put `section` in place of the one between the markers, or at the end of `path`."""
    _write_between(path, section, START, END)
