"""bench/gpu_check.py in CPU mode: every section runs on the CPU backends, and nothing is recorded.

The GPU machine runs the same script; CI runs it too (`make gpu-check` in .ci/run). This runs it
once at its smallest sizes and checks what it says and what it leaves alone.
"""

from __future__ import annotations

import importlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"
OLD_GPU_SECTION = ("<!-- gpu:start -->\n## GPU check\n\nfigures of an earlier GPU run\n"
                   "<!-- gpu:end -->\n")


def _bench(module: str):
    sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(module)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-check")
    results = tmp / "RESULTS.md"
    results.write_text("# Bench results\n\n" + OLD_GPU_SECTION)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--skip-pytest", "--out", str(tmp / "out"),
         "--results", str(results), "--data-dir", str(tmp / "data"), "--budget", "120"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    return tmp, proc


def test_cpu_mode_runs_every_section(cpu_run):
    tmp, proc = cpu_run
    assert proc.returncode == 0, proc.stderr
    assert "no GPU found" in proc.stderr
    raw = json.loads((tmp / "out" / "gpu_check.json").read_text())
    assert raw["mode"] == "cpu" and raw["failed"] == []
    drift, train, infer = (raw["sections"][k] for k in ("drift", "train", "infer"))
    # What the GPU machine lacks (Ray, the database and web stack) stays unimported: the
    # section would have failed, and here is what each did import.
    gpu_check = _bench("gpu_check")
    for sec in (drift, train, infer):
        assert "numpy" in sec["imported"]
        assert not set(sec["imported"]) & set(gpu_check.FORBIDDEN), sec["imported"]
    assert "kernels" in drift["imported"]
    assert {"torch", "cluster", "appliance"} <= set(train["imported"])
    assert drift["backend"] == "numpy" and drift["features"] == 4
    # The CPU engine's answer on the subset is the device side's, to the bit for KS.
    assert drift["agreement"]["values"] > 0
    assert drift["agreement"]["ks_statistic_identical"]
    assert drift["agreement"]["max_rel_diff_all"] < 1e-9
    assert drift["cpu"]["features"] == 2 and drift["cpu"]["scale"] == 2.0
    for phase in ("default", "wide"):
        p = train["phases"][phase]
        assert p["epochs"] >= 1 and math.isfinite(p["loss_last"]) and p["rows_per_s"] > 0
    assert set(infer["bundles"]) == {"default", "wide"}
    assert infer["bundles"]["wide"]["scorer_cpu_1thread@250"]["rows_per_s"] > 0
    text = (tmp / "out" / "gpu_check.md").read_text()
    assert "CPU mode (no GPU found" in text and "| binned" in text


def test_cpu_mode_records_nothing(cpu_run):
    tmp, _ = cpu_run
    assert (tmp / "RESULTS.md").read_text() == "# Bench results\n\n" + OLD_GPU_SECTION
    assert not (tmp / "data").exists()
    assert not list((tmp / "out").glob("nvml_trace_*"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--apply", str(tmp / "out"),
                           "--results", str(tmp / "RESULTS.md")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "CPU-mode run" in proc.stderr
    assert (tmp / "RESULTS.md").read_text() == "# Bench results\n\n" + OLD_GPU_SECTION


def test_apply_replaces_the_gpu_section_and_keeps_the_trace(cpu_run, tmp_path):
    # A GPU run's output as `--apply` receives it: the raw JSON and its trace file.
    src, _ = cpu_run
    out = tmp_path / "out"
    shutil.copytree(src / "out", out)
    raw = json.loads((out / "gpu_check.json").read_text())
    raw["mode"] = "gpu"
    raw["machine"]["gpus"] = [{"index": 0, "name": "NVIDIA H200", "memory_mib": 143771.0}]
    raw["trace"] = {"file": "nvml_trace_h200.jsonl", "records": 1, "every_s": 0.1}
    (out / "gpu_check.json").write_text(json.dumps(raw))
    (out / "nvml_trace_h200.jsonl").write_text('{"t": 0.0, "gpu": 0}\n')
    results = tmp_path / "RESULTS.md"
    results.write_text("# Bench results\n\n" + OLD_GPU_SECTION + "\n<!-- x:start -->\nx\n"
                       "<!-- x:end -->\n")
    gpu_check = _bench("gpu_check")
    gpu_check.apply(out, results, tmp_path / "data")
    text = results.read_text()
    assert "figures of an earlier GPU run" not in text
    assert text.count("<!-- gpu:start -->") == 1 and "<!-- x:start -->\nx\n" in text
    assert "NVIDIA H200 (140 GiB)" in text and "tests/data/nvml_trace_h200.jsonl" in text
    assert (tmp_path / "data" / "nvml_trace_h200.jsonl").read_text() == '{"t": 0.0, "gpu": 0}\n'


def test_trace_summary_leaves_out_start_up_and_tear_down():
    env = _bench("_gpu_env")
    trace = env.NvmlTrace()
    trace.records = [
        {"t": float(i), "gpu": 0, "util_gpu": u, "memory_used_mib": 100.0 + i,
         "power_w": 100.0, "energy_mj": 1000 * i}
        for i, u in enumerate([0, 0, 90, 50, 100, 0])
    ]
    s = trace.summary()
    assert s["util_steady_mean"] == pytest.approx(80.0)
    assert s["util_mean"] == pytest.approx(40.0) and s["util_max"] == 100
    assert s["energy_j"] == pytest.approx(5.0) and s["memory_peak_mib"] == 105.0


def test_candidate_kernel_counts_become_the_engines_bins():
    # bench/_binned_counts.cu counts, per edge, the non-missing values >= it; bins_from_ge turns
    # that into the engine's bin counts. Held here to the engine on the kernel's contract,
    # computed in NumPy (the kernel itself runs only on a GPU, where the check compares it).
    import numpy as np

    from kernels import _numerical

    drift = _bench("_gpu_drift")
    rng = np.random.default_rng(5)
    for values, edges in [
        (rng.normal(size=5_000).astype(np.float32), np.quantile(rng.normal(size=99), [.2, .5])),
        (np.floor(rng.normal(size=5_000) * 2).astype(np.float32), np.array([-1.0, 0.0, 1.0])),
        (np.array([np.nan, -np.inf, 0.0, 1.0, np.inf, 1.0], dtype=np.float32), np.array([1.0])),
        (rng.normal(size=100).astype(np.float32), np.array([], dtype=np.float64)),
    ]:
        finite = values[~np.isnan(values)].astype(np.float64)
        row = [finite.size] + [int((finite >= e).sum()) for e in edges]
        window, _ = _numerical.sort_window(values, name="x", xp=np)
        want = _numerical.bin_counts(window, edges, xp=np)
        assert drift.bins_from_ge(row, len(edges)).tolist() == want.tolist()
