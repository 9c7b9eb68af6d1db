"""The GPU check: every GPU path of the appliance, run and timed in one go (`make gpu-check`).

    python3 bench/gpu_check.py --out $OUT        # on a GPU machine: < 8 minutes
    .venv/bin/python bench/gpu_check.py          # here, without a GPU: CPU mode, < 1 minute
    .venv/bin/python bench/gpu_check.py --apply DIR   # record a GPU run's output brought back

Sections, in subprocesses under their own time limits (a hung CUDA call costs that section,
not the run; 3 and 4 share one, which keeps what it finished when it is killed):

1. `pytest tests/gpu`: the CuPy backend against the NumPy one (skipped without a GPU);
2. drift: `kernels.compare` on a 10M x 100 float32 window resident on the GPU, binned and exact
   KS, against a device-to-device copy and the CPU engine (`bench/_gpu_drift.py`);
3. train: `cluster.train_epoch.run_epoch` on CUDA with an NVML trace (`bench/_gpu_model.py`);
4. infer: a bundle through the serving scorer, CUDA against the CPU (`bench/_gpu_model.py`).

It needs neither Ray nor the appliance's database stack, nor an install: it runs from the source
tree with torch, NumPy, SciPy, pyarrow and (on a GPU) CuPy and nvidia-ml-py.

Output: `--out DIR` (default bench/data/gpu_check) gets `gpu_check.json` (every figure, the raw
output), `gpu_check.md` (the section) and, on a GPU, `nvml_trace_<gpu>.jsonl` (the trace). On a
GPU the section also replaces the one in bench/RESULTS.md and the trace goes to tests/data/; on
a machine without one (CPU mode, said on stderr and in the output) neither is touched. Exit 0
when every section ran and tests/gpu passed, else 1 (a missed target is reported, not an error).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _gpu_env import build_native_walk, probe  # noqa: E402
from _gpu_report import END, START, section, trace_name  # noqa: E402
from _sections import write_section  # noqa: E402

SECTIONS = ("drift", "train", "infer")
# The subprocesses and the sections each runs: training and inference share one (torch and the
# trained bundles imported and written once).
PROCS = {"drift": ("drift",), "model": ("train", "infer")}
# Sizes per mode. GPU: the 10M x 100 window; the training phases run for seconds.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "gpu": {
        "drift": {"rows": 10_000_000, "ref_rows": 10_000_000, "features": 100,
                  "cpu_features": 16, "repeats": 5},
        "train": {"rows": 500_000, "default_seconds": 15.0, "wide_seconds": 45.0,
                  "wide": {"hidden": 2048, "layers": 4, "batch_size": 8192},
                  "trace_every": 0.1},
        "infer": {"rows": 262_144, "batches": [1_000, 65_536], "seconds_per_measure": 2.0,
                  "max_call_s": 8.0},
    },
    "cpu": {
        "drift": {"rows": 50_000, "ref_rows": 50_000, "features": 8, "cpu_features": 0,
                  "repeats": 3},
        "train": {"rows": 5_000, "default_seconds": 0.5, "wide_seconds": 0.5,
                  "wide": {"hidden": 128, "layers": 2, "batch_size": 1_024},
                  "trace_every": 0.1},
        "infer": {"rows": 4_000, "batches": [500, 2_000], "seconds_per_measure": 0.2,
                  "max_call_s": 2.0},
    },
    "tiny": {
        "drift": {"rows": 4_000, "ref_rows": 4_000, "features": 4, "cpu_features": 2,
                  "repeats": 2},
        "train": {"rows": 2_000, "default_seconds": 0.2, "wide_seconds": 0.2,
                  "wide": {"hidden": 64, "layers": 2, "batch_size": 512},
                  "trace_every": 0.05},
        "infer": {"rows": 1_000, "batches": [250, 1_000], "seconds_per_measure": 0.05,
                  "max_call_s": 2.0},
    },
}
# What the GPU machine lacks (no Ray, no database or web stack): a section that imports one of
# these would fail there, so it fails here too.
FORBIDDEN = ("ray", "sqlmodel", "sqlalchemy", "alembic", "pydantic", "fastapi", "textual",
             "httpx", "xgboost")
# Seconds each section may take at most (it is killed then), in GPU mode; CPU mode is small.
GUARDS = {"pytest": 150.0, "drift": 170.0, "model": 180.0}


def _say(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pytest(timeout: float) -> dict[str, Any]:
    """`pytest tests/gpu` in a subprocess. --noconftest: the suite's conftest sets up the
    database and Ray fixtures, which the GPU machine cannot import and tests/gpu does not use."""
    cmd = [sys.executable, "-m", "pytest", "tests/gpu", "--noconftest", "-q", "-rs",
           "-p", "no:cacheprovider"]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"error": f"timed out after {timeout:.0f} s", "output": _tail(out)}
    counts: dict[str, int] = {}
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    for part in last.strip("= ").split(","):
        bits = part.strip().split()
        if len(bits) >= 2 and bits[0].isdigit():
            counts[bits[1]] = int(bits[0])
    out = {"rc": res.returncode, "seconds": time.monotonic() - t0, "counts": counts,
           "output": _tail(res.stdout + res.stderr)}
    # 5: nothing collected; anything else but 0 is a failure.
    if res.returncode not in (0, 5) or counts.get("failed") or counts.get("error"):
        out["failed"] = True
    return out


def _section_proc(proc: str, cfgs: dict[str, Any], work: Path,
                  timeout: float) -> dict[str, dict[str, Any]]:
    """Run one subprocess (this file, --section) under `timeout` seconds; each of its parts'
    figures, or why there are none (a part that finished before a kill keeps its figures)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", proc,
           "--cfg", json.dumps(cfgs), "--work", str(work), "--timeout", str(timeout)]
    t0 = time.monotonic()
    why: dict[str, Any] = {}
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if res.returncode != 0:
            lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
            why = {"error": lines[-1] if lines else f"exit {res.returncode}",
                   "stderr": _tail(res.stderr)}
    except subprocess.TimeoutExpired:
        why = {"error": f"timed out after {timeout:.0f} s (killed)"}
    out = {}
    for part in PROCS[proc]:
        result = work / f"{part}.json"
        if result.exists():
            out[part] = json.loads(result.read_text())
            out[part]["wall_s"] = time.monotonic() - t0
        else:
            out[part] = why or {"error": "the section wrote no figures"}
    return out


