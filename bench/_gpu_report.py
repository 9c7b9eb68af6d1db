"""The GPU check's section of bench/RESULTS.md, rendered from its raw output alone.

section(raw) -> str           the Markdown between the markers (CPU mode: marked as such)
trace_name(raw) -> str        "nvml_trace_<gpu model>.jsonl"

Rendering only from the raw JSON means the figures brought back from a GPU machine can be
written here later (`bench/gpu_check.py --apply DIR`) exactly as the machine would have.
The issue's targets live here, with the text that states them.
"""

from __future__ import annotations

import math
import re
from typing import Any

START, END = "<!-- gpu:start -->", "<!-- gpu:end -->"
# Binned statistics <= 5 ms per window and >= 50% of the copy bandwidth; exact KS <= 50 ms per
# feature of 10M rows.
TARGET_BINNED_MS, TARGET_BINNED_PCT, TARGET_KS_MS = 5.0, 50.0, 50.0


def trace_name(raw: dict[str, Any]) -> str:
    """The trace's file name, after the first GPU's model ("NVIDIA H200" -> h200)."""
    gpus = raw["machine"].get("gpus") or [{"name": "none"}]
    slug = re.sub(r"[^a-z0-9]+", "_", gpus[0]["name"].lower().replace("nvidia", "")).strip("_")
    return f"nvml_trace_{slug or 'gpu'}.jsonl"


def _f(value: Any, fmt: str, none: str = "n/a") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, fmt)


def _verdict(ok: bool, gpu: bool) -> str:
    return ("PASS" if ok else "FAIL") if gpu else "CPU mode"


def _error(name: str, sec: dict[str, Any]) -> list[str]:
    return [f"{name}: not measured: {sec['error']}."]


def _pytest_lines(sec: dict[str, Any]) -> list[str]:
    if "error" in sec:
        return _error("- `pytest tests/gpu`", sec)
    counts = ", ".join(f"{n} {k}" for k, n in sec["counts"].items()) or "nothing collected"
    return [f"- `pytest tests/gpu` (CuPy backend == NumPy backend, device-resident input "
            f"included): {counts} in {sec['seconds']:.0f} s (exit {sec['rc']})."]


