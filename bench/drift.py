"""Drift bench: this engine vs a scipy per-feature loop vs Evidently's DataDriftPreset.

    .venv/bin/python bench/drift.py                 # 1M rows x 20 features, writes bench/RESULTS.md
    .venv/bin/python bench/drift.py --rows 100000 --skip-evidently --results /tmp/r.md

One run generates the data once (reference and current window, Parquet files in a temp
folder), fits the reference profile beforehand, and measures on those same files:

* the engine (`kernels.compare`, full default statistic set) in a fresh subprocess that imports
  only what the engine needs and loads the window column by column (see `_load_window`), with
  its peak RSS sampled during the comparison and its ru_maxrss over its whole life;
* scipy: `ks_2samp` + `wasserstein_distance` per numerical feature, `chi2_contingency` per
  categorical one;
* Evidently's DataDriftPreset in its own venv (bench/.venv-evidently, made by
  bench/setup_evidently.sh when missing), as a subprocess reading the same Parquet files;
* on a CUDA GPU with CuPy: 10M x 100 float32 resident on the device, binned statistics and exact
  KS, next to the device-to-device copy bandwidth measured in the same run.

It writes its section of bench/RESULTS.md between `<!-- drift:start -->` and `<!-- drift:end -->`.
Only the standard library is imported at the top: the Evidently worker runs this same file with
the Evidently venv's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
START, END = "<!-- drift:start -->", "<!-- drift:end -->"


# --------------------------------------------------------------------------- data


def _generate(rows: int, n_num: int, n_cat: int, seed: int, drift: bool):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {}
    for i in range(n_num):
        kind = i % 4
        # Drift in a quarter of the numerical features, of varied strength.
        shift = (0.05 * (1 + i // 4)) if drift and i % 4 == 1 else 0.0
        if kind == 0:
            x = rng.normal(shift, 1.0, rows)
        elif kind == 1:
            x = rng.lognormal(shift, 0.5, rows)
        elif kind == 2:
            x = rng.uniform(0, 1, rows)
        else:  # heavy ties: integer-valued
            x = rng.poisson(3.0, rows).astype(np.float64)
        x[rng.random(rows) < 0.01] = np.nan
        cols[f"num_{i:02d}"] = x
    for i in range(n_cat):
        k = 8 + 4 * i
        p = np.linspace(1.0, 2.0, k)
        if drift and i == 0:
            p = p[::-1]
        cats = np.array([f"c{j}" for j in range(k)] + (["new"] if drift and i == 1 else []))
        if len(cats) > k:
            p = np.append(p, p.sum() * 0.02)
        cols[f"cat_{i}"] = pa.array(cats[rng.choice(len(cats), rows, p=p / p.sum())])
    return pa.table(cols)


# --------------------------------------------------------------------------- machine


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cores": cores, "memory": mem, "python": platform.python_version(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


# --------------------------------------------------------------------------- workers


class _RssSampler:
    """Peak resident set size of this process, sampled from /proc while a block runs."""

    def __init__(self, every: float = 0.002):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _load_window(path: str, numerical: list[str], categorical: list[str]) -> tuple[dict, int]:
    """The window's columns as the engine receives them, and their in-memory bytes.

    Column by column, so only one column's Parquet buffers are alive at a time and no Table
    outlives the read: numerical columns as NumPy float64 (zero-copy views of the Arrow buffers,
    which the arrays keep alive), categorical ones as Arrow DictionaryArrays (int32 codes + the
    small category list) read dictionary-encoded straight from Parquet, never as strings.
    """
    import numpy as np
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, read_dictionary=categorical, pre_buffer=False)
    cols, nbytes = {}, 0
    for name in numerical + categorical:
        col = pf.read(columns=[name], use_threads=False).column(0)
        if name in numerical:
            col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
            if col.null_count == 0 and col.type.bit_width == 64:
                # A view of Arrow's value buffer. Array.to_numpy would do the same but imports
                # pandas (~38 MiB resident) for its conversion machinery.
                col = np.frombuffer(col.buffers()[1], dtype=col.type.to_pandas_dtype(),
                                    count=len(col), offset=col.offset * 8)
            else:
                col = col.to_numpy(zero_copy_only=False)
        cols[name] = col
        nbytes += col.nbytes
    return cols, nbytes


def _engine_worker(profile_path: str, current_path: str, repeats: int) -> dict:
    import resource

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet  # noqa: F401

    sys.path.insert(0, str(ROOT))
    # Only what the engine needs: its p-values use scipy.special (scipy.stats only for windows
    # of at most ~200,000 rows, checked below); imported before the baseline so that the
    # library figure holds every library the comparison touches.
    import scipy.special  # noqa: F401

    import kernels

    libraries = _RssSampler()._rss()
    prof = kernels.ReferenceProfile.from_file(profile_path)
    cols, window_bytes = _load_window(current_path, prof.numerical, prof.categorical)
    pa.default_memory_pool().release_unused()
    baseline = _RssSampler()._rss()
    times = []
    with _RssSampler() as rss:
        for _ in range(repeats):
            t0 = time.perf_counter()
            report = kernels.compare(prof, cols)
            times.append(time.perf_counter() - t0)
    return {
        "times": times,
        "rss_libraries": libraries,
        "rss_before": baseline,
        "rss_peak_compare": rss.peak,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "window_bytes": window_bytes,
        "profile_bytes": prof.nbytes,
        "scipy_stats_loaded": "scipy.stats" in sys.modules,
        "modules": sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas", "pyarrow"}),
        "drifted": report.drifted_features,
        "backend": report.backend,
        "numpy": np.__version__,
    }


def _evidently_worker(reference_path: str, current_path: str) -> dict:
    import evidently
    import pandas as pd

    ref = pd.read_parquet(reference_path)
    cur = pd.read_parquet(current_path)
    num = [c for c in ref.columns if c.startswith("num_")]
    cat = [c for c in ref.columns if c.startswith("cat_")]
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
        ref_ds = Dataset.from_pandas(ref, data_definition=definition)
        cur_ds = Dataset.from_pandas(cur, data_definition=definition)
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(cur_ds, ref_ds)
        doc = snapshot.dict()
        seconds = time.perf_counter() - t0
    except ImportError:  # Evidently < 0.7: the legacy API
        from evidently.metric_preset import DataDriftPreset
        from evidently.pipeline.column_mapping import ColumnMapping
        from evidently.report import Report

        mapping = ColumnMapping(numerical_features=num, categorical_features=cat)
        t0 = time.perf_counter()
        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
        doc = report.as_dict()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "version": evidently.__version__, "pandas": pd.__version__,
            "result_keys": len(json.dumps(doc, default=str))}


def _scipy_loop(ref, cur) -> float:
    import numpy as np
    from scipy import stats

    t0 = time.perf_counter()
    for name in ref.column_names:
        r, c = ref.column(name), cur.column(name)
        if name.startswith("num_"):
            r, c = r.to_numpy(), c.to_numpy()
            r, c = r[~np.isnan(r)], c[~np.isnan(c)]
            stats.ks_2samp(r, c)
            stats.wasserstein_distance(r, c)
        else:
            rv, rc = np.unique(r.to_numpy(zero_copy_only=False), return_counts=True)
            cv, cc = np.unique(c.to_numpy(zero_copy_only=False), return_counts=True)
            keys = np.union1d(rv, cv)
            table = np.zeros((2, keys.size))
            table[0, np.searchsorted(keys, rv)] = rc
            table[1, np.searchsorted(keys, cv)] = cc
            stats.chi2_contingency(table)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- GPU


def _gpu_bench(rows: int, features: int) -> dict | None:
    sys.path.insert(0, str(ROOT))
    import kernels

    if not kernels.gpu_available():
        return None
    import cupy as cp
    import numpy as np

    from kernels import _divergence, _numerical

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    def timed(fn, repeats=5):
        fn()
        cp.cuda.runtime.deviceSynchronize()
        best = float("inf")
        for _ in range(repeats):
            start, stop = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            best = min(best, cp.cuda.get_elapsed_time(start, stop) / 1e3)
        return best

    rng = cp.random.default_rng(0)
    # Feature-major so that every feature is one contiguous column on the device.
    cur = rng.standard_normal((features, rows), dtype=cp.float32)
    nbytes = cur.nbytes
    scratch = cp.empty_like(cur)
    copy_s = timed(lambda: cp.copyto(scratch, cur))
    d2d = 2 * nbytes / copy_s  # read + write
    scratch = None  # free the copy target before the statistics run
    ref_sample = rng.standard_normal(rows, dtype=cp.float32)
    ref_sorted = cp.sort(ref_sample).astype(cp.float64)
    edges = cp.asarray(np.unique(cp.asnumpy(ref_sorted[(cp.arange(1, 10) * rows) // 10])))
    n_bins = edges.size + 1
    ref_counts = _numerical.bin_counts(ref_sorted, edges, xp=cp)
    offsets = (cp.arange(features, dtype=cp.int64) * n_bins)[:, None]

    def binned():
        # One pass over the resident window: bin index per value, then one bincount for all
        # features (bins offset per feature); the distances run on the host on 100 x 10 counts.
        idx = cp.searchsorted(edges, cur.ravel(), side="right").reshape(features, rows) + offsets
        return cp.bincount(idx.ravel(), minlength=features * n_bins)

    binned_s = timed(binned)
    counts = cp.asnumpy(binned()).reshape(features, n_bins)
    for f in range(features):
        _divergence.psi(ref_counts, counts[f])
        _divergence.jensen_shannon(ref_counts, counts[f])
        _divergence.hellinger(ref_counts, counts[f])

    def exact_ks():
        for f in range(features):
            s = cp.sort(cur[f]).astype(cp.float64)
            _numerical.ks_and_wasserstein(ref_sorted, s, ref_inf=(0, 0), cur_inf=(0, 0),
                                          want_ks=True, want_w1=False, xp=cp)

    ks_s = timed(exact_ks, repeats=1)
    return {
        "gpu": name, "rows": rows, "features": features, "bytes": nbytes,
        "d2d_gbps": d2d / 1e9, "binned_s": binned_s, "binned_gbps": nbytes / binned_s / 1e9,
        "ks_s": ks_s, "cupy": cp.__version__,
    }


# --------------------------------------------------------------------------- driver


def _ensure_evidently() -> Path | None:
    py = EVIDENTLY_VENV / "bin" / "python"
    if not py.exists():
        print("creating bench/.venv-evidently (once) ...", file=sys.stderr)
        res = subprocess.run(["bash", str(HERE / "setup_evidently.sh")],
                             env={**os.environ, "PYTHON": sys.executable})
        if res.returncode != 0:
            return None
    return py


def _run_json(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[1:3]} failed: {res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _section(m: dict, args, fit_s: float, eng: dict, scipy_s: float | None,
             evid: dict | None, gpu: dict | None, gpu_note: str) -> str:
    best = min(eng["times"])
    median = sorted(eng["times"])[len(eng["times"]) // 2]
    mib = 2**20
    lines = [
        START,
        "## Drift engine (`kernels`) vs scipy and Evidently",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/drift.py` "
        f"(`python bench/drift.py --rows {args.rows}`).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM, Python {m['python']}, "
        f"NumPy {eng['numpy']}; 1-min load average at start: {m['load']} "
        "(a shared machine: timings of all three tools are taken in the same run).",
        f"- Data: {args.rows:,} rows x {args.numerical + args.categorical} features "
        f"({args.numerical} numerical incl. 1% NaN and integer-valued ties, {args.categorical} "
        "categorical strings) for both reference and current window, drift in a few features; "
        "one pair of Parquet files read by every tool.",
        "- Engine: profile fitted beforehand "
        f"({fit_s:.1f} s, {eng['profile_bytes'] / mib:.0f} MiB); `kernels.compare` with the full "
        "default statistic set (KS + p-value, Wasserstein raw/normed, PSI, Jensen-Shannon, "
        "Hellinger, mean/std shift, missing share; chi-square, PSI, JS, Hellinger, TVD, unseen "
        f"share; PCA reconstruction error), backend {eng['backend']}, "
        f"{len(eng['times'])} runs.",
        "",
        "| tool | seconds | engine speed-up | target |",
        "|---|---:|---:|---|",
        f"| kernels.compare (best / median) | {best:.3f} / {median:.3f} | 1x | |",
    ]
    if scipy_s is not None:
        ok = "met" if scipy_s / median >= 10 else "NOT met"
        lines.append(f"| scipy loop (ks_2samp + wasserstein_distance; chi2_contingency) | "
                     f"{scipy_s:.2f} | {scipy_s / median:.0f}x | >= 10x: {ok} |")
    else:
        lines.append("| scipy loop | not run | | |")
    if evid is not None and "seconds" in evid:
        ok = "met" if evid["seconds"] / median >= 100 else "NOT met"
        lines.append(f"| Evidently {evid['version']} DataDriftPreset (pandas {evid['pandas']}) | "
                     f"{evid['seconds']:.2f} | {evid['seconds'] / median:.0f}x | >= 100x: {ok} |")
    else:
        why = (evid or {}).get("error", "skipped")
        lines.append(f"| Evidently DataDriftPreset | not run ({why}) | | |")
    data = eng["window_bytes"] + eng["profile_bytes"]
    budget = 2 * data
    work = eng["rss_peak_compare"] - eng["rss_before"]
    peak = max(eng["rss_peak_compare"], eng["ru_maxrss"])
    extra = [m for m, on in (("scipy.stats", eng.get("scipy_stats_loaded")),
                             ("pandas", "pandas" in eng.get("modules", ()))) if on]
    loaded_note = (f"{' and '.join(extra)} loaded nonetheless" if extra
                   else "scipy.stats and pandas are never loaded")
    lines += [
        "",
        "Speed-ups are against the engine's median time.",
        "",
        "- Memory, measured in the engine's own subprocess, which imports only NumPy, "
        "pyarrow.parquet, scipy.special and `kernels` "
        f"({loaded_note}). *Current window* = the in-memory bytes of the columns as "
        f"`kernels.compare` receives them: {args.numerical} float64 NumPy arrays (zero-copy "
        f"views of the Parquet reader's buffers) and {args.categorical} Arrow dictionary arrays "
        "(int32 codes + category list, read dictionary-encoded from Parquet) = "
        f"{eng['window_bytes'] / mib:.0f} MiB; *profile* = `ReferenceProfile.nbytes` "
        f"(full sorted reference values for exact KS) = {eng['profile_bytes'] / mib:.0f} MiB; "
        f"together {data / mib:.0f} MiB, target peak <= 2x = {budget / mib:.0f} MiB.",
        f"- Process RSS: {eng['rss_libraries'] / mib:.0f} MiB with the libraries imported, "
        f"{eng['rss_before'] / mib:.0f} MiB with profile and window loaded, peak "
        f"{eng['rss_peak_compare'] / mib:.0f} MiB while comparing (sampled every 2 ms); "
        f"ru_maxrss of the whole subprocess (loading included) {eng['ru_maxrss'] / mib:.0f} MiB "
        f"= {peak / data:.2f}x the data: target "
        f"{'met' if peak <= budget else 'NOT met'}. The comparison's own working memory is "
        f"{work / mib:.0f} MiB ({work / data:.2f}x the data).",
        f"- Drifted features found by the engine: {', '.join(eng['drifted']) or 'none'}.",
        "",
    ]
    if gpu:
        pct = 100 * gpu["binned_gbps"] / gpu["d2d_gbps"]
        lines += [
            f"- GPU: {gpu['gpu']} (CuPy {gpu['cupy']}), {gpu['rows']:,} x {gpu['features']} "
            f"float32 resident ({gpu['bytes'] / 2**30:.1f} GiB). Binned statistics "
            f"{gpu['binned_s'] * 1e3:.2f} ms per window = {gpu['binned_gbps']:.0f} GB/s, "
            f"{pct:.0f}% of the device-to-device copy bandwidth measured in the same run "
            f"({gpu['d2d_gbps']:.0f} GB/s; targets <= 5 ms and >= 50%). Exact KS for all "
            f"features {gpu['ks_s'] * 1e3:.0f} ms (target <= 50 ms).",
        ]
    else:
        lines.append(f"- GPU: {gpu_note}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def _write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Bench results\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--numerical", type=int, default=16)
    p.add_argument("--categorical", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-scipy", action="store_true")
    p.add_argument("--skip-evidently", action="store_true")
    p.add_argument("--gpu-rows", type=int, default=10_000_000)
    p.add_argument("--gpu-features", type=int, default=100)
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--worker", choices=["engine", "evidently"], help=argparse.SUPPRESS)
    p.add_argument("--profile", help=argparse.SUPPRESS)
    p.add_argument("--reference", help=argparse.SUPPRESS)
    p.add_argument("--current", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "engine":
        if args.profile is None:  # started early and idle (see _start_engine): paths on stdin
            paths = json.loads(sys.stdin.readline())
            args.profile, args.current = paths["profile"], paths["current"]
        print(json.dumps(_engine_worker(args.profile, args.current, args.repeats)))
        return
    if args.worker == "evidently":
        print(json.dumps(_evidently_worker(args.reference, args.current)))
        return

    machine = _machine()
    engine = _start_engine(args.repeats)
    try:
        _drive(args, machine, engine)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


def _start_engine(repeats: int) -> subprocess.Popen:
    """Start the engine worker now, while this driver holds only the standard library.

    Linux keeps a process's peak RSS across execve, and a child forked from the driver after the
    data exists would inherit the driver's peak (the reference and current tables) as its own
    ru_maxrss. Started here, the worker's ru_maxrss is its own; it waits for the file paths.
    """
    # The system allocator for Arrow: its default pools keep freed read buffers resident,
    # which would be charged to the engine's memory.
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "engine", "--repeats", str(repeats)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"},
    )


def _drive(args, machine: dict, engine: subprocess.Popen) -> None:
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    import kernels

    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        ref_path, cur_path, prof_path = (Path(tmp) / n for n in
                                         ("ref.parquet", "cur.parquet", "profile.npz"))
        print(f"generating {args.rows:,} rows ...", file=sys.stderr)
        ref = _generate(args.rows, args.numerical, args.categorical, seed=1, drift=False)
        cur = _generate(args.rows, args.numerical, args.categorical, seed=2, drift=True)
        pq.write_table(ref, ref_path)
        pq.write_table(cur, cur_path)

        cats = [c for c in ref.column_names if c.startswith("cat_")]
        t0 = time.perf_counter()
        prof = kernels.fit_profile(ref, categorical=cats)
        fit_s = time.perf_counter() - t0
        prof_path.write_bytes(prof.to_bytes())
        del prof

        print("engine ...", file=sys.stderr)
        out, err = engine.communicate(
            json.dumps({"profile": str(prof_path), "current": str(cur_path)}) + "\n",
            timeout=600,
        )
        if engine.returncode != 0:
            raise RuntimeError(f"engine worker failed: {err.strip()[-2000:]}")
        eng = json.loads(out.strip().splitlines()[-1])
        print(f"  engine times {eng['times']}", file=sys.stderr)

        scipy_s = None
        if not args.skip_scipy:
            print("scipy loop ...", file=sys.stderr)
            scipy_s = _scipy_loop(ref, cur)
            print(f"  scipy {scipy_s:.2f} s", file=sys.stderr)
        del ref, cur

        evid = None
        if not args.skip_evidently:
            py = _ensure_evidently()
            if py is None:
                evid = {"error": "could not create bench/.venv-evidently"}
            else:
                print("evidently ...", file=sys.stderr)
                try:
                    evid = _run_json([str(py), __file__, "--worker", "evidently", "--reference",
                                      str(ref_path), "--current", str(cur_path)], timeout=1200)
                    print(f"  evidently {evid['seconds']:.2f} s", file=sys.stderr)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    evid = {"error": str(exc).splitlines()[-1][:200]}

    gpu, note = None, "not measured on this machine (no GPU)"
    try:
        gpu = _gpu_bench(args.gpu_rows, args.gpu_features)
    except Exception as exc:  # report, don't hide, a GPU path that failed
        note = f"not measured: the GPU run failed ({type(exc).__name__}: {exc})"
    section = _section(machine, args, fit_s, eng, scipy_s, evid, gpu, note)
    _write_section(args.results, section)
    print(section)


if __name__ == "__main__":
    main()