def _run_section(proc: str, cfgs: dict[str, Any], work: Path, timeout: float) -> None:
    """The body of one subprocess: each part's figures to WORK/PART.json as it finishes."""
    t0 = time.monotonic()
    # Leaves the parent's kill a few seconds to spare: the parts wrap up by then.
    end = t0 + max(timeout * 0.8, timeout - 30.0)
    for part in PROCS[proc]:
        # Training gets 60% of a shared process's time; the last part gets what is left.
        deadline = end if part == PROCS[proc][-1] else t0 + 0.6 * (end - t0)
        if part == "drift":
            from _gpu_drift import run

            out = run(cfgs[part], deadline)
        elif part == "train":
            from _gpu_model import train

            out = train(cfgs[part], deadline, work)
        else:
            from _gpu_model import infer

            out = infer(cfgs[part], deadline, work)
        imported = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
        out["imported"] = sorted(m for m in imported if not m.startswith("_"))
        loaded = sorted(imported & set(FORBIDDEN))
        if loaded:
            raise ImportError(f"section {part} imported {', '.join(loaded)}, which the GPU "
                              "machine does not have")
        (work / f"{part}.json").write_text(json.dumps(out))


def _trace_file(raw: dict[str, Any], work: Path, out_dir: Path, cfg: dict[str, Any]) -> None:
    """The trace with a first line that says what it is, into the output folder."""
    src = work / "trace.jsonl"
    if not src.exists() or not src.stat().st_size:
        return
    name = trace_name(raw)
    gpus = raw["machine"]["gpus"]
    train = raw["sections"].get("train", {})
    meta = {"meta": {
        "source": "bench/gpu_check.py", "measured_utc": raw["measured_utc"],
        "gpus": [g["name"] for g in gpus], "driver": raw["machine"]["driver"],
        "every_s": cfg["trace_every"],
        "fields": {"t": "seconds since the training section started", "phase": "which run",
                   "gpu": "NVML index", "util_gpu": "%", "util_memory": "%",
                   "memory_used_mib": "MiB", "power_w": "W",
                   "energy_mj": "mJ since the driver loaded"},
        "phases": {k: {f: v.get(f) for f in ("hidden", "layers", "batch_size", "epochs",
                                               "train_s")}
                   for k, v in train.get("phases", {}).items()},
    }}
    body = src.read_text()
    (out_dir / name).write_text(json.dumps(meta) + "\n" + body)
    records = body.count("\n")
    raw["trace"] = {"file": name, "records": records, "every_s": cfg["trace_every"]}