def _drift_lines(sec: dict[str, Any], gpu: bool) -> list[str]:
    head = ["### Drift engine on the device", ""]
    if "error" in sec:
        return [*head, *_error("Drift", sec)]
    cpu, gib = sec["cpu"], sec["bytes"] / 2**30
    binned_ms, ks_ms = sec["binned_s"] * 1e3, sec["ks_ms_per_feature"]
    walk = "compiled merge walk" if sec["native_walk"] else "NumPy merge walk (C walk not built)"
    scaled = (f"measured on the first {cpu['features']} of the {sec['features']} features and "
              f"scaled x{cpu['scale']:.2f} by feature count" if cpu["scale"] != 1
              else "measured on every feature")
    agree = sec["agreement"]
    lines = [
        *head,
        f"`kernels.compare` (backend {sec['backend']}) on a window of {sec['rows']:,} rows x "
        f"{sec['features']} float32 features resident on the device ({gib:.2f} GiB; a quarter "
        "drifted, a quarter with 1% NaN, a quarter integer-valued with heavy ties) against a "
        f"profile of {sec['ref_rows']:,} reference rows per feature (fitted in "
        f"{sec['fit_s']:.1f} s). Medians of {sec['binned_runs']} (binned) and {sec['ks_runs']} "
        "(KS) timed calls after one warm-up, the device synchronised around each.",
        "",
        "| measure | value | target | result |",
        "|---|---:|---|---|",
        f"| device-to-device copy of the window (bytes read + written) | "
        f"{sec['copy_gbps']:,.0f} GB/s | ceiling | |",
        f"| binned statistics (PSI, Jensen-Shannon, Hellinger), ms per window | "
        f"{binned_ms:,.2f} ms | <= {TARGET_BINNED_MS:g} ms | "
        f"{_verdict(binned_ms <= TARGET_BINNED_MS, gpu)} |",
        f"| binned statistics, window bytes / time | {sec['binned_gbps']:,.1f} GB/s = "
        f"{sec['binned_pct_of_copy']:.1f}% of the copy | >= {TARGET_BINNED_PCT:g}% | "
        f"{_verdict(sec['binned_pct_of_copy'] >= TARGET_BINNED_PCT, gpu)} |",
        f"| exact KS (statistic + p-value), whole window | {sec['ks_s'] * 1e3:,.0f} ms | | |",
        f"| exact KS per feature of {sec['rows']:,} rows | {ks_ms:,.1f} ms | "
        f"<= {TARGET_KS_MS:g} ms | {_verdict(ks_ms <= TARGET_KS_MS, gpu)} |",
        f"| full default numerical set, whole window | {sec['full_s']:,.2f} s | | |",
        "",
        f"CPU engine on the same data (backend numpy, {walk}, {cpu['threads']} threads), "
        f"{scaled}:",
        "",
        "| statistics | CPU s (measured) | CPU s (whole window) | device s | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (("binned", "binned"), ("ks", "exact KS"), ("full", "full default set")):
        if cpu.get(f"{key}_s") is None:
            lines.append(f"| {label} | not run (out of time) | | | |")
            continue
        lines.append(f"| {label} | {cpu[f'{key}_s']:.2f} | {cpu[f'{key}_scaled_s']:.2f} | "
                     f"{sec[f'{key}_s']:.3f} | {sec['speedup'][key]:.1f}x |")
    lines += ["", *_fused_lines(sec)]
    lines += [
        "",
        f"Both backends on those {cpu['features']} features: {agree['values']} values compared, "
        f"KS statistics {'identical' if agree['ks_statistic_identical'] else 'NOT identical'}, "
        f"largest relative difference {agree['max_rel_diff_all']:.1e}.",
    ]
    return lines


def _fused_lines(sec: dict[str, Any]) -> list[str]:
    fused = sec.get("fused")
    if fused is None:
        return ["Candidate fused binned kernel (`bench/_binned_counts.cu`): not run (no GPU)."]
    head = ("Candidate fused binned kernel (`bench/_binned_counts.cu`, bench only, not yet the "
            "engine's path: issue 13 item 3): ")
    if "error" in fused or "skipped" in fused:
        return [head + f"not measured: {fused.get('error') or fused.get('skipped')}."]
    ms = fused["kernel_s"] * 1e3
    return [
        head + f"one launch for all features, one read of each column: {ms:.2f} ms per window "
        f"= {fused['gbps']:,.0f} GB/s = {fused['pct_of_copy']:.0f}% of the copy (targets <= "
        f"{TARGET_BINNED_MS:g} ms: {'met' if ms <= TARGET_BINNED_MS else 'NOT met'}, >= "
        f"{TARGET_BINNED_PCT:g}%: "
        f"{'met' if fused['pct_of_copy'] >= TARGET_BINNED_PCT else 'NOT met'}); "
        f"{fused['with_statistics_s'] * 1e3:.2f} ms with the counts copied back and PSI, JS and "
        "Hellinger computed on the host. Counts "
        f"{'identical to' if fused['counts_equal_engine'] else 'DIFFERENT from'} the engine's, "
        f"statistics {'identical' if fused['statistics_equal_engine'] else 'DIFFERENT'}.",
    ]


def _train_lines(sec: dict[str, Any], gpu: bool) -> list[str]:
    head = ["### Training step on the device", ""]
    if "error" in sec:
        return [*head, *_error("Training", sec)]
    lines = [
        *head,
        f"`cluster.train_epoch.run_epoch` (the epoch a Ray Train worker runs), called directly on "
        f"{sec['device']} with the worker's model, optimiser and loss, on {sec['rows']:,} rows "
        "of `appliance.data.synthetic` held on the device; each phase trains for a fixed time. "
        "NVML sampled every GPU while it ran (utilisation: the share of NVML's sample period "
        "with a kernel running; steady = from the first busy sample to the last). Rates are "
        "over the epochs after the first (its one-off start-up is in `s` alone).",
        "",
        "| phase | MLP | batch | epochs | s | rows/s | steps/s | TFLOP/s | GPU util mean "
        "(steady) | power W | energy J | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, p in sec["phases"].items():
        nv = p["nvml"]
        util = (f"{_f(nv.get('util_mean'), '.0f')}% ({_f(nv.get('util_steady_mean'), '.0f')}%)"
                if "error" not in nv else "no NVML")
        lines.append(
            f"| {name} | {p['hidden']} x {p['layers']} ({p['params']:,} weights) | "
            f"{p['batch_size']:,} | {p['epochs']} | {p['train_s']:.1f} | {p['rows_per_s']:,.0f} "
            f"| {p['steps_per_s']:,.0f} | {p['tflops']:.2f} | {util} | "
            f"{_f(nv.get('power_mean_w'), '.0f')} | {_f(nv.get('energy_j'), ',.0f')} | "
            f"{_f(nv.get('memory_peak_mib'), ',.0f')} |")
    return lines


def _infer_lines(sec: dict[str, Any], gpu: bool) -> list[str]:
    head = ["### Batched inference of a model bundle", ""]
    if "error" in sec:
        return [*head, *_error("Inference", sec)]
    lines = [
        *head,
        f"Each trained network as a bundle read back from its bytes, scored on {sec['rows']:,} "
        "rows through `cluster.scoring.TorchScorer` (what a serving replica runs: "
        "preprocessing, the network, the task's decision; on the CPU with one torch thread, as "
        "a CPU replica), and the network alone on the design matrix (CPU with every core).",
        "",
        "| bundle | path | batch | CPU rows/s | device rows/s | speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, res in sec["bundles"].items():
        for key, cpu in res.items():
            if not key.startswith(("scorer_cpu", "network_cpu")):
                continue
            kind, batch = key.split("@")
            dev = res.get(f"{kind.split('_cpu')[0]}_cuda@{batch}")
            what = ("scorer (transform + network + decision), CPU 1 thread"
                    if kind.startswith("scorer") else f"network only, CPU {sec['cores']} threads")
            if "skipped" in cpu:
                lines.append(f"| {name} | {what} | {int(batch):,} | not run ({cpu['skipped']}) "
                             f"| {_f(dev and dev['rows_per_s'], ',.0f')} | |")
                continue
            speed = (f"{dev['rows_per_s'] / cpu['rows_per_s']:.1f}x" if dev else "n/a")
            lines.append(f"| {name} | {what} | {int(batch):,} | {cpu['rows_per_s']:,.0f} | "
                         f"{_f(dev and dev['rows_per_s'], ',.0f')} | {speed} |")
    agree = [v for res in sec["bundles"].values() for k, v in res.items()
             if k.startswith("agree@")]
    if agree:
        worst = max(a["max_abs_score_diff"] for a in agree)
        same = min(a["predictions_equal"] for a in agree)
        lines += ["", f"CPU and device answers: {same:.2%} of predictions equal, scores within "
                      f"{worst:.1e}."]
    return lines


def section(raw: dict[str, Any]) -> str:
    """The GPU check's Markdown section, markers included, from its raw output."""
    m, secs, gpu = raw["machine"], raw["sections"], raw["mode"] == "gpu"
    gpus = m.get("gpus") or []
    dev = (", ".join(f"{g['name']} ({g['memory_mib'] / 1024:.0f} GiB)" for g in gpus)
           or "none")
    lines = [
        START,
        "## GPU check",
        "",
        f"Measured {raw['measured_utc']} by `bench/gpu_check.py` (`make gpu-check`), "
        f"{raw['total_s']:.0f} s in all.",
        "",
    ]
    if not gpu:
        lines += [f"**CPU mode ({m['no_gpu_reason']}).** The same code ran on "
                  "the CPU backends at small sizes; these figures only show that it runs.", ""]
    lines += [
        f"- Device: {dev}; driver {m.get('driver') or 'n/a'}, CUDA {m.get('cuda') or 'n/a'} "
        f"(torch {m.get('torch')}), CuPy {m.get('cupy') or 'n/a'}, NumPy {m.get('numpy')}, "
        f"SciPy {m.get('scipy')}; host {m['cpu']}, {m['cores']} cores, Python {m['python']}.",
        *_pytest_lines(secs.get("pytest", {"error": "not run"})),
    ]
    if raw.get("trace"):
        t = raw["trace"]
        lines.append(f"- NVML trace of the training step: `tests/data/{t['file']}` "
                     f"({t['records']:,} samples, every {t['every_s']} s, per GPU: utilisation, "
                     "memory, power, energy counter).")
    lines += [
        "",
        *_drift_lines(secs.get("drift", {"error": "not run"}), gpu),
        "",
        *_train_lines(secs.get("train", {"error": "not run"}), gpu),
        "",
        *_infer_lines(secs.get("infer", {"error": "not run"}), gpu),
        END,
    ]
    return "\n".join(lines) + "\n"