def apply(out_dir: Path, results: Path, data_dir: Path) -> str:
    """Record a GPU run's output (its folder): the section into `results`, the trace into
    `data_dir`. Refuses CPU-mode output, which must never replace GPU figures."""
    raw = json.loads((out_dir / "gpu_check.json").read_text())
    if raw["mode"] != "gpu":
        raise ValueError(f"{out_dir / 'gpu_check.json'} is a CPU-mode run "
                         f"({raw['machine'].get('no_gpu_reason')}); nothing recorded")
    write_section(results, section(raw), START, END)
    if raw.get("trace"):
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out_dir / raw["trace"]["file"], data_dir / raw["trace"]["file"])
    return section(raw)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "data" / "gpu_check",
                   help="folder for the raw output (default bench/data/gpu_check)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--data-dir", type=Path, default=ROOT / "tests" / "data",
                   help="where a GPU run's NVML trace is kept (default tests/data)")
    p.add_argument("--cpu", action="store_true", help="CPU mode even where a GPU is usable")
    p.add_argument("--tiny", action="store_true", help="CPU mode at the smallest sizes (tests)")
    p.add_argument("--skip-pytest", action="store_true")
    p.add_argument("--budget", type=float, default=450.0,
                   help="seconds for the whole check (default 450)")
    p.add_argument("--apply", type=Path, metavar="DIR",
                   help="record the output a GPU run left in DIR, and run nothing")
    p.add_argument("--section", choices=PROCS, help=argparse.SUPPRESS)
    p.add_argument("--cfg", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.section:
        _run_section(args.section, json.loads(args.cfg), args.work, args.timeout)
        return 0
    if args.apply:
        try:
            print(apply(args.apply, args.results, args.data_dir))
        except (OSError, ValueError, KeyError) as exc:
            print(f"gpu-check: cannot apply {args.apply}: {exc}", file=sys.stderr)
            return 2
        return 0
    return _check(args)


def _check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    machine = probe(force_cpu=args.cpu or args.tiny)
    mode = machine["mode"]
    gpu = mode == "gpu"
    if gpu:
        g = machine["gpus"][0]["name"] if machine["gpus"] else "?"
        _say(f"GPU mode on {g} (driver {machine['driver']}, CuPy {machine['cupy']})")
        machine["native_walk_build"] = build_native_walk(ROOT)
    else:
        _say(f"CPU mode ({machine['no_gpu_reason']}): small sizes, CPU backends; "
             "bench/RESULTS.md and tests/data are left alone")
    sizes = SIZES["tiny" if args.tiny else mode]
    scale = 1.0 if gpu else 0.5
    raw: dict[str, Any] = {
        "mode": mode, "machine": machine,
        "measured_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sizes": sizes, "sections": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    order = (["pytest"] if not args.skip_pytest else []) + list(PROCS)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        for i, name in enumerate(order):
            parts = PROCS.get(name, (name,))
            left = args.budget - (time.monotonic() - started)
            # Keep 15 s for each section still to come.
            timeout = min(GUARDS[name] * scale, left - 15.0 * (len(order) - i - 1))
            if timeout < 5:
                for part in parts:
                    raw["sections"][part] = {"error": "no time left in the budget"}
                continue
            _say(f"{' + '.join(parts)} (at most {timeout:.0f} s) ...")
            t0 = time.monotonic()
            if name == "pytest":
                results = {"pytest": _pytest(timeout)}
            else:
                cfgs = {p: {**sizes[p], "mode": mode, "cores": machine["cores"]} for p in parts}
                results = _section_proc(name, cfgs, work, timeout)
            for part, res in results.items():
                raw["sections"][part] = res
                state = (f"FAILED: {res['error']}" if "error" in res
                         else "tests FAILED" if res.get("failed") else "done")
                _say(f"  {part} {state} ({time.monotonic() - t0:.0f} s)")
        raw["total_s"] = time.monotonic() - started
        if gpu:
            _trace_file(raw, work, args.out, sizes["train"])
    raw["total_s"] = time.monotonic() - started
    failed = [k for k, v in raw["sections"].items() if "error" in v or v.get("failed")]
    raw["failed"] = failed
    text = section(raw)
    (args.out / "gpu_check.json").write_text(json.dumps(raw, indent=1))
    (args.out / "gpu_check.md").write_text(text)
    if gpu:
        try:
            apply(args.out, args.results, args.data_dir)
        except Exception:  # the raw output is written; say why the record is not
            traceback.print_exc()
            failed.append("apply")
    else:
        _say(f"CPU mode: output in {args.out}/gpu_check.json only")
    print(text)
    for name in failed:
        _say(f"section {name} failed: see {args.out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
